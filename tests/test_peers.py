"""Our explainers give the answers of the peers users would pick instead (`benchmarks/bench_peers.py` times them):
Shapley values as captum's `ShapleyValueSampling`, Grad-CAM maps as pytorch-grad-cam's, deletion curves as Quantus'
pixel flipping, on a tiny model. Each test skips, saying which package is missing, where a peer is not installed."""
from conftest import bench_modules
import pytest, torch, torch.nn as nn

@pytest.fixture(scope='module')
def bench():
    with bench_modules('bench_peers') as (m,): yield m

def _peer(name, pip):
    return pytest.importorskip(name, reason=f"{name} is not installed: `pip install {pip}` to compare with it")

def _data(n=3, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=g), torch.tensor([0, 2, 1][:n])

def _cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3)).eval()

@pytest.mark.parametrize('sampler', ['coalitions', 'permutations'])
def test_shapley_as_captum_on_an_additive_model(bench, sampler):
    "A linear model's Shapley values are exact in every draw: ours, captum's and the analytic ones are the same numbers"
    captum = _peer('captum', 'captum')
    from pixelperception.explain.moxi import SampledShapley
    from pixelperception.models.maskers import PatchMasker
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 3)).eval()
    x, y = _data()
    fm = bench.patch_ids(4, 16, 16)
    ours = SampledShapley(model, PatchMasker(4), reward='logit', n_rounds=3, sampler=sampler).attribute(x, target=y).scores
    theirs = PatchMasker(4).pool(captum.attr.ShapleyValueSampling(model).attribute(x, target=y, baselines=0., feature_mask=fm, n_samples=3)[:, 0], x)
    with torch.no_grad():   # φ_i = Σ over the patch's pixels of w_y·x (baseline 0)
        contrib = (model[1].weight[y].view(-1, 3, 16, 16) * x).sum(1)
        exact = PatchMasker(4).pool(contrib, x) * 16
    torch.testing.assert_close(ours, exact, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(theirs, exact, atol=1e-4, rtol=1e-4)

def test_shapley_agrees_with_captum_up_to_noise(bench):
    "With interactions the estimates differ by sampling noise only: ours (permutations) correlates with captum's"
    _peer('captum', 'captum')
    x, y = _data()
    s, sp, _ = bench.shapley(_cnn(), x, y, 4, 64, 256, 1)
    assert sp['corr'].min() > 0.8 and s['corr'].min() > 0.6, (s['corr'], sp['corr'])
    assert sp['evals_ours'] < s['evals_ours'] / 1.9   # N-1 evaluations a round, not 2N

def test_gradcam_as_pytorch_grad_cam(bench):
    _peer('pytorch_grad_cam', 'grad-cam')
    x, y = _data()
    g = bench.gradcam(_cnn(), x, y, 1)
    assert g['maxdiff'] < 1e-5, g

def test_deletion_curve_as_quantus(bench):
    _peer('quantus', 'quantus')
    x, y = _data()
    order = torch.stack([torch.randperm(16, generator=torch.Generator().manual_seed(i)) for i in range(len(x))])
    c = bench.curves(_cnn(), x, y, order, 4, 256, 1)
    assert c['maxdiff'] < 1e-5, c

def test_deletion_check_catches_a_different_order(bench):
    "The comparison can fail: Quantus run on another order gives other logits"
    _peer('quantus', 'quantus')
    x, y = _data()
    order = torch.arange(16).expand(len(x), 16)
    c = bench.curves(_cnn(), x, y, order, 4, 256, 1, peer_order=order.flip(1))
    assert c['maxdiff'] > 1e-3, c
