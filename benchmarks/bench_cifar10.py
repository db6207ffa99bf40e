"""P2P on real CIFAR-10 from the pretrained ResNet-20: three arms side by side, each given the same wall time.

    python benchmarks/bench_cifar10.py                       # all arms, the time of the `cpu` recipe's budget each
    python benchmarks/bench_cifar10.py --minutes 5 --arms cpu --n-train 5000   # a quick look
    python benchmarks/bench_cifar10.py --arms '' --measure 'candidate=runs/train-...' --merge OLD/results.json   # measure a finished run

Arms (the data and weights are ../shared's: 50,000 JPEG training images, 1,000 test images, the ResNet-20 checkpoint):
  blackbox  the ResNet-20 as it is, and the same network fine-tuned on whole JPEG training images (one-cycle, as many
            epochs as fit in the time); the better of the two is the black box P2P is compared with
  paper     `pxp train --recipe paper` with a time budget (the seed's configuration; only the epoch count is cut)
  cpu       `pxp train --dataset cifar10 --classifier resnet20 --model-path W`: the library's default for this setting

Each P2P arm reports test accuracy at δ ∈ {0.8, 0.9, 0.95, 0.99}, mean kept fraction, the distribution of the chosen τ,
AUROC, deletion/insertion fidelity AUCs over all test images at δ = 0.9, training and evaluation images/s and wall time,
figures of kept regions for right and wrong predictions, and for the paper arm the kept fraction against τ and the
share of images whose mask collapses (keeps ≤ 5% or ≥ 95% at every τ). Everything goes to a new folder under --out;
run nothing else on the machine meanwhile (timings are wall time on a shared-nothing machine).
"""
import argparse, json, re, time
from pathlib import Path
import torch
from torch import Tensor
from fastai.callback.core import Callback, CancelFitException
from _machine import machine

ROOT = Path(__file__).resolve().parents[1]

def test_loader(data, cache, bs=250):
    from pixelperception.data.datasets import get_eval_dl
    from pixelperception.models.zoo import normalization
    mean, std = normalization('resnet20')
    return get_eval_dl('cifar10', data, size=32, bs=bs, device='cpu', cache_dir=cache, mean=mean, std=std)

@torch.no_grad()
def classifier_scores(clf, dl):
    "Accuracy, AUROC and the share of δ-certain images of a classifier on whole test images"
    from pixelperception.evaluation import metrics as M
    clf.eval(); probs, ys = [], []
    for b in dl: probs.append(clf(b[0].as_subclass(Tensor)).softmax(-1)); ys.append(b[2].as_subclass(Tensor))
    p, y = torch.cat(probs), torch.cat(ys)
    return dict(accuracy=(p.argmax(-1) == y).float().mean().item(), auroc=float(M.auroc(p, y)),
                certain_at={str(d): (p.max(-1).values >= d).float().mean().item() for d in (0.8, 0.9, 0.95, 0.99)})

