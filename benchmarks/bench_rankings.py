"""Which part of a P2P run limits it: its selector's ranking of the superpixels against Grad-CAM's, each shown to its classifier and to the black box.

    python benchmarks/bench_rankings.py RUN                 # the run's val images (all)
    python benchmarks/bench_rankings.py RUN --n 200         # the first 200

For each val image, three rankings of its superpixels: the run's selector (its keep scores, as `P2P.select` ranks them),
Grad-CAM of the run's fine-tuned classifier and Grad-CAM of the black box (the pretrained classifier the run started from;
both maps for the class each predicts on the whole image, pooled per superpixel). Each ranking keeps its best superpixels
covering τ of the pixels (`rank_logits` with the run's `rank_cover`, as its rank-mode selector does), the rest black, and both classifiers are
asked at τ ∈ GRID. The table gives accuracy at fixed τ, and accuracy / mean τ of the dynamic threshold replayed at
δ = 0.9, 0.95, 0.99 on that grid (`bench_tau_policy.replay`). If a post-hoc ranking beats the selector with the same
classifier, the selector limits the run; if no ranking lifts the classifier at τ = 1, its fine-tuning does.
Needs a run of a pretrained classifier (`pretrained` or `model_path`), rank mode. Writes results.md and one grid per
ranking × classifier (`.pt`, as bench_tau_policy's) to a new --out folder.
"""
import argparse, sys, time
from pathlib import Path
import torch
from torch import Tensor
sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine, machine_line
from bench_tau_policy import replay

ROOT = Path(__file__).resolve().parents[1]
GRID = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 1.0)
SHOWN = (0.05, 0.1, 0.2, 0.3, 1.0)

def cam_scores(clf, x, groups, G, precision):
    "Grad-CAM of `clf` for its own prediction on the whole image, averaged per superpixel (`GroupMasker.pool`; absent superpixels score 0, as `rank_logits` expects): [B,G]"
    from pixelperception.explain.cam import GradCAM
    from pixelperception.models.maskers import GroupMasker
    from pixelperception.p2p.run_callbacks import eval_precision
    with eval_precision(clf, precision): heat = GradCAM(clf, batch_size=len(x)).heatmap(x)
    return GroupMasker(n_groups=G).pool(heat, x, groups)

@torch.no_grad()
def hard_probs(clf, model, x, groups, scores, tau, precision):
    "Class probabilities of `clf` on the image with the superpixels `scores` ranks best, covering τ of the pixels, kept"
    from pixelperception.p2p.model import rank_logits, mask_input
    from pixelperception.data.superpixels import to_pixels
    from pixelperception.p2p.run_callbacks import eval_precision
    keep = (rank_logits(scores, groups, x.new_full((len(x),), tau), model.rank_scale, getattr(model, 'rank_cover', 'at_least')) > 0).to(x.dtype)[..., None]
    with eval_precision(clf, precision): return clf(mask_input(x, to_pixels(keep, groups)[..., 0], model.fill)).float().softmax(-1)

def grids(run:Path, n:int=None) -> dict:
    "Per ranking × classifier: confidence and prediction at every τ of GRID, and the labels"
    from pixelperception.p2p.runs import load_run
    from pixelperception.p2p.model import decode_fp32, group_distribution
    from pixelperception.p2p.run_callbacks import eval_precision
    from pixelperception.data.datasets import get_eval_dl
    from pixelperception.p2p.runs import run_black_box
    model, cfg = load_run(run)
    if model.tau_mode != 'rank': sys.exit("the rankings are compared the way a rank-mode selector keeps superpixels: pass a run with tau_mode='rank'")
    bb = run_black_box(cfg)
    if bb is None: sys.exit("the run has no black box (a classifier trained from scratch)")
    dl = get_eval_dl(cfg['dataset'], cfg['data_path'], split='val', size=cfg['size'], bs=50, device='cpu', n_segments=cfg['n_segments'],
                     compactness=cfg['compactness'], cache_dir=cfg.get('cache_dir'), mean=model.mean, std=model.std)
    clfs, prec = dict(p2p=model.classifier, black_box=bb), cfg['precision']
    out = {(r, c): ([], []) for r in ('selector', 'gradcam_p2p', 'gradcam_black_box') for c in clfs}
    ys, t0 = [], time.time()
    for b in dl:
        x, g, y = (o.as_subclass(Tensor) for o in b[:3])
        G = max(model.n_segments, int(g.max()) + 1)
        with torch.no_grad(), eval_precision(model, prec):
            sel = group_distribution(decode_fp32(model.selector, model.selector.encode(x), None, x.shape[-2:]), g, G)[0]
        scores = dict(selector=sel, gradcam_p2p=cam_scores(model.classifier, x, g, G, prec), gradcam_black_box=cam_scores(bb, x, g, G, prec))
        for (r, c), (conf, pred) in out.items():
            p = torch.stack([hard_probs(clfs[c], model, x, g, scores[r], t, prec) for t in GRID], 1)   # [B,T,C]
            conf.append(p.max(-1).values); pred.append(p.argmax(-1))
        ys.append(y)
        print(f"  {sum(len(v) for v in ys)} images, {time.time() - t0:.0f} s", flush=True)
        if n and sum(len(v) for v in ys) >= n: break
    y = torch.cat(ys)
    return {k: dict(run=str(run), split='val', ranking=k[0], classifier=k[1], grid=list(GRID), conf=torch.cat(c)[:len(y)],
                    pred=torch.cat(p)[:len(y)], y=y) for k, (c, p) in out.items()}, time.time() - t0

def table(gs:dict) -> str:
    md = ["| ranking | classifier | " + " | ".join(f"τ = {t}" for t in SHOWN) + " | δ = 0.9 | δ = 0.95 | δ = 0.99 |", "|---|---|" + "---|"*(len(SHOWN) + 3)]
    for (r, c), d in gs.items():
        acc = (d['pred'] == d['y'][:, None]).float().mean(0)
        md.append(f"| {r} | {c} | " + " | ".join(f"{acc[GRID.index(t)]:.3f}" for t in SHOWN) + " | "
                  + " | ".join("{:.3f} / {:.3f}".format(*replay(d, delta, GRID[0])) for delta in (0.9, 0.95, 0.99)) + " |")
    return '\n'.join(md)

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('run', type=Path, help='a finished `pxp train` run folder (a pretrained classifier, rank mode)')
    p.add_argument('--n', type=int, default=None, help='at most this many val images (default: all)')
    p.add_argument('--out', type=Path, default=ROOT/'benchmarks'/'results'/'rankings')
    p.add_argument('--threads', type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    m = machine()
    gs, secs = grids(a.run, a.n)
    out = a.out/time.strftime('rankings-%Y%m%d-%H%M%S'); out.mkdir(parents=True)
    for (r, c), d in gs.items(): torch.save(d, out/f"{r}_{c}.pt")
    n = len(next(iter(gs.values()))['y'])
    md = (f"# Which part limits {a.run.name}: rankings × classifiers on {n} val images\n\n{machine_line(m)}\n\n"
          f"Accuracy with the best superpixels of each ranking covering τ of the pixels (the rest black), and accuracy / mean τ of the "
          f"dynamic threshold replayed on the grid {list(GRID)}. {secs:.0f} s.\n\n{table(gs)}\n")
    (out/'results.md').write_text(md); print(md)

if __name__ == '__main__': main()
