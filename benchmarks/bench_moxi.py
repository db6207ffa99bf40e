"""Benchmark MoXI insertion: pixelperception's batched greedy vs a naive implementation written the way the
reference code works (re-score all N features at every step, build masks / select tokens one row at a time).

    python benchmarks/bench_moxi.py                      # default: a few minutes on 2 CPU cores
    python benchmarks/bench_moxi.py --naive-vit-steps 196 --full-vit        # every ViT step, and a full ViT order (slow)

Two settings, side by side in one run:
- token mode: timm ViT-Tiny/16 at 224x224 (random weights), N = 196 patch tokens, token removal; a full greedy order
  is ~13 TFLOPs for ViT-Tiny, so by default both implementations are timed on the same stratified subset of steps
  (--naive-vit-steps) and extrapolated; --full-vit also runs pixelperception's MoXI end to end;
- pixel mode: the CIFAR ResNet-20 (random weights unless ../shared/weights is present; speed does not depend on the
  weights) at 32x32 on an 8x8 grid of 4x4 patches (N = 64), fill 0.
Reported: images/minute and model evaluations per image (exact counts), and the speed-up ratio. (A full ViT order of
both curves in fp32 and bf16, and the cost against N and images per batch: benchmarks/bench_moxi_cost.py.) The CNN runs are
complete and their orders compared; at the timed ViT steps the naive pick is compared with pixelperception's.
"""
import argparse, time
from pathlib import Path
import numpy as np, torch, torch.nn.functional as F
import timm
from pixelperception.explain.moxi import MoXI
from pixelperception.models.maskers import PatchMasker, TokenMasker, log_odds
from pixelperception.models.cifar_resnet import resnet20, load_resnet20
from _machine import machine_line as machine

# ---------- naive, reference-style implementations (one image at a time) ----------
def naive_pixel_step(model, x, label, identified, N, grid, batch_size):
    "One greedy insertion step as the reference does it: N coalitions [k]+identified, numpy masks built row by row"
    masked = [[k] + identified for k in range(N)]
    rewards = []
    for i in range(0, N, batch_size):
        rows = masked[i:i + batch_size]
        m = np.zeros((len(rows), 3, N))
        for r, keep in enumerate(rows): m[r, :, keep] = 1
        m = F.interpolate(torch.tensor(m.reshape(len(rows), 3, grid, grid)), size=x.shape[-2:], mode='nearest').float()
        with torch.no_grad(): logits = model(x.expand(len(rows), -1, -1, -1) * m)
        rewards.append(log_odds(logits, torch.full((len(rows),), label)))
    reward = torch.cat(rewards)
    reward[identified] = -np.inf
    return int(torch.argmax(reward))

def naive_token_step(vit, x, label, identified, N, batch_size):
    "One greedy insertion step as the reference does it: N copies of the image embedded, tokens selected row by row"
    masked = [[k] + identified for k in range(N)]
    rewards = []
    for i in range(0, N, batch_size):
        rows = masked[i:i + batch_size]
        with torch.no_grad():
            emb = vit.patch_embed(x.expand(len(rows), -1, -1, -1)) + vit.pos_embed[:, 1:]   # every copy re-embedded
            sel = torch.cat([torch.index_select(emb[r:r + 1], 1, torch.tensor(keep)) for r, keep in enumerate(rows)])
            cls = (vit.cls_token + vit.pos_embed[:, :1]).expand(len(rows), -1, -1)
            t = vit.norm(vit.blocks(vit.norm_pre(torch.cat([cls, sel], 1))))
            logits = vit.forward_head(t)
        rewards.append(log_odds(logits, torch.full((len(rows),), label)))
    reward = torch.cat(rewards)
    reward[identified] = -np.inf
    return int(torch.argmax(reward))

def naive_full(step, n_steps):
    "Run a naive greedy insertion to the end"
    identified = []
    for _ in range(n_steps): identified.append(step(identified))
    return identified

def report(name, n_img, secs, evals, cpu=None):
    ipm = 60 * n_img / secs
    print(f"  {name:<36} {ipm:9.3f} images/min   {evals:8.0f} evals/image   ({secs:.1f} s wall"
          + ("" if cpu is None else f", {cpu:.1f} s CPU") + f" for {n_img} image(s))")
    return ipm