def blackbox(a, minutes, out):
    "The ResNet-20 as it is, and fine-tuned on whole images for `minutes` (one-cycle)"
    from fastai.learner import Learner
    from fastai.losses import CrossEntropyLossFlat
    from fastai.metrics import accuracy
    from fastai.optimizer import Adam
    from fastai.callback.schedule import fit_one_cycle  # noqa: F401  (patches Learner)
    from pixelperception.data.datasets import get_dls
    from pixelperception.models.zoo import create_classifier, normalization
    from pixelperception.p2p.learner import WholeImage
    from pixelperception.p2p.run_callbacks import TimeBudget
    tdl = test_loader(a.data, a.cache)
    clf = create_classifier('resnet20', 10, model_path=a.weights)
    as_is = classifier_scores(clf, tdl)
    print(f"  as it is: test accuracy {as_is['accuracy']:.4f}", flush=True)
    mean, std = normalization('resnet20')
    dls = get_dls('cifar10', a.data, size=32, bs=128, color_aug=0., device='cpu', cache_dir=a.cache, mean=mean, std=std, max_train=a.n_train)
    learn = Learner(dls, WholeImage(clf.train()), loss_func=CrossEntropyLossFlat(), opt_func=Adam, metrics=accuracy)
    t0 = time.time()   # one timed pass over 30 batches sets the number of one-cycle epochs that fit in the time
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 0., cbs=[_StopAfter(30)])
    per_epoch = (time.time() - t0) / 30 * len(dls.train_ds) / 128
    clf.load_state_dict(create_classifier('resnet20', 10, model_path=a.weights).state_dict())   # lr 0 changed only BN statistics: start clean
    epochs = max(1, int((minutes*60 - (time.time() - t0)) // per_epoch))
    t1 = time.time()
    with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(epochs, a.bb_lr, cbs=[TimeBudget(minutes - (t1 - t0)/60)])
    t_train = time.time() - t1
    tuned = classifier_scores(clf, tdl)
    print(f"  fine-tuned {epochs} epochs in {t_train:.0f} s: test accuracy {tuned['accuracy']:.4f}", flush=True)
    torch.save(clf.state_dict(), out/'blackbox_finetuned.pth')
    return dict(as_is=as_is, finetuned=dict(**tuned, epochs=epochs, train_s=t_train, lr=a.bb_lr,
                                            train_images_per_s=epochs*len(dls.train_ds)/t_train),
                better='finetuned' if tuned['accuracy'] > as_is['accuracy'] else 'as_is', wall_s=time.time() - t0)

class _StopAfter(Callback):
    "Cancel the fit after `n` batches"
    def __init__(self, n): self.n = n
    def after_batch(self):
        if self.iter + 1 >= self.n: raise CancelFitException()

def p2p_arm(a, recipe, minutes, out):
    "Train with `recipe` for `minutes`, then measure everything on the test split"
    from pixelperception.p2p.train import train
    t0 = time.time()
    kw = dict(dataset='cifar10', data_path=a.data, classifier='resnet20', model_path=str(a.weights), recipe=recipe, time_budget=minutes,
              experiment=out/'runs', progress=False, cache_dir=a.cache, seed=a.seed)
    if recipe == 'paper': kw['epochs'] = a.paper_epochs   # the seed's 100 scaled to what fits the time: its schedules are fractions of the run
    run = train(**kw, max_train=a.n_train)
    wall = time.time() - t0
    return dict(run=str(run), wall_s=wall, **measure_run(run, a, out/f'{recipe}'))

@torch.no_grad()
def measure_run(run, a, prefix):
    "Test metrics per δ, τ distribution, fidelity AUCs, figures and (always) the kept fraction against τ"
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from pixelperception.p2p.runs import load_run
    from pixelperception.p2p.evaluate import evaluate_p2p, kept_vs_tau
    from pixelperception.evaluation.metrics import fidelity_curves
    from pixelperception.p2p.model import mask_input
    from pixelperception.evaluation.plots import show_selection
    from pixelperception.data.datasets import denormalize
    model, cfg = load_run(run)
    m = json.loads((Path(run)/'metrics.json').read_text())
    tdl = test_loader(a.data, a.cache)
    t0 = time.time()
    res = evaluate_p2p(model, tdl, (0.8, 0.9, 0.95, 0.99), keep_outputs=True)
    eval_s = time.time() - t0
    per = {}
    for d in ('0.8', '0.9', '0.95', '0.99'):
        r = res[d]; tau = r['tau_per_image'].float()
        hist = torch.histc(tau, bins=20, min=0.025, max=1.025).tolist()
        per[d] = dict(accuracy=r['accuracy'], kept=r['kept'], tau_mean=r['tau'], auroc=r['auroc'], tau_hist_0p05=hist,
                      tau_quartiles=[float(q) for q in torch.quantile(tau, torch.tensor([0.25, 0.5, 0.75]))],
                      full_image_share=(tau >= 0.999).float().mean().item())
    dels, ins, rows = [], [], dict(right=[], wrong=[])   # fidelity at δ = 0.9 over all test images, and examples
    for b in tdl:
        x, groups, y = (o.as_subclass(Tensor) for o in b[:3])
        r = model.find_tau(x, groups, [0.9])
        probs, keep = r['group_probs'][0], r['keep'][0]
        xm = mask_input(x, keep.float(), model.fill)
        dels.append(fidelity_curves(model.classifier, xm, groups, probs, model.fill))
        ins.append(fidelity_curves(model.classifier, xm, groups, probs, model.fill, insertion=True))
        pred = r['logits'][0].argmax(-1)
        for i in range(len(y)):   # examples of right and wrong predictions, one per class
            k = 'right' if pred[i] == y[i] else 'wrong'
            if len(rows[k]) < 6 and int(y[i]) not in {int(r[4]) for r in rows[k]}: rows[k].append((x[i], groups[i], keep[i], f"{cfg['vocab'][int(pred[i])]} (true {cfg['vocab'][int(y[i])]}) τ={float(r['tau'][0][i]):.2f}", y[i]))
    from pixelperception.evaluation.metrics import Curves
    auc = lambda cs: float(Curves(cs[0].x, torch.cat([c.per_image for c in cs]), cs[0].kind, cs[0].higher_is_better).auc)   # over all images
    for k, rs in rows.items():
        if not rs: continue
        fig = show_selection(denormalize(torch.stack([r[0] for r in rs]), model.mean, model.std), torch.stack([r[1] for r in rs]),
                             torch.stack([r[2] for r in rs]), titles=[r[3] for r in rs], dropped='black')
        fig.savefig(f'{prefix}_kept_{k}.png', dpi=90, bbox_inches='tight'); plt.close(fig)
    kvt = kept_vs_tau(model, tdl, taus=(0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0))
    collapse = _collapse(model, tdl)
    return dict(recipe=cfg['recipe'], overrides=cfg['overrides'], per_delta=per, deletion_auc=auc(dels), insertion_auc=auc(ins),
                kept_vs_tau=kvt, collapse=collapse, epochs_run=m['timing']['epochs_run'], train_s=m['timing']['train_s'],
                classifier_s=m['timing']['classifier_s'], data_s=m['timing']['data_s'],
                train_images_per_s=m['timing']['train_images_per_s'], eval_images_per_s=len(tdl.dataset)/eval_s,
                passes_per_image=res['passes']['per_image_ours'])

@torch.no_grad()
def _collapse(model, dl, taus=(0.1, 0.3, 0.5, 0.9)):
    "Share of test images whose hard mask keeps ≤ 5% (or ≥ 95%) of the pixels at every τ tried: the selector ignores τ"
    from pixelperception.data.superpixels import to_pixels
    model.eval(); lo, hi, n = 0, 0, 0
    for b in dl:
        x, g = b[0].as_subclass(Tensor), b[1].as_subclass(Tensor)
        feats = model.selector.encode(x)
        kept = torch.stack([to_pixels(model.select(x, g, x.new_full((len(x),), t), feats=feats)['decisions'][..., 0], g).float().mean((1, 2))
                            for t in taus])
        lo += (kept <= 0.05).all(0).sum().item(); hi += (kept >= 0.95).all(0).sum().item(); n += len(x)
    return dict(keeps_almost_nothing=lo/n, keeps_almost_everything=hi/n, taus=list(taus))

def _p2p_arms(results): return [k for k, v in results.items() if isinstance(v, dict) and 'per_delta' in v]

def table(results, mach):
    "The results as markdown"
    L = [f"Machine: {mach['cpu']}, {mach['cores']} cores, torch {mach['torch']} ({mach['torch_threads']} threads); "
         f"load average at start {mach['load_avg_at_start']:.1f}. Time per arm: {results['minutes']} min.", '']
    bb = results.get('blackbox')
    if bb:
        L += ['| black box (whole images) | test accuracy | AUROC | certain at δ=0.9 | epochs | train images/s |', '|---|---|---|---|---|---|',
              f"| ResNet-20 as it is | {bb['as_is']['accuracy']:.4f} | {bb['as_is']['auroc']:.4f} | {bb['as_is']['certain_at']['0.9']:.3f} | – | – |",
              f"| fine-tuned {bb['finetuned']['train_s']/60:.1f} min | {bb['finetuned']['accuracy']:.4f} | {bb['finetuned']['auroc']:.4f} | "
              f"{bb['finetuned']['certain_at']['0.9']:.3f} | {bb['finetuned']['epochs']} | {bb['finetuned']['train_images_per_s']:.0f} |", '']
    ref = max(bb['as_is']['accuracy'], bb['finetuned']['accuracy']) if bb else None
    L += ['| arm | δ | accuracy | ÷ black box | kept | τ median [q1, q3] | full image | AUROC |', '|---|---|---|---|---|---|---|---|']
    for arm in _p2p_arms(results):
        r = results[arm]
        for d, v in r['per_delta'].items():
            q = v['tau_quartiles']
            L.append(f"| {arm} | {d} | {v['accuracy']:.4f} | {v['accuracy']/ref:.3f} | {v['kept']:.3f} | {q[1]:.2f} [{q[0]:.2f}, {q[2]:.2f}] | "
                     f"{v['full_image_share']:.3f} | {v['auroc']:.4f} |" if ref else f"| {arm} | {d} | {v['accuracy']:.4f} | – | {v['kept']:.3f} | {q[1]:.2f} | {v['full_image_share']:.3f} | {v['auroc']:.4f} |")
    L += ['', '| arm | epochs | train s | train images/s | eval images/s | passes/image | deletion AUC ↓ | insertion AUC ↑ | kept at τ = 0.1 / 0.3 / 0.5 / 1 | masks ignoring τ (≤5% / ≥95%) | wall s |',
          '|---|---|---|---|---|---|---|---|---|---|---|']
    for arm in _p2p_arms(results):
        r = results[arm]
        k = {float(t): v for t, v in r['kept_vs_tau'].items()}
        L.append(f"| {arm} | {r['epochs_run']} | {r['classifier_s'] + r['train_s']:.0f} | {r['train_images_per_s']:.0f} | {r['eval_images_per_s']:.0f} | "
                 f"{r['passes_per_image']:.1f} | {r['deletion_auc']:.3f} | {r['insertion_auc']:.3f} | "
                 f"{k[0.1]:.2f} / {k[0.3]:.2f} / {k[0.5]:.2f} / {k[1.0]:.2f} | {r['collapse']['keeps_almost_nothing']:.3f} / {r['collapse']['keeps_almost_everything']:.3f} | {r['wall_s']:.0f} |")
    return '\n'.join(L)

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--data', type=Path, default=ROOT.parent/'shared'/'data')
    p.add_argument('--weights', type=Path, default=ROOT.parent/'shared'/'weights'/'resnet20-cifar10.th')
    p.add_argument('--minutes', type=float, default=None, help="wall time per arm (default: the cpu recipe's time budget)")
    p.add_argument('--arms', default='blackbox,paper,cpu')
    p.add_argument('--n-train', type=int, default=None, help='train on this many images only, the same number per class (quick looks)')
    p.add_argument('--bb-lr', type=float, default=1e-3, help="peak learning rate of the black box's fine-tuning")
    p.add_argument('--paper-epochs', type=int, default=6, help="epochs of the paper arm (the seed's 100 scaled to the time: "
                   "6 epochs of ~210 s fit 19 minutes on the 2-core development machine; 100 leaves its annealing at its first step)")
    p.add_argument('--merge', type=Path, nargs='*', default=[], help='results.json files of earlier runs: their arms join the table')
    p.add_argument('--measure', nargs='*', default=[], metavar='LABEL=RUN',
                   help='finished `pxp train` run folders to measure as extra arms (not trained here: their wall time is the run\'s own)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--threads', type=int, default=None)
    p.add_argument('--cache', type=Path, default=Path.home()/'.cache'/'pixelperception'/'superpixel_cache')
    p.add_argument('--out', type=Path, default=ROOT/'benchmarks'/'results'/'cifar10')
    a = p.parse_args()
    for f in (a.data/'cifar10'/'train', a.weights):
        if not f.exists(): raise SystemExit(f"{f} not found: this benchmark needs ../shared (the real CIFAR-10 JPEGs and the ResNet-20 weights)")
    if a.threads: torch.set_num_threads(a.threads)
    from pixelperception.p2p.recipes import recipe_options
    from pixelperception.files import new_run_dir, atomic_write
    minutes = a.minutes or recipe_options('cpu', 'cifar10', 'resnet20')['time_budget']
    out = new_run_dir(a.out, 'bench')
    mach = machine(); print(json.dumps(mach), flush=True)
    results = dict(machine=mach, minutes=minutes, n_train=a.n_train)
    for f in a.merge:   # arms measured in an earlier run on the same machine (say so in the report)
        old = json.loads(Path(f).read_text())
        for k, v in old.items():
            if isinstance(v, dict) and k not in ('machine',): results[k if k not in a.arms.split(',') else f'{k} (earlier)'] = v
    for spec in a.measure:   # runs trained elsewhere (e.g. a recipe candidate): measured on the same test images
        label, _, run = spec.partition('=')
        if not run or not (Path(run)/'metrics.json').is_file(): raise SystemExit(f"--measure {spec!r}: expected LABEL=RUN_FOLDER of a finished pxp train run")
        print(f"== measuring {label}: {run}", flush=True)
        total = json.loads((Path(run)/'metrics.json').read_text())['timing']['total_s']
        results[label] = dict(run=str(run), wall_s=total, **measure_run(run, a, out/re.sub(r'[^\w.-]+', '_', label).strip('_')))
        atomic_write(out/'results.json', lambda t: Path(t).write_text(json.dumps(results, indent=2, default=str)))
    for arm in [x for x in a.arms.split(',') if x]:
        print(f"== {arm} ({minutes} min)", flush=True)
        results[arm] = blackbox(a, minutes, out) if arm == 'blackbox' else p2p_arm(a, arm, minutes, out)
        atomic_write(out/'results.json', lambda t: Path(t).write_text(json.dumps(results, indent=2, default=str)))
    md = table(results, mach)
    atomic_write(out/'results.md', lambda t: Path(t).write_text(md + '\n'))
    print(md); print(f"\nresults: {out}")

if __name__ == '__main__': main()
