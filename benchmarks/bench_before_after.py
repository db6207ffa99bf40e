"""CPU speed before and after a change, side by side in one run: the default P2P training step and MoXI fp32/bf16.

    git worktree add /tmp/h25-old 86e6292                                # the package before the change
    /work/notes/quiet.sh python benchmarks/bench_before_after.py --old /tmp/h25-old --task p2p
    /work/notes/quiet.sh python benchmarks/bench_before_after.py --old /tmp/h25-old --task moxi

Each measurement runs in a fresh process that imports one checkout's package (PYTHONPATH), and the checkouts
alternate, `--reps` times each, so load drifts hit both alike; the minimum per checkout is kept.
- p2p: `pxp train`'s default Learner (`cpu` recipe: small CNNs, ranking threshold, score-function gradients, 64 px,
  batch 64) on synthetic tensors (`profile_step.synthetic_dls`): seconds per training step after one warm-up step, in
  fp32 and bf16 (the default precision on a CPU with native bfloat16).
- moxi: MoXI insertion + deletion on real CIFAR-10 test images with the real ResNet-20, 8x8 patches, fp32 and bf16:
  seconds per image, bf16's speed-up, and whether the two checkouts give the same orders.
"""
import argparse, json, os, subprocess, sys
from pathlib import Path
import torch

BENCH = Path(__file__).resolve().parent
P2P = r'''
import sys, time, json, torch
from fastai.callback.core import Callback, CancelValidException
sys.path.insert(0, BENCH); import profile_step as ps
from pixelperception.p2p.recipes import recipe_config
from pixelperception.p2p.train import run_learner
torch.set_num_threads(THREADS)
out = {}
for precision in ('fp32', 'bf16'):
    cfg = recipe_config('cpu').updated(precision=precision, resolution=64, batch_size=64, seed=0)
    learn = run_learner(ps.synthetic_dls(1 + STEPS, 64, 64, 10, cfg.data.n_segments), cfg)
    class Clock(Callback):
        order = -1000
        def before_batch(self):
            if self.iter == 1: self.t0 = time.perf_counter()
        def after_train(self): self.t = time.perf_counter() - self.t0
        def before_validate(self): raise CancelValidException()
    clock = Clock(); learn.add_cb(clock)
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-3)
    out[precision] = clock.t / STEPS
print('RESULT', json.dumps(out))
'''
MOXI = r'''
import sys, time, json, torch
sys.path.insert(0, BENCH)
from bench_precision import images
from pixelperception.explain.moxi import MoXI
from pixelperception.models.maskers import PatchMasker
from pixelperception.models.zoo import create_classifier
torch.set_num_threads(THREADS)
x, _ = images(DATA, N)
model = create_classifier('resnet20', 10, model_path=WEIGHTS).eval()
out = {}
for precision in ('fp32', 'bf16'):
    e = MoXI(model, PatchMasker(8), batch_size=512, precision=precision)
    e.attribute(x[:1, :, :, :], curve='insertion')   # warm-up
    t0 = time.perf_counter()
    orders = [e.attribute(x, curve=c).order.tolist() for c in ('insertion', 'deletion')]
    out[precision] = dict(s=(time.perf_counter() - t0) / len(x), orders=orders)
print('RESULT', json.dumps(out))
'''

def child(code, checkout, **subs):
    "Run `code` in a fresh process importing `checkout`'s package; its RESULT line as a dict"
    for k, v in dict(BENCH=str(BENCH), **subs).items(): code = code.replace(k, repr(v) if isinstance(v, str) else str(v))
    env = dict(os.environ, PYTHONPATH=str(checkout), OMP_NUM_THREADS=str(subs.get('THREADS', 1)))
    r = subprocess.run([sys.executable, '-c', code], cwd=checkout, env=env, capture_output=True, text=True)
    line = next((l for l in r.stdout.splitlines() if l.startswith('RESULT ')), None)
    if line is None: sys.exit(f"{checkout}: no result\n{r.stderr[-3000:]}")
    return json.loads(line[7:])

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--old', type=Path, required=True, help='checkout of the package before the change')
    p.add_argument('--new', type=Path, default=BENCH.parent, help='checkout after it (default: this one)')
    p.add_argument('--task', choices=('p2p', 'moxi'), required=True)
    p.add_argument('--reps', type=int, default=3)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--steps', type=int, default=4, help='p2p: timed training steps per process')
    p.add_argument('--n', type=int, default=2, help='moxi: images')
    p.add_argument('--data', default='/work/shared/data/cifar10/test')
    p.add_argument('--weights', default='/work/shared/weights/resnet20-cifar10.th')
    p.add_argument('--out', type=Path, help='also append what it prints to this file (a new one, or one this script started)')
    a = p.parse_args(argv)
    lines = []
    def say(t): print(t); lines.append(t)
    sys.path.insert(0, str(BENCH))
    from _machine import machine_line
    torch.set_num_threads(a.threads)
    say(machine_line())
    subs = dict(THREADS=a.threads, STEPS=a.steps) if a.task == 'p2p' else dict(THREADS=a.threads, N=a.n, DATA=a.data, WEIGHTS=a.weights)
    runs = {'old': [], 'new': []}
    for _ in range(a.reps):
        for k in ('old', 'new'): runs[k].append(child(P2P if a.task == 'p2p' else MOXI, getattr(a, k), **subs))
    def best(k, prec): return min(r[prec] if a.task == 'p2p' else r[prec]['s'] for r in runs[k])
    unit = 's/step' if a.task == 'p2p' else 's/image (insertion + deletion)'
    say(f"\n{a.task}: {unit}, best of {a.reps} alternating runs, {a.threads} threads; old = {a.old}, new = {a.new}\n")
    say("| precision | old | new | new/old |\n|---|---:|---:|---:|")
    for prec in ('fp32', 'bf16'): say(f"| {prec} | {best('old', prec):.3f} | {best('new', prec):.3f} | {best('new', prec)/best('old', prec):.2f} |")
    say(f"\nbf16 speed-up (fp32/bf16): old {best('old', 'fp32')/best('old', 'bf16'):.2f}, new {best('new', 'fp32')/best('new', 'bf16'):.2f}")
    if a.task == 'moxi':
        for prec in ('fp32', 'bf16'):
            same = all(r[prec]['orders'] == runs['old'][0][prec]['orders'] for k in runs for r in runs[k])
            say(f"{prec}: old and new give the same insertion and deletion orders: {same}")
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        with open(a.out, 'a') as f: f.write("\n".join(lines) + "\n\n")
    return runs

if __name__ == '__main__': main()