class Timer:
    "Wall-clock and process CPU time of a block (CPU time is steadier on a shared machine)"
    def __enter__(self): self.w, self.c = time.perf_counter(), time.process_time(); return self
    def __exit__(self, *a): self.wall, self.cpu = time.perf_counter() - self.w, time.process_time() - self.c

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--vit-images', type=int, default=1, help='images for the ViT token-mode steps of pixelperception (batched together)')
    ap.add_argument('--naive-vit-steps', type=int, default=8, help='ViT steps actually timed for both implementations (stratified, then extrapolated)')
    ap.add_argument('--full-vit', action='store_true', help='also run pixelperception MoXI on the ViT end to end (several minutes per image)')
    ap.add_argument('--cnn-images', type=int, default=2, help='images for the CNN pixel-mode runs (both implementations, full)')
    ap.add_argument('--batch-size', type=int, default=256, help='forward passes per chunk, both implementations')
    ap.add_argument('--threads', type=int, default=None, help='torch threads (default: torch default)')
    ap.add_argument('--skip-vit', action='store_true')
    a = ap.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    print(machine())

    # ---------------- pixel mode, CNN ----------------
    w = Path(__file__).resolve().parents[2]/'shared/weights/resnet20-cifar10.th'
    cnn = load_resnet20(w) if w.exists() else resnet20().eval()
    x = torch.randn(a.cnn_images, 3, 32, 32)
    N, grid = 64, 8
    print(f"\npixel mode: CIFAR ResNet-20 ({'pretrained' if w.exists() else 'random'} weights), 32x32, {grid}x{grid} grid (N={N}), insertion, full order")
    with torch.no_grad(): labels = cnn(x).argmax(-1)
    mx = MoXI(cnn, PatchMasker(grid), batch_size=a.batch_size)
    with Timer() as to: ours = mx.attribute(x, target=labels).order
    with Timer() as tn:
        naive = [naive_full(lambda S, b=b: naive_pixel_step(cnn, x[b:b + 1], int(labels[b]), S, N, grid, a.batch_size), N) for b in range(len(x))]
    ipm_ours = report('pixelperception MoXI (batched)', len(x), to.wall, mx.evals_per_image, to.cpu)
    ipm_naive = report('naive (reference-style)', len(x), tn.wall, N * N, tn.cpu)
    same = sum(o.tolist() == n for o, n in zip(ours, naive))
    print(f"  speed-up: {ipm_ours / ipm_naive:.2f}x wall, {tn.cpu / to.cpu:.2f}x CPU time   evaluations: {N * N / mx.evals_per_image:.2f}x fewer   "
          f"identical orders: {same}/{len(x)}")

    if a.skip_vit: return
    # ---------------- token mode, ViT ----------------
    vit = timm.create_model('vit_tiny_patch16_224', pretrained=False).eval()
    x = torch.randn(a.vit_images, 3, 224, 224)
    N = 196
    with torch.no_grad(): labels = vit(x).argmax(-1)
    mv = MoXI(vit, TokenMasker(vit), batch_size=a.batch_size)
    print(f"\ntoken mode: timm vit_tiny_patch16_224 (random weights), 224x224, N={N} tokens, insertion")
    if a.full_vit:   # the real thing, end to end
        with Timer() as tf: mv.attribute(x, target=labels)
        report('pixelperception MoXI (batched), full', len(x), tf.wall, mv.evals_per_image, tf.cpu)
    # Both implementations timed on the same stratified subset of steps: step t has N - t (ours) or N (naive)
    # candidates of t + 1 tokens; the cost of a step depends only on t, so we split 0..N-1 into S equal strata, time the
    # step at each stratum's midpoint (with a random prefix of length t, the same for both) and sum time x stratum width.
    s = max(1, min(a.naive_vit_steps, N))
    edges = np.linspace(0, N, s + 1)
    steps = [int((lo + hi) / 2) for lo, hi in zip(edges[:-1], edges[1:])]
    widths = np.diff(edges)
    g = torch.Generator().manual_seed(0)
    est_ours, est_naive, cpu_ours, cpu_naive, agree = 0., 0., 0., 0., 0
    for t, wdt in zip(steps, widths):   # interleaved, so both see the same machine load
        prefix = torch.randperm(N, generator=g)[:t]
        chosen = torch.zeros(len(x), N, dtype=torch.bool); chosen[:, prefix] = True
        with Timer() as to: pick = mv.step(x, labels, chosen)[0]
        with Timer() as tn: npick = naive_token_step(vit, x[:1], int(labels[0]), prefix.tolist(), N, a.batch_size)
        est_ours += to.wall / len(x) * wdt; cpu_ours += to.cpu / len(x) * wdt
        est_naive += tn.wall * wdt; cpu_naive += tn.cpu * wdt
        agree += npick == int(pick[0])
    print(f"  (timed {len(steps)} of {N} steps, t = {steps}, for both; total = sum over strata of step time x stratum width)")
    ipm_ours_est = report('pixelperception MoXI, estimated', 1, est_ours, N * (N + 1) / 2 + 1, cpu_ours)
    ipm_naive = report('naive (reference-style), estimated', 1, est_naive, N * N, cpu_naive)
    print(f"  speed-up: {ipm_ours_est / ipm_naive:.2f}x wall, {cpu_naive / cpu_ours:.2f}x CPU time   evaluations: {N * N / (N * (N + 1) / 2 + 1):.2f}x fewer   "
          f"naive picks equal to ours at the timed steps: {agree}/{len(steps)}")

if __name__ == '__main__': main()
