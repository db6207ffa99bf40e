"""torch.compile on a P2P training step: eager against compiled, side by side in one run (CPU here; CUDA where present).

    python benchmarks/bench_compile.py                    # the `cpu` recipe for EfficientNet-Lite0 at 224 px, batch 16
    python benchmarks/bench_compile.py --quick            # the `cpu` recipe's small CNNs at 64 px, batch 64
    python benchmarks/bench_compile.py --out FILE.md      # also write the table to a new file

`pxp train`'s Learner (`run_learner`, the recipe's callbacks and precision) on synthetic tensors (`profile_step.synthetic_dls`),
in float32 and bfloat16, once as it is, once with the classifier compiled (`pxp train --compile --compile-selector false`) and
once with the selector's encoder compiled too (`pxp train --compile`): `CompileClassifier` compiles them for the training
steps; inductor, default mode. Each arm runs `--warmup` steps (where compilation
happens: their time is the compile cost) and then `--steps` timed steps. Before training, the compiled classifier's logits on
one batch are compared with the eager ones (largest absolute difference). Arms run one after another in this process: run
nothing else.
"""
import argparse, sys, time
from pathlib import Path
import torch
from fastai.callback.core import Callback, CancelValidException
sys.path.insert(0, str(Path(__file__).parent))
from _machine import report
import profile_step as ps

class Clock(Callback):
    "Wall time of the warm-up steps and of the timed steps after them (one training epoch, no validation)"
    order = -1000
    def __init__(self, warmup): self.warmup, self.marks = warmup, {}
    def _sync(self):
        if torch.cuda.is_available(): torch.cuda.synchronize()
    def before_batch(self):
        if self.iter == 0: self._sync(); self.marks['start'] = time.perf_counter()
        if self.iter == self.warmup: self._sync(); self.marks['timed'] = time.perf_counter()
    def after_train(self): self._sync(); self.marks['end'] = time.perf_counter()
    def before_validate(self): raise CancelValidException()

def arm(classifier, size, bs, precision, compiled, warmup, steps, device):   # compiled: None, 'classifier' or 'both'
    "Seconds per step after the warm-up, the warm-up's seconds, and the compiled classifier's largest difference from eager"
    from pixelperception.p2p.recipes import recipe_config
    from pixelperception.p2p.train import run_learner
    cfg = recipe_config('cpu', classifier=classifier).updated(precision=precision, resolution=size, batch_size=bs, seed=0,
                                                             compile=bool(compiled), compile_selector=compiled == 'both')
    dls = ps.synthetic_dls(warmup + steps, bs, size, 10, cfg.data.n_segments, device=device)
    learn = run_learner(dls, cfg)
    diff = None
    if compiled:   # the compiled classifier's answer against the eager one, on a few images, then eager again for the fit to compile
        x = dls.train.one_batch()[0].as_subclass(torch.Tensor)[:4]
        m = learn.model.classifier.eval()
        with torch.no_grad():
            ref = m(x).float()
            m.compile(); diff = (m(x).float() - ref).abs().max().item()
        m._compiled_call_impl = None
    clock = Clock(warmup); learn.add_cb(clock)
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-3)
    t = clock.marks
    return dict(step_s=(t['end'] - t['timed'])/steps, warmup_s=t['timed'] - t['start'], diff=diff)

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--quick', action='store_true', help="the small CNNs at 64 px instead of EfficientNet-Lite0 at 224")
    p.add_argument('--precisions', default='fp32,bf16')
    p.add_argument('--warmup', type=int, default=3, help='steps before timing (compilation happens here)')
    p.add_argument('--steps', type=int, default=8, help='timed steps')
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--out', type=Path, help='write the table (markdown) to this new file')
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    device = 'cuda' if torch.cuda.is_available() else 'cpu'
    classifier, size, bs = (None, 64, 64) if a.quick else ('efficientnet_lite0', 224, 16)
    name = f"`cpu` recipe, {classifier or 'small CNNs'}, {size} px, batch {bs}"
    rows = ["| step | precision | eager s/step | classifier compiled s/step | speed-up | + selector compiled s/step | speed-up | compile (warm-up) s | logits max diff |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for prec in a.precisions.split(','):
        e = arm(classifier, size, bs, prec, None, a.warmup, a.steps, device)
        try: c, b = (arm(classifier, size, bs, prec, parts, a.warmup, a.steps, device) for parts in ('classifier', 'both'))
        except Exception as ex: c = b = ex
        e2 = arm(classifier, size, bs, prec, None, a.warmup, a.steps, device)   # eager again: the machine's drift over the arms
        print(f"eager before and after the compiled arms: {e['step_s']:.3f}, {e2['step_s']:.3f} s/step", flush=True)
        e = dict(e, step_s=(e['step_s'] + e2['step_s']) / 2)
        if isinstance(c, Exception):   # a compiler that cannot run here: say why, keep the eager figure
            rows.append(f"| {name} | {prec} | {e['step_s']:.3f} | failed: {type(c).__name__}: {str(c).splitlines()[0][:80]} | | | | | |"); continue
        rows.append(f"| {name} | {prec} | {e['step_s']:.3f} | {c['step_s']:.3f} | {e['step_s']/c['step_s']:.2f}× | {b['step_s']:.3f} | {e['step_s']/b['step_s']:.2f}× | "
                    f"{c['warmup_s']:.0f}, {b['warmup_s']:.0f} (eager {e['warmup_s']:.0f}) | {c['diff']:.2g} |")
        print(rows[-1], flush=True)
    report("torch.compile on a P2P training step", f"{a.warmup} warm-up and {a.steps} timed steps per arm, {device}; eager is the mean of an arm before and after the compiled ones.", rows, a.out)

if __name__ == '__main__': main()
