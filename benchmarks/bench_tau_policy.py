"""Where a trained P2P run loses accuracy under the dynamic threshold: its hard-masked prediction at every τ of the search.

    python benchmarks/bench_tau_policy.py RUN --split val                  # the run's val images
    python benchmarks/bench_tau_policy.py RUN --split heldout              # training photos the run did not train on (max_train runs)
    python benchmarks/bench_tau_policy.py --grid GRID.pt [GRID.pt ...]     # the tables again from saved grids (no model pass)

One selector pass per image, then the classifier on the hard mask at every τ of the run's search grid (τ = step, 2·step,
..., max_tau; the same `select`/`classify` calls as `P2P.find_tau`). From that grid any stopping rule replays exactly,
offline: how many images stop at each τ at δ = 0.9 and how often they are right there, the P2P classifier's accuracy on
the whole image (τ = 1: the ceiling of every δ), and accuracy / mean τ when the search starts at τ0 > step (a floor on
the evidence shown). The mean τ stands for the kept fraction, which tracks τ within about 0.01 for the rank-mode runs of
the `cpu` recipe (the run's `kept_vs_tau`). Writes GRID.pt (per image: confidence and prediction at every τ, label) and
a markdown table to a new --out folder.
"""
import argparse, math, time, sys
from pathlib import Path
import torch
from torch import Tensor
sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine, machine_line

ROOT = Path(__file__).resolve().parents[1]
DELTAS, STARTS = (0.8, 0.9, 0.95, 0.99), (0.05, 0.10, 0.15, 0.20)

def heldout_dl(model, cfg, n=1000, bs=50):
    "Up to n of the training photos a run with max_train did not train on (the same seeded draw), evaluation transforms"
    import numpy as np
    from pixelperception.data.datasets import dataset_items, subset_items, get_eval_dl, Items
    if not cfg.get('max_train'): sys.exit("--split heldout needs a run trained with max_train (it trained on every training photo)")
    tr, _ = dataset_items(split='train', dataset=cfg['dataset'], data_path=cfg['data_path'], label_kind=cfg['label_kind'], size=cfg['size'],
                          n_train=cfg['n_train'], n_val=cfg['n_val'], seed=cfg['seed'], download=False)
    used = set(map(str, subset_items(tr, cfg['max_train'], cfg['seed']).srcs))
    rest = np.array([i for i, s in enumerate(tr.srcs) if str(s) not in used])
    rest = np.sort(np.random.default_rng(1).permutation(rest)[:n])
    print(f"held out: {len(rest)} of the {len(tr.srcs) - len(used)} training photos the run did not train on", flush=True)
    return get_eval_dl(cfg['dataset'], cfg['data_path'], size=cfg['size'], bs=bs, device='cpu', n_segments=cfg['n_segments'],
                       compactness=cfg['compactness'], cache_dir=cfg.get('cache_dir'), mean=model.mean, std=model.std, items=Items([tr.srcs[i] for i in rest], tr.labels[rest], tr.vocab))

@torch.no_grad()
def tau_grid(run:Path, split:str) -> dict:
    "Per image: confidence and prediction of the hard-masked classifier at every τ of the run's search grid"
    from pixelperception.p2p.runs import load_run
    from pixelperception.p2p.run_callbacks import eval_precision
    from pixelperception.data.datasets import get_eval_dl
    model, cfg = load_run(run)
    dl = heldout_dl(model, cfg) if split == 'heldout' else get_eval_dl(cfg['dataset'], cfg['data_path'], split=split, bs=50, device='cpu',
                                                                        mean=model.mean, std=model.std)
    grid = [round(min(k * model.search_step, model.max_tau), 4) for k in range(1, math.ceil(model.max_tau / model.search_step - 1e-6) + 1)]
    confs, preds, ys, t0 = [], [], [], time.time()
    with eval_precision(model, cfg['precision']):
        for b in dl:
            x, g, y = (o.as_subclass(Tensor) for o in b[:3])
            f, G = model.selector.encode(x), max(model.n_segments, int(g.max()) + 1)
            c, p = [], []
            for t in grid:
                sel = model.select(x, g, x.new_full((len(x),), t), feats=f, n_groups=G)
                pr = model.classify(x, g, sel['decisions'])[0].float().softmax(-1)
                c.append(pr.max(-1).values); p.append(pr.argmax(-1))
            confs.append(torch.stack(c, 1)); preds.append(torch.stack(p, 1)); ys.append(y)
            print(f"  {sum(len(v) for v in ys)} images, {time.time() - t0:.0f} s", flush=True)
    return dict(run=str(run), split=split, grid=grid, conf=torch.cat(confs), pred=torch.cat(preds), y=torch.cat(ys), seconds=time.time() - t0)

def replay(d:dict, delta:float, start:float) -> tuple:
    "Accuracy and mean τ of the search that stops at the first τ ≥ start whose confidence is ≥ δ (else at max_tau)"
    grid, n = torch.tensor(d['grid']), len(d['y'])
    ok = (d['conf'] >= delta) & (grid[None] >= start - 1e-9)
    ok[:, -1] = True
    k = ok.float().argmax(1)
    return (d['pred'][torch.arange(n), k] == d['y']).float().mean().item(), grid[k].mean().item()

def report(d:dict) -> str:
    "Markdown: where images stop at δ = 0.9, the whole-image ceiling, and the search started at τ0"
    grid, n = d['grid'], len(d['y'])
    ok = d['conf'] >= 0.9; ok[:, -1] = True
    k = ok.float().argmax(1)
    md = [f"### {Path(d['run']).name}, {d['split']} ({n} images)", "",
          f"P2P's classifier on the whole image (τ = 1): accuracy **{(d['pred'][:, -1] == d['y']).float().mean():.3f}** (the ceiling of every δ).", "",
          "| stops at τ (δ = 0.9) | images | right |", "|---|---|---|"]
    for j, t in enumerate(grid):
        m = k == j
        if m.sum() >= 5: md.append(f"| {t:.2f} | {int(m.sum())} | {(d['pred'][m, j] == d['y'][m]).float().mean():.3f} |")
    md += ["", "| δ | " + " | ".join(f"search from τ0 = {s:.2f}: accuracy / mean τ" for s in STARTS) + " |", "|---|" + "---|"*len(STARTS)]
    for delta in DELTAS:
        md.append(f"| {delta} | " + " | ".join("{:.3f} / {:.3f}".format(*replay(d, delta, s)) for s in STARTS) + " |")
    return '\n'.join(md)

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('run', nargs='?', type=Path, help='a finished `pxp train` run folder')
    p.add_argument('--split', default='val', help="'val', 'test', or 'heldout' (training photos a max_train run did not train on)")
    p.add_argument('--grid', type=Path, nargs='*', default=[], help='saved grids (GRID.pt of an earlier call): the tables only')
    p.add_argument('--out', type=Path, default=ROOT/'benchmarks'/'results'/'tau_policy')
    p.add_argument('--threads', type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    grids = [torch.load(g) for g in a.grid]
    if a.run is not None: grids.append(tau_grid(a.run, a.split))
    if not grids: p.error("pass a run folder, or --grid files")
    out = a.out/time.strftime('tau-%Y%m%d-%H%M%S'); out.mkdir(parents=True)
    for d in grids: torch.save(d, out/f"{Path(d['run']).name}_{d['split']}.pt")
    md = f"# The dynamic threshold replayed from per-τ predictions\n\n{machine_line(machine())}\n\n" + '\n\n'.join(report(d) for d in grids) + '\n'
    (out/'results.md').write_text(md); print(md)

if __name__ == '__main__': main()
