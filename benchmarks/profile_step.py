"""Where one P2P training step and one MoXI batch spend their time, and how often they would make a GPU wait.

    python benchmarks/profile_step.py                 # small synthetic P2P step (cpu recipe, 64 px) + EfficientNet-Lite0 at 224 + MoXI
    python benchmarks/profile_step.py --quick         # the small arms only (a smoke test: seconds)
    python benchmarks/profile_step.py --out FILE.md   # also write the table (markdown) to a new file

The P2P step runs through the fastai Learner as `pxp train` builds it (`run_learner` with the recipe's callbacks and
precision) on synthetic tensors (square superpixels), one warm-up batch first; the MoXI arm explains a small batch of
images with the insertion curve. Per step: the aten ops (leaf ops: on a GPU most launch a kernel, views none), the
would-be host-device synchronisations (`_syncs.count_syncs`: value reads and value-sized outputs, by place), and the
share of the step under each `torch.profiler.record_function` label: the library labels the selector, the group pooling
and sampling, the masking and the classifier in `P2P.select`/`P2P.classify`, the penalties in `SparsityCallback`; this
script labels the task loss + penalties, backward and the optimiser from fastai's events.
"""
import argparse, contextlib, math, sys, time
from pathlib import Path
import torch, torch.nn as nn
from torch.profiler import profile, ProfilerActivity, record_function
from torch.autograd import DeviceType
from fastai.callback.core import Callback, CancelValidException
from fastai.data.core import DataLoaders
sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine_line
from _syncs import count_syncs

def square_groups(size:int, n_segments:int) -> torch.Tensor:
    "An id map [size,size] of about n_segments square superpixels"
    side = max(1, round(math.sqrt(n_segments)))
    s = math.ceil(size / side)
    r = torch.arange(size) // s
    return r[:, None] * side + r[None, :]

def synthetic_dls(n_batches:int, bs:int, size:int, n_classes:int=10, n_segments:int=100, seed:int=0, device='cpu') -> DataLoaders:
    "DataLoaders of (x, groups, y) batches of random images with square superpixels, as `get_dls` returns them (`SuperpixelDL`: each batch's map carries its G)"
    from pixelperception.data.datasets import SuperpixelDL
    from pixelperception.data.superpixels import TensorGroups
    g, n = torch.Generator().manual_seed(seed), n_batches * bs
    x = torch.randn(n, 3, size, size, generator=g)
    groups, y = square_groups(size, n_segments), torch.randint(0, n_classes, (n,), generator=g)
    ds = [(x[i], TensorGroups(groups.clone()), y[i]) for i in range(n)]
    dls = DataLoaders(SuperpixelDL(ds, bs=bs, drop_last=True), SuperpixelDL(ds[:bs], bs=bs), device=device)
    dls.c, dls.n_segments, dls.size = n_classes, n_segments, size
    return dls

class _Open(Callback):
    "Runs first: at training batch `at`, enter the measuring context and the 'step' label"
    order = -1000
    def __init__(self, at, ctx): self.at, self.ctx, self.stack, self.result = at, ctx, None, None
    def before_batch(self):
        if not (self.training and self.iter == self.at): return
        self.stack = contextlib.ExitStack()
        self.result = self.stack.enter_context(self.ctx())
        self.stack.enter_context(record_function('step'))
    def before_validate(self): raise CancelValidException()   # one training epoch only

class _Phases(Callback):
    "Runs last: labels the loss (task loss + penalties), backward and optimiser phases, and closes the step"
    order = 1000
    def __init__(self, opener): self.opener, self.open = opener, None
    def _start(self, name):
        if self.opener.stack is not None: self.open = record_function(name); self.open.__enter__()
    def _end(self):
        if self.open is not None: self.open.__exit__(None, None, None); self.open = None
    def after_pred(self): self._start('loss')
    def after_loss(self): self._end()
    def before_backward(self): self._start('backward')
    def after_backward(self): self._end()
    def before_step(self): self._start('optimiser')
    def after_step(self): self._end()
    def after_batch(self):
        if self.opener.stack is not None: self.opener.stack.close(); self.opener.stack = None

def p2p_step(ctx, recipe='cpu', classifier=None, size=64, bs=16, precision='fp32', n_classes=10, device='cpu', **over):
    "Run one warm-up and one measured training step of `pxp train`'s Learner under `ctx()`; returns what ctx yielded"
    from pixelperception.p2p.recipes import recipe_config
    from pixelperception.p2p.train import run_learner
    cfg = recipe_config(recipe, classifier=classifier).updated(precision=precision, resolution=size, batch_size=bs, seed=0, **over)
    dls = synthetic_dls(2, bs, size, n_classes, cfg.data.n_segments, device=device)
    learn = run_learner(dls, cfg)
    opener = _Open(1, ctx)
    learn.add_cbs([opener, _Phases(opener)])
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-3)
    return opener.result

class Labelled(nn.Module):
    "A model whose forward runs under the profiler label 'classifier'"
    def __init__(self, m): super().__init__(); self.m = m
    def forward(self, x):
        with record_function('classifier'): return self.m(x)

