"""Count host-device synchronisations: what makes a GPU step wait for the GPU (shared by `profile_step.py` and tests/test_sync.py).

On a CPU nothing waits, so the ops that *would* wait are counted: every read of a tensor's value on the host
(`item`, `bool(t)`, `int(t)`, `float(t)`, `repeat_interleave` with tensor repeats: `aten::_local_scalar_dense`), ops
whose output size depends on values (`nonzero`, boolean indexing, `masked_select`, `unique`), seen by `torch.profiler`
(it also sees ops under `inference_mode`), plus the Python-level `tolist`/`numpy`/`cpu` calls, which dispatch nothing
on a CPU tensor and are patched for the block. Each is attributed to the innermost Python frame outside torch."""
import collections, contextlib, re
import torch
from torch.profiler import profile, ProfilerActivity

SYNC_OPS = {'aten::_local_scalar_dense', 'aten::nonzero', 'aten::masked_select', 'aten::_unique', 'aten::_unique2',
            'aten::unique_dim', 'aten::unique_consecutive'}
PY_METHODS = ('tolist', 'numpy', 'cpu')
_FRAME = re.compile(r'(\S+\.py)\((\d+)\): (\S+)')

def _place(evt):
    "The innermost Python frame above a profiler event outside torch and fastai's tensor wrappers ('file:line function', paths from the package root)"
    e = evt.cpu_parent
    while e is not None:
        m = _FRAME.match(e.name)
        if m and not any(s in m.group(1) for s in ('torch/', 'fastai/torch_core.py', '_syncs.py', 'contextlib')):   # fastai's tensor wrappers: their caller
            f = m.group(1)
            f = f.split('pixelperception/', 1)[-1] if 'pixelperception/' in f else f.split('site-packages/')[-1]
            return f"{f}:{m.group(2)} {m.group(3)}"
        e = e.cpu_parent
    return 'elsewhere'

ON_DEVICE = {'aten::_assert_async', 'aten::_fused_adam_', 'aten::_fused_adamw_'}   # their reads are a CPU kernel's own: see `_nested`

def _nested(evt):
    """True when a sync op runs inside another (nonzero inside unique): counted once, at the outer one; or inside an op
    that reads a value on a CPU but on a GPU reads it on the device without waiting: `torch._assert_async` (its
    condition), torch's fused Adam (each parameter's step counter, which lives on the parameter's device)"""
    e = evt.cpu_parent
    while e is not None:
        if e.name in SYNC_OPS or e.name in ON_DEVICE: return True
        e = e.cpu_parent
    return False

class Syncs:
    "The would-be synchronisations of a block: `calls` [(op, place)], `count`, `by_place()`"
    def __init__(self): self.calls = []
    @property
    def count(self): return len(self.calls)
    def by_place(self): return collections.Counter(f"{n} @ {w}" for n, w in self.calls)

@contextlib.contextmanager
def count_syncs():
    "Within the block, record the would-be host-device synchronisations; yields a `Syncs` filled when the block ends"
    res, saved = Syncs(), {m: getattr(torch.Tensor, m) for m in PY_METHODS}
    py = []
    def wrap(m):
        orig = saved[m]
        def f(self, *a, **k):
            py.append(m)
            with torch.profiler.record_function(f'py::{m}'): return orig(self, *a, **k)
        return f
    for m in PY_METHODS: setattr(torch.Tensor, m, wrap(m))
    try:
        with profile(activities=[ProfilerActivity.CPU], with_stack=True) as prof: yield res
    finally:
        for m, f in saved.items(): setattr(torch.Tensor, m, f)
    for e in prof.events():
        if (e.name in SYNC_OPS and not _nested(e)) or e.name.startswith('py::'): res.calls.append((e.name.replace('aten::', ''), _place(e)))
