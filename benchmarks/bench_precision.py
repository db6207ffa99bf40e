"""MoXI in fp32 against bf16 (autocast) on real CIFAR-10 test images with the real ResNet-20: time and answers.

    python benchmarks/bench_precision.py               # N=32 images, both curves, 8x8 grid (N_features = 64)
    python benchmarks/bench_precision.py --quick       # 2 images: a smoke test, not a timing

Both precisions run in the same process, alternating, with 2 torch threads. Reported per precision: seconds per
image for MoXI insertion + deletion; against fp32: the share of identical orders, the mean top-k overlap
(k = 4, 6, 8 of 64), and the insertion/deletion curves' AUCs, all orders evaluated by the same fp32 model
(`ranking_curves`), so only the orders differ. Run it on an idle machine: the load average is printed.
"""
import argparse, json, time
from pathlib import Path
import torch
from torchvision import datasets, transforms
from pixelperception.explain.moxi import MoXI
from pixelperception.models.maskers import PatchMasker
from pixelperception.evaluation.metrics import ranking_curves
from pixelperception.models.zoo import create_classifier, normalization
from _machine import machine_line as machine

def images(root, n):
    mean, std = normalization('resnet20')
    ds = datasets.ImageFolder(root, transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean, std)]))
    idx = torch.linspace(0, len(ds) - 1, n).long().tolist()   # spread over the classes (ImageFolder sorts by class)
    return torch.stack([ds[i][0] for i in idx]), torch.tensor([ds[i][1] for i in idx])

def overlap(a, b, k): return ((a[:, :k, None] == b[:, None, :k]).any(-1).float().sum(-1) / k)

def run(args):
    torch.set_num_threads(args.threads)
    print(machine())
    x, y = images(args.data, args.n)
    model = create_classifier('resnet20', 10, model_path=args.weights).eval()
    masker = PatchMasker(args.grid)
    res = {p: dict(t=0., orders={}) for p in args.precisions}
    for s in range(0, len(x), args.images_per_batch):   # alternate precisions per batch: load drifts hit both alike
        xb = x[s:s + args.images_per_batch]
        for p in args.precisions:
            e = MoXI(model, masker, batch_size=args.batch_size, precision=p)
            t0 = time.perf_counter()
            for c in ('insertion', 'deletion'): res[p]['orders'].setdefault(c, []).append(e.attribute(xb, curve=c).order)
            res[p]['t'] += time.perf_counter() - t0
    ref = args.precisions[0]
    rows, N = [], args.grid ** 2
    for p in args.precisions:
        r = dict(precision=p, s_per_image=res[p]['t'] / len(x), speedup=res[ref]['t'] / res[p]['t'])
        for c in ('insertion', 'deletion'):
            o, o0 = torch.cat(res[p]['orders'][c]), torch.cat(res[ref]['orders'][c])
            cv = ranking_curves(model, x, None, o, masker, curve=c)   # fp32 evaluation for every order
            r[f'{c}_auc'] = cv.auc
            r[f'{c}_curve'] = cv.curve.tolist()
            r[f'{c}_identical'] = (o == o0).all(1).float().mean().item()
            for k in (4, 6, 8): r[f'{c}_top{k}'] = overlap(o, o0, k).mean().item()
        rows.append(r)
    for r in rows:
        for c in ('insertion', 'deletion'): r[f'{c}_dauc'] = r[f'{c}_auc'] - rows[0][f'{c}_auc']
    print(f"MoXI both curves, {args.grid}x{args.grid} grid (N={N}), {len(x)} CIFAR-10 test images, ResNet-20 (real weights)")
    hdr = f"{'precision':9} {'s/img':>7} {'x fp32':>6} " + ' '.join(
        f"{c[:3] + ':' + m:>13}" for c in ('insertion', 'deletion') for m in ('same', 'top4', 'top6', 'top8', 'AUC', 'dAUC'))
    print(hdr)
    for r in rows:
        print(f"{r['precision']:9} {r['s_per_image']:7.3f} {r['speedup']:6.2f} " + ' '.join(
            f"{r[f'{c}_{m}']:13.3f}" for c in ('insertion', 'deletion') for m in ('identical', 'top4', 'top6', 'top8', 'auc', 'dauc')))
    if args.out:
        out = Path(args.out); out.mkdir(parents=True, exist_ok=True)
        (out / 'results.json').write_text(json.dumps(dict(machine=machine(), n_images=len(x), grid=args.grid, rows=rows), indent=1))
        print(f"wrote {out / 'results.json'}")

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--data', default='/work/shared/data/cifar10/test')
    ap.add_argument('--weights', default='/work/shared/weights/resnet20-cifar10.th')
    ap.add_argument('--n', type=int, default=32, help='images')
    ap.add_argument('--images-per-batch', type=int, default=8, help='images explained together')
    ap.add_argument('--batch-size', type=int, default=512, help='masked inputs per forward pass')
    ap.add_argument('--grid', type=int, default=8)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--precisions', nargs='+', default=['fp32', 'bf16'])
    ap.add_argument('--out', default=None, help='folder for results.json (e.g. benchmarks/results/precision/<machine>)')
    ap.add_argument('--quick', action='store_true', help='2 images: a smoke test')
    a = ap.parse_args()
    if a.quick: a.n, a.images_per_batch = 2, 2
    run(a)