def moxi_batch(ctx, n=4, size=32, grid=4, precision='fp32', device='cpu'):
    "One MoXI insertion batch (n images, a grid x grid PatchMasker) on a CIFAR ResNet-20 (random weights) under ctx()"
    from pixelperception.explain.moxi import MoXI
    from pixelperception.models.maskers import PatchMasker
    from pixelperception.models.zoo import create_classifier
    torch.manual_seed(0)
    model = Labelled(create_classifier('resnet20', 10).eval()).to(device)
    x = torch.randn(n, 3, size, size, device=device)
    e = MoXI(model, PatchMasker(grid), precision=precision)
    e.attribute(x[:1])   # warm-up
    with ctx() as r:
        with record_function('step'): e.attribute(x)
    return r

P2P_LABELS = ('p2p.selector', 'p2p.groups', 'p2p.mask', 'p2p.classifier', 'loss', 'backward', 'optimiser')
MOXI_LABELS = ('moxi.coalitions', 'explainer.value', 'classifier')

@contextlib.contextmanager
def timed():
    "The profiler without stacks (timings), yielding a dict filled with its events"
    out = {}
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=acts) as prof: yield out
    out['events'] = prof.events()

def summarize(events, labels) -> dict:
    "Step time, leaf aten ops in the step and the share of each label"
    step = next(e for e in events if e.name == 'step')
    lo, hi = step.time_range.start, step.time_range.end
    inside = [e for e in events if lo <= e.time_range.start and e.time_range.end <= hi]
    leaves = [e for e in inside if e.name.startswith('aten::') and not any(c.name.startswith('aten::') for c in e.cpu_children)]
    share = {l: sum(e.cpu_time_total for e in inside if e.name == l) / step.cpu_time_total for l in labels}
    kernels = sum(1 for e in events if e.device_type == DeviceType.CUDA)   # the GPU's kernels (the profiler records one step)
    return dict(ms=step.cpu_time_total / 1e3, ops=len(leaves), kernels=kernels, share=share)

def arm(name, run, labels):
    "Time (profiler without stacks) and count syncs (a second run with stacks) of one arm"
    t0 = time.perf_counter()
    s = summarize(run(timed)['events'], labels)
    syncs = run(count_syncs)
    s.update(name=name, syncs=syncs.count, places=syncs.by_place(), wall=time.perf_counter() - t0)
    return s

def table(rows) -> str:
    "The profile table (markdown)"
    cols = ('selector', 'pool+sample', 'mask', 'classifier', 'loss', 'backward', 'optimiser')
    gpu = any(r.get('kernels') for r in rows)
    out = [f"| step | {'host ' if gpu else ''}ms | aten ops |{' GPU kernels |' if gpu else ''} syncs | " + " | ".join(cols) + " | other |",
           "|---|" + "---:|" * (len(cols) + 4 + gpu)]
    for r in rows:
        sh = r['share']
        if 'p2p.selector' in sh:
            v = [sh['p2p.selector'], sh['p2p.groups'], sh['p2p.mask'], sh['p2p.classifier'], sh['loss'], sh['backward'], sh['optimiser']]
        else:   # MoXI: coalitions are the selector's analogue; masking = value - classifier
            v = [sh['moxi.coalitions'], None, max(sh['explainer.value'] - sh['classifier'], 0.), sh['classifier'], None, None, None]
        other = 1 - sum(x for x in v if x is not None)
        k = f" {r['kernels']} |" if gpu else ''
        out.append(f"| {r['name']} | {r['ms']:.0f} | {r['ops']} |{k} {r['syncs']} | " + " | ".join('–' if x is None else f"{100*x:.0f} %" for x in v) + f" | {100*other:.0f} % |")
    return "\n".join(out)

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--quick', action='store_true', help='small arms only (no EfficientNet-Lite0)')
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--out', type=Path, help='write the table (markdown) to this new file')
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    line = machine_line()
    print(line)
    arms = [("P2P cpu recipe, small CNNs, 64 px, batch 16, fp32", lambda c: p2p_step(c), P2P_LABELS),
            ("P2P cpu recipe, small CNNs, 64 px, batch 16, bf16", lambda c: p2p_step(c, precision='bf16'), P2P_LABELS),
            ("P2P paper recipe (LR-ASPP, cov), small CNN, 64 px, batch 16, fp32", lambda c: p2p_step(c, recipe='paper'), P2P_LABELS),
            ("MoXI insertion, ResNet-20, 4 images, 4x4 patches, fp32", lambda c: moxi_batch(c), MOXI_LABELS),
            ("MoXI insertion, ResNet-20, 4 images, 4x4 patches, bf16", lambda c: moxi_batch(c, precision='bf16'), MOXI_LABELS)]
    if not a.quick:
        arms.insert(3, ("P2P cpu recipe, EfficientNet-Lite0 (selector + classifier), 224 px, batch 4, fp32",
                        lambda c: p2p_step(c, classifier='efficientnet_lite0', size=224, bs=4, pretrained=False), P2P_LABELS))
    rows = []
    for name, run, labels in arms:
        r = arm(name, run, labels)
        rows.append(r)
        print(f"{name}: {r['ms']:.0f} ms, {r['ops']} aten ops, {r['syncs']} syncs ({r['wall']:.0f} s)")
        for k, v in r['places'].most_common(): print(f"    {v:3d} x {k}")
    t = table(rows)
    print(t)
    if a.out:
        if a.out.exists(): sys.exit(f"{a.out} exists: results files are never overwritten, pick a new name")
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(f"{line}\n\n{t}\n\nSyncs by place:\n\n" + "\n".join(
            f"- {r['name']}: " + ("; ".join(f"{v} x {k}" for k, v in r['places'].most_common()) or "none") for r in rows) + "\n")
    return rows

if __name__ == '__main__': main()
