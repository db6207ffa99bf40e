#!/usr/bin/env python
"""The optimiser step: fastai's `Adam` (what `pxp train` used before `TorchAdam`, and uses with weight decay) against torch's Adam (multi-tensor `foreach`, and `fused`: `TorchAdam`, `pxp train`'s now), side by side.

    python benchmarks/bench_optimizer.py [--out FILE.md]

For the P2P models of the recipes (small CNNs at 64 px; LR-ASPP + ResNet-18 and EfficientNet-Lite0 + its CAM selector at
224 px), with random gradients on every parameter: milliseconds per `step()` (best of 3 blocks of 10, the arms
alternated), and the aten ops one step dispatches (counted by `torch.profiler`). On a GPU each aten op of fastai's
per-tensor update is a kernel launch, where `foreach`/`fused` update all tensors in a few multi-tensor kernels (on a CPU
`foreach` still loops over the tensors, so its op count stays high there). After 10 steps from the same state the
parameters of each torch arm are compared with fastai's (largest absolute difference): both use fastai's defaults
(β = (0.9, 0.99), ε = 1e-5, no weight decay). Run nothing else meanwhile.
"""
import argparse, sys, time
from functools import partial
from pathlib import Path
import torch
from torch.profiler import profile, ProfilerActivity
sys.path.insert(0, str(Path(__file__).parent))
from _machine import report

MODELS = (('cnn', 'small_cnn', 64), ('lraspp', 'resnet18', 224), ('efficientnet_lite0_cam', 'efficientnet_lite0', 224))

def arms(ps):
    "name -> a fresh optimiser over `ps`"
    from fastai.optimizer import Adam, OptimWrapper
    from pixelperception.p2p.learner import TorchAdam
    out = {'fastai Adam': lambda: Adam(ps, 1e-3, wd=0., decouple_wd=False),
           'torch Adam foreach': lambda: OptimWrapper(ps, partial(torch.optim.Adam, foreach=True, lr=1e-3, betas=(0.9, 0.99), eps=1e-5))}
    if TorchAdam(ps, 1e-3).opt.defaults['fused']: out['torch Adam fused'] = lambda: TorchAdam(ps, 1e-3)   # it falls back to unfused where it must
    return out

def ops(opt):
    "aten ops one step dispatches"
    with profile(activities=[ProfilerActivity.CPU]) as prof: opt.step()
    return sum(e.count for e in prof.key_averages() if e.key.startswith('aten::'))

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--threads', type=int, default=2); ap.add_argument('--out', type=Path, help='write the table to this new file')
    a = ap.parse_args(argv)
    if a.out and a.out.exists(): sys.exit(f"{a.out} exists: results files are never overwritten, pick a new name")
    torch.set_num_threads(a.threads)
    from pixelperception.p2p.learner import p2p_model
    dev = 'cuda' if torch.cuda.is_available() else 'cpu'
    rows = ["| models | tensors | parameters | optimiser | ms/step | × fastai | aten ops/step | max |Δp| after 10 steps |", "|---|---:|---:|---|---:|---:|---:|---:|"]
    for sel, clf, size in MODELS:
        m = p2p_model(10, size=size, selector=sel, classifier=clf, pretrained=False).to(dev)
        ps = [p for p in m.parameters() if p.requires_grad]
        g = [torch.randn_like(p) * 1e-3 for p in ps]
        start = [p.detach().clone() for p in ps]
        res, after = {}, {}
        for name, make in arms(ps).items():   # the answer: 10 steps from the same state
            with torch.no_grad():
                for p, s0, gi in zip(ps, start, g): p.copy_(s0); p.grad = gi.clone()
            o = make()
            for _ in range(10): o.step()
            after[name] = [p.detach().clone() for p in ps]
            res[name] = dict(opt=o, ms=float('inf'), ops=ops(o))
        for _ in range(3):                     # the time: blocks of 10 steps, arms alternated
            for name, r in res.items():
                if dev == 'cuda': torch.cuda.synchronize()
                t = time.perf_counter()
                for _ in range(10): r['opt'].step()
                if dev == 'cuda': torch.cuda.synchronize()
                r['ms'] = min(r['ms'], (time.perf_counter() - t) / 10 * 1e3)
        base = res['fastai Adam']
        for name, r in res.items():
            d = max((x - y).abs().max().item() for x, y in zip(after[name], after['fastai Adam']))
            rows.append(f"| {sel} + {clf}, {size} px | {len(ps)} | {sum(p.numel() for p in ps)/1e6:.1f} M | {name} | {r['ms']:.1f} | "
                        f"{base['ms']/r['ms']:.2f} | {r['ops']} | {d:.1e} |")
            print(rows[-1], flush=True)
    report("The optimiser step: fastai's Adam against torch's", f"{dev}; best of 3 blocks of 10 steps, arms alternated.", rows, a.out)

if __name__ == '__main__': main()
