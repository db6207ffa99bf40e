"""Side by side with the libraries users would pick instead: same model, same images, same precision (fp32), one run.

    python benchmarks/bench_peers.py                 # 8 CIFAR-10 test images, real ResNet-20, 4x4 patches, 16 permutations
    python benchmarks/bench_peers.py --quick         # 2 images, 4 permutations: a smoke test
    python benchmarks/bench_peers.py --out FILE.md   # also write the table to a new file

- Shapley values: our `SampledShapley` against captum's `ShapleyValueSampling`, the same number of permutations/rounds
  R, the same features (captum's `feature_mask` of the patches; ours takes the same `feature_mask`), baselines 0 (the
  normalised mean colour, our fill), the target's logit as the value. Agreement: per-image Pearson correlation of the
  two estimates, against the correlation of captum with itself under another seed (the sampling noise).
- Grad-CAM: ours against pytorch-grad-cam's `GradCAM` on the same layer (the one ours picks); our map goes through
  their scaling (`scale_cam_image`: ReLU'd map resized to the image and min-max normalised), so the maps must be equal.
- Ranking curves: our `ranking_curves` (deletion) against Quantus' `PixelFlipping` on the same orders (our Shapley
  order, as an attribution map of distinct per-patch values, one patch per step, baseline 0): the target's logit (Quantus'
  `softmax=False`) after each step must be equal; ours then reports accuracy (argmax == target) on the same masked images.
Times are seconds per image, each side run alternately `--reps` times (minimum kept); run under /work/notes/quiet.sh.
"""
import argparse, sys, time
from pathlib import Path
import numpy as np, torch, torch.nn.functional as F
sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine_line
from pixelperception.explain.moxi import SampledShapley
from pixelperception.explain.cam import GradCAM, last_conv_stage
from pixelperception.models.maskers import PatchMasker
from pixelperception.evaluation.metrics import ranking_curves, ranking_keep

def images(data, weights, n):
    "(model, x, y, what): real ResNet-20 and CIFAR-10 test images where the shared folders have them, else random ones"
    from pixelperception.models.zoo import create_classifier, normalization
    torch.manual_seed(0)
    if Path(data).is_dir() and Path(weights).is_file():
        from torchvision import datasets, transforms
        mean, std = normalization('resnet20')
        ds = datasets.ImageFolder(data, transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean, std)]))
        idx = torch.linspace(0, len(ds) - 1, n).long().tolist()
        x, y = torch.stack([ds[i][0] for i in idx]), torch.tensor([ds[i][1] for i in idx])
        return create_classifier('resnet20', 10, model_path=weights).eval(), x, y, 'ResNet-20 (real weights), CIFAR-10 test images'
    return create_classifier('resnet20', 10).eval(), torch.randn(n, 3, 32, 32), torch.randint(0, 10, (n,)), 'ResNet-20 (random weights), random images'

def patch_ids(grid, H, W):
    "captum's feature_mask [1,1,H,W] of a grid x grid patch map (row-major ids, as PatchMasker numbers them)"
    r, c = torch.arange(H) * grid // H, torch.arange(W) * grid // W
    return (r[:, None] * grid + c[None, :])[None, None]

def best_of(reps, *fns):
    "Run the functions alternately `reps` times: (each one's last result, each one's minimum seconds)"
    out, t = [None] * len(fns), [float('inf')] * len(fns)
    for _ in range(reps):
        for i, f in enumerate(fns):
            t0 = time.perf_counter(); out[i] = f(); t[i] = min(t[i], time.perf_counter() - t0)
    return out, t

def pearson(a, b):
    "Per-row Pearson correlation of [B,N] tensors"
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp(min=1e-12)

def shapley(model, x, y, grid, R, bs, reps):
    "Ours vs captum: times, per-image correlation, captum's seed-to-seed correlation, our order"
    from captum.attr import ShapleyValueSampling
    fm, masker = patch_ids(grid, *x.shape[-2:]), PatchMasker(grid)
    ours = SampledShapley(model, masker, reward='logit', n_rounds=R, batch_size=bs)
    perm = SampledShapley(model, masker, reward='logit', n_rounds=R, batch_size=bs, sampler='permutations')
    sv = ShapleyValueSampling(model)
    ppe = max(1, bs // len(x))   # captum evaluates len(x)·ppe masked images per forward: about our chunk
    def theirs(seed):
        torch.manual_seed(seed)
        a = sv.attribute(x, target=y, baselines=0., feature_mask=fm, n_samples=R, perturbations_per_eval=ppe)
        return masker.pool(a[:, 0], x)   # [B,N]: every pixel of a patch holds its value
    (r_ours, r_perm, phi_c), (t_ours, t_perm, t_c) = best_of(reps, lambda: ours.attribute(x, target=y), lambda: perm.attribute(x, target=y), lambda: theirs(0))
    noise = pearson(theirs(1), phi_c)
    return (dict(t_ours=t_ours, t_theirs=t_c, corr=pearson(r_ours.scores, phi_c), noise=noise, evals_ours=ours.evals_per_image),
            dict(t_ours=t_perm, t_theirs=t_c, corr=pearson(r_perm.scores, phi_c), noise=noise, evals_ours=perm.evals_per_image), r_ours)

def gradcam(model, x, y, reps):
    "Ours vs pytorch-grad-cam on the same layer: times and the largest difference of the scaled maps"
    from pytorch_grad_cam import GradCAM as PGC
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    from pytorch_grad_cam.utils.image import scale_cam_image
    layer = last_conv_stage(model, x)
    ours, pgc = GradCAM(model, layer=layer), PGC(model, target_layers=[layer])
    H, W = x.shape[-2:]
    def o(): return F.interpolate(ours.heatmap(x, y)[:, None], size=(H, W), mode='bilinear', align_corners=False)[:, 0]   # a map per pixel, as theirs
    def t(): return pgc(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in y])
    (m_o, m_t), (t_o, t_t) = best_of(reps, o, t)
    same = scale_cam_image(scale_cam_image(ours.heatmap(x, y).numpy(), (W, H)))   # our raw map through their scaling (per layer, then of the layers' mean)
    return dict(t_ours=t_o, t_theirs=t_t, maxdiff=float(np.abs(same - m_t).max()), layer=type(layer).__name__)

