"""A P2P training step (through `pxp train`'s fastai Learner) and a MoXI batch make no host-device synchronisation of
their own: every read of a device value would make a GPU wait, once per step. `benchmarks/_syncs.count_syncs` finds
them on a CPU (value reads and value-sized outputs, through `torch.profiler`, plus `tolist`/`numpy`/`cpu`)."""
from conftest import bench_modules
import pytest, torch
from fastai.callback.core import Callback

@pytest.fixture(scope='module')
def bench():
    with bench_modules('profile_step', '_syncs') as ms: yield ms   # profile_step imports its siblings _machine and _syncs

# What stays, each named: FiniteLoss (reads the loss each step, so that a NaN stops training before the optimiser applies
# it), fastai's Recorder (its smoothed loss goes through .cpu()), and pd_jitter's Cholesky retry (with use_cov, it must
# read whether the factorisation succeeded to pick the jitter). data.superpixels' id checks are the loader's now (the
# batch carries its G, `with_group_count`): a read there fails.
OUTSIDE = ('p2p/run_callbacks.py', 'fastai/')
OWN = ('data/superpixels.py', 'p2p/model.py', 'p2p/loss.py', 'p2p/callback.py', 'models/maskers.py', 'explain/moxi.py')

def _places(syncs): return [w for _, w in syncs.calls]

def _outside(w): return w.startswith(OUTSIDE) or (w.startswith('p2p/model.py:') and w.endswith(' pd_jitter'))

def _own(syncs): return [w for w in _places(syncs) if w.startswith(OWN) and not _outside(w)]

class _Planted(Callback):
    "A callback that reads the loss on the host, as logging code often does"
    order = 50
    def after_loss(self):
        if self.training: self.learn.planted = self.loss.item()

def test_counter_catches_planted_sync(bench, monkeypatch):
    ps, sy = bench
    x = torch.randn(3)
    with sy.count_syncs() as s: x.sum().item(); bool(x[0] > 0); x.tolist(); x[x > 0]; x.cpu()
    assert [n for n, _ in s.calls] == ['_local_scalar_dense', '_local_scalar_dense', 'py::tolist', 'nonzero', 'py::cpu']
    with sy.count_syncs() as s:
        with torch.inference_mode(): x.sum().item()
    assert s.count == 1, "a read under inference_mode counts too"
    base = ps.p2p_step(sy.count_syncs)
    import pixelperception.p2p.train as train
    run_learner = train.run_learner
    def planted(*a, **k):
        learn = run_learner(*a, **k); learn.add_cb(_Planted()); return learn
    monkeypatch.setattr(train, 'run_learner', planted)
    more = ps.p2p_step(sy.count_syncs)
    assert more.count == base.count + 1, (base.by_place(), more.by_place())
    assert any('test_sync.py' in w and 'after_loss' in w for w in _places(more)), more.by_place()

@pytest.mark.parametrize('recipe,precision', [('cpu', 'fp32'), ('cpu', 'bf16'), ('paper', 'fp32')])
def test_p2p_step_no_sync_of_its_own(bench, recipe, precision):
    ps, sy = bench
    s = ps.p2p_step(sy.count_syncs, recipe=recipe, precision=precision)
    assert _own(s) == [], s.by_place()
    assert all(_outside(w) for w in _places(s)), s.by_place()   # a new sync anywhere else fails here

def _moxi(ps, sy, grid, masker=None):
    from pixelperception.explain.moxi import MoXI
    from pixelperception.models.maskers import PatchMasker
    from pixelperception.models.zoo import create_classifier
    torch.manual_seed(0)
    model = create_classifier('resnet20', 10).eval()
    x = torch.randn(2, 3, 32, 32)
    e = MoXI(model, PatchMasker(grid))
    with sy.count_syncs() as s: r = e.attribute(x)
    return s, r

def test_moxi_batch_no_sync_in_its_loop(bench):
    ps, sy = bench
    small, _ = _moxi(ps, sy, 2)   # 4 greedy steps
    big, r = _moxi(ps, sy, 4)     # 16 greedy steps
    assert big.count == small.count, (small.by_place(), big.by_place())   # nothing per step
    assert big.count <= 2 and all(not ('moxi.py' in w and 'step' in w) and 'maskers.py' not in w for w in _places(big)), big.by_place()
    assert sorted(r.order[0].tolist()) == list(range(16))

def test_fused_adam_reads_its_counters_on_the_device(bench):
    "torch's fused Adam (`pxp train`'s `TorchAdam`) reads each step counter inside its kernel: a value read on a CPU, on the device on a GPU"
    _, sy = bench
    ps = [torch.nn.Parameter(torch.randn(3)) for _ in range(3)]
    opt = torch.optim.Adam(ps, fused=True)
    for p in ps: p.grad = torch.ones(3)
    with sy.count_syncs() as s: opt.step(); ps[0].sum().item()
    assert s.count == 1 and 'test_sync.py' in s.calls[0][1], s.by_place()   # the planted read only