def curves(model, x, y, order, grid, bs, reps, peer_order=None):
    "Our deletion curve vs Quantus' pixel flipping on the same orders (`peer_order`: another one for Quantus, to see the check fail)"
    import quantus
    from pixelperception.explain.moxi import Ranking
    masker, (H, W), N = PatchMasker(grid, batch_size=bs), x.shape[-2:], grid * grid
    po = order if peer_order is None else peer_order
    a = Ranking(po, po.float()).to_attribution(masker, size=(H, W)).numpy()   # distinct value per patch: (N - rank)/N
    # Quantus spreads a [B,1,H,W] map over the channels and flips `features_in_step` of the 3·H·W values per step (it asks that
    # step to divide H·W): with one patch's pixels per step, a patch takes 3 steps, and its every third point is ours.
    pf = quantus.PixelFlipping(features_in_step=(H // grid) * (W // grid), perturb_baseline=0., normalise=False,
                               disable_warnings=True, display_progressbar=False)
    def o(): return ranking_curves(model, x, y, order, masker, curve='deletion', batch_size=bs)
    def t(): return np.array(pf(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=a, device='cpu', channel_first=True, softmax=False))[:, 2::3]
    (c_o, l_t), (t_o, t_t) = best_of(reps, o, t)
    with torch.inference_mode():   # our target logits on the deletion steps ranking_curves evaluates (k = 1..N)
        keep = ranking_keep(order, torch.arange(1, N + 1), 'deletion')
        l_o = masker(model, x, keep).gather(2, y[:, None, None].expand(-1, N, 1))[..., 0]
    return dict(t_ours=t_o, t_theirs=t_t, maxdiff=float(np.abs(l_o.numpy() - l_t).max()), auc=c_o.auc, steps=N)

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--data', default='/work/shared/data/cifar10/test')
    p.add_argument('--weights', default='/work/shared/weights/resnet20-cifar10.th')
    p.add_argument('--n', type=int, default=8, help='images')
    p.add_argument('--grid', type=int, default=4, help='patches per side (N = grid²)')
    p.add_argument('--rounds', type=int, default=16, help='permutations (captum) = rounds (ours)')
    p.add_argument('--batch-size', type=int, default=256, help='masked images per forward')
    p.add_argument('--reps', type=int, default=2)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--quick', action='store_true')
    p.add_argument('--out', type=Path, help='write the table (markdown) to this new file')
    a = p.parse_args(argv)
    if a.quick: a.n, a.rounds, a.reps = 2, 4, 1
    if a.out and a.out.exists(): sys.exit(f"{a.out} exists: results files are never overwritten, pick a new name")
    torch.set_num_threads(a.threads)
    line = machine_line()
    model, x, y, what = images(a.data, a.weights, a.n)
    print(line); print(f"{what}: {a.n} images, {a.grid}x{a.grid} patches, fp32")
    s, sp, r = shapley(model, x, y, a.grid, a.rounds, a.batch_size, a.reps)
    g = gradcam(model, x, y, a.reps)
    c = curves(model, x, y, r.order, a.grid, a.batch_size, a.reps)
    n = len(x)
    N = a.grid ** 2
    def agree(d): return f"r = {d['corr'].mean():.3f} (min {d['corr'].min():.3f}); captum vs captum (seeds 0, 1): {d['noise'].mean():.3f}; our evaluations/image {d['evals_ours']:.0f}, captum's {a.rounds * N + 1}"
    rows = [("Shapley sampling (ours: coalitions, the default)", "captum ShapleyValueSampling", s, agree(s)),
            ("Shapley sampling (ours: sampler='permutations')", "captum ShapleyValueSampling", sp, agree(sp)),
            ("Grad-CAM", "pytorch-grad-cam GradCAM", g, f"max |Δ| of the scaled maps {g['maxdiff']:.1e} ({g['layer']})"),
            ("deletion curve", "Quantus PixelFlipping", c, f"max |Δ| of the target logits {c['maxdiff']:.1e} over {c['steps']} steps (Quantus: {3*c['steps']} forwards, a patch in 3 steps)")]
    out = [f"{line}", "", f"{what}: {n} images, {a.grid}x{a.grid} patches, fp32, R = {a.rounds}, best of {a.reps}", "",
           "| method | peer | ours s/img | theirs s/img | ours/theirs | agreement |", "|---|---|---:|---:|---:|---|"]
    out += [f"| {m} | {peer} | {d['t_ours']/n:.3f} | {d['t_theirs']/n:.3f} | {d['t_ours']/d['t_theirs']:.2f} | {agree} |" for m, peer, d, agree in rows]
    print("\n".join(out[2:]))
    if a.out: a.out.parent.mkdir(parents=True, exist_ok=True); a.out.write_text("\n".join(out) + "\n")
    return dict(shapley=s, shapley_permutations=sp, gradcam=g, curves=c)

if __name__ == '__main__': main()
