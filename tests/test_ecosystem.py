"Our explainers against the libraries users already use (captum, timm, Quantus), the public API, progress bars and `pxp explain`'s honesty."
import json, os, subprocess, sys
from pathlib import Path
import numpy as np, pytest, torch, torch.nn as nn, torch.nn.functional as F
import timm
from pixelperception.explain.moxi import MoXI, SelfShapley, scores_to_order
from pixelperception.models.maskers import PatchMasker
from pixelperception.explain.cam import AttentionRollout, attention_maps

def linear_model(seed=0, pixels=3 * 16 * 16, n_classes=5):
    "A linear classifier over pixels: additive over any grouping of the pixels"
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(pixels, n_classes)).eval()

def patch_ids(grid=4, size=16):
    "captum-style feature mask [1,1,H,W]: the id of the grid patch of each pixel"
    s = size // grid
    return torch.arange(grid * grid).view(grid, grid).repeat_interleave(s, 0).repeat_interleave(s, 1)[None, None]

# ---------- captum ----------
@pytest.mark.parametrize('baseline', ['zero', 'image'])
def test_feature_ablation_is_self_shapley_deletion(baseline):
    attr = pytest.importorskip('captum.attr', reason="captum is not installed (pip install captum, or the dev extra): skipping the captum cross-check")
    model, fm = linear_model(), patch_ids()
    torch.manual_seed(1)
    x, t = torch.randn(3, 3, 16, 16), torch.tensor([0, 3, 4])
    base = 0. if baseline == 'zero' else torch.randn(1, 3, 16, 16)
    fa = attr.FeatureAblation(model).attribute(x, target=t, baselines=base, feature_mask=fm)   # [B,3,H,W]: v(N) - v(N minus i)
    fa_feat = fa[:, 0, ::4, ::4].flatten(1)
    r = SelfShapley(model, reward='logit').attribute(inputs=x, target=t, baselines=base, feature_mask=fm, curve='deletion')
    full = model(x).gather(1, t[:, None]).detach()
    assert not torch.equal(r.order, torch.arange(16).expand(3, 16))    # a real order, not the tie-break
    torch.testing.assert_close(r.order, scores_to_order(fa_feat))       # the same order, exactly
    torch.testing.assert_close(full - r.scores, fa_feat, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(full[..., None, None] - r.to_attribution(fm, values='scores'), fa[:, :1], atol=1e-4, rtol=1e-4)
    # the grid masker with the same fill: the same ranking
    same = SelfShapley(model, PatchMasker(4, fill=base), reward='logit').attribute(x, target=t, curve='deletion')
    torch.testing.assert_close(same.order, r.order)

def test_feature_ablation_with_any_ids():
    attr = pytest.importorskip('captum.attr', reason="captum is not installed (pip install captum, or the dev extra): skipping the captum cross-check")
    model = linear_model(2)
    x = torch.randn(2, 3, 16, 16)
    fm = (torch.arange(16) // 4 * 2).expand(16, 16)[None, None]         # 4 stripes with ids 0, 2, 4, 6 (gaps allowed)
    fa = attr.FeatureAblation(model).attribute(x, target=1, feature_mask=fm)
    r = SelfShapley(model, reward='logit').attribute(inputs=x, target=1, feature_mask=fm, curve='deletion')
    assert r.order.shape == (2, 7)                                       # ids 0..6: the order names the user's ids
    full = model(x)[:, 1].detach()[:, None, None, None]
    torch.testing.assert_close(full - r.to_attribution(fm, values='scores'), fa[:, :1], atol=1e-4, rtol=1e-4)

# ---------- timm ----------
def tiny_vit():
    torch.manual_seed(0)
    vit = timm.create_model('vit_tiny_patch16_224', pretrained=False, img_size=32, patch_size=8, depth=3, num_classes=5).eval()
    for b in vit.blocks: b.attn.fused_attn = False   # timm then computes the softmax itself (and hooks see it)
    return vit

def test_attention_maps_match_timm():
    from timm.utils import AttentionExtract
    vit, x = tiny_vit(), torch.randn(2, 3, 32, 32)
    with torch.no_grad(): theirs = AttentionExtract(vit, method='hook')(x)   # {block.attn.attn_drop: [B,heads,L,L]}
    assert len(theirs) == 3
    timm_maps = torch.stack([a.mean(1) for a in theirs.values()])       # head-averaged, [layers,B,L,L]
    torch.testing.assert_close(attention_maps(vit, x), timm_maps, atol=1e-5, rtol=1e-5)
    # rollout of timm's own maps, written out here, equals our AttentionRollout's map
    R = None
    for a in timm_maps.double():
        a = a + torch.eye(a.shape[-1], dtype=a.dtype)
        a = a / a.sum(-1, keepdim=True)
        R = a if R is None else a @ R
    ref = R[:, 0, 1:].float().view(2, 4, 4)
    torch.testing.assert_close(AttentionRollout(vit).heatmap(x), ref, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(ref, ref.mean())                           # not a flat map

# ---------- Quantus ----------
class PatchLinear(nn.Module):
    "Logits [0, b + sum_i w_i * mean of patch i] on a 4x4 grid of patches"
    def __init__(self, w, b=0.): super().__init__(); self.w, self.b = nn.Parameter(w), b
    def forward(self, x):
        z = F.adaptive_avg_pool2d(x.mean(1, keepdim=True), 4).flatten(1) @ self.w + self.b
        return torch.stack([torch.zeros_like(z), z], 1)

def test_quantus_metric_end_to_end():
    quantus = pytest.importorskip('quantus', reason="Quantus is not installed (pip install quantus, or the dev extra): skipping the Quantus check")
    from pixelperception import quantus_explain_func
    model = PatchLinear(torch.arange(16.), b=-120.)
    x = np.random.default_rng(0).uniform(.9, 1.1, (3, 3, 16, 16)).astype(np.float32)
    y = np.ones(3, dtype=np.int64)
    def auc(method, **kw):   # the mean of the evenly spaced curves (Quantus 0.6's own AUC calls np.trapz, gone in numpy 2.4)
        metric = quantus.PixelFlipping(features_in_step=32, disable_warnings=True)
        curves = np.array(metric(model=model, x_batch=x, y_batch=y, explain_func=quantus_explain_func, device='cpu',
                                 explain_func_kwargs=dict(method=method, grid=4, **kw)))
        assert curves.shape == (3, 24)   # 768 values (3 channels x 16 x 16), 32 per step
        return curves.mean()
    moxi, rnd = auc('moxi', reward='logit'), auc('random')
    assert moxi < rnd, (moxi, rnd)   # removing MoXI's patches first drops the probability faster than a random order
    # the map Quantus gets: numpy [B,1,H,W], the best patch first
    a = quantus_explain_func(model, x, y, method='moxi', grid=4)
    assert isinstance(a, np.ndarray) and a.shape == (3, 1, 16, 16) and (a[:, 0, 12:, 12:] == 1).all()

# ---------- progress ----------
def test_progress_bar_is_labelled(capsys, monkeypatch):
    import fastprogress.fastprogress as fp
    model = PatchLinear(torch.arange(16.))
    x = torch.rand(2, 3, 16, 16)
    MoXI(model, PatchMasker(4)).attribute(x, show_progress=False)
    assert capsys.readouterr().out == ''
    monkeypatch.setattr(fp, 'printing', lambda: True)   # the console bar prints only to terminals
    r = MoXI(model, PatchMasker(4)).attribute(inputs=x, show_progress=True)
    out = capsys.readouterr().out
    assert 'MoXI: 2 images' in out and '16/16' in out, out
    SelfShapley(model, PatchMasker(4)).attribute(x[:1], show_progress=True)
    assert 'SelfShapley: 1 image' in capsys.readouterr().out
    assert torch.equal(r.order, MoXI(model, PatchMasker(4)).attribute(x).order)

# ---------- the package ----------
def test_public_api_is_lazy_and_complete():
    code = "import sys, pixelperception as p; print('torch' in sys.modules, 'fastai' in sys.modules, len(p.__all__))"
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout.split()
    assert out[:2] == ['False', 'False'] and int(out[2]) > 20   # names load their module on first use
    import importlib, pixelperception
    for name in pixelperception.__all__:
        obj = getattr(pixelperception, name)
        assert obj is getattr(importlib.import_module(f'pixelperception.{pixelperception._WHERE[name]}'), name), name
    with pytest.raises(AttributeError, match="no attribute 'MoXl'"): pixelperception.MoXl

def test_submodules_stay_modules():
    "`pixelperception.p2p.train` is the module (the function is `pixelperception.p2p.train.train`), also after the public names load"
    code = ("from pixelperception import MoXI, P2P, PatchMasker, GroupMasker, SelfShapley, SampledShapley, load_run, create_classifier\n"
            "import pixelperception.p2p.train as T, pixelperception.p2p.runs as R, types\n"
            "print(isinstance(T, types.ModuleType) and callable(T.train) and R.load_run is load_run)")   # load_run lives in p2p.runs (train no longer re-exports it)
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ['True']

# ---------- pxp explain ----------
def pxp(*args):
    return subprocess.run([sys.executable, '-m', 'pixelperception.cli', *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, 'MPLBACKEND': 'Agg'})

def test_explain_warns_about_random_weights_and_takes_mean_std(tmp_path):
    from PIL import Image
    from pixelperception.models.cifar_resnet import resnet20
    rng = np.random.default_rng(0)
    for c in ('a', 'b'):
        (tmp_path/'data'/c).mkdir(parents=True)
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(tmp_path/'data'/c/'0.png')
    args = ('explain', tmp_path/'data', '--methods', 'random', '--n-images', 2, '--grid', 4, '--top-k', 1, '--no-figures', '--experiment', tmp_path/'runs')
    r = pxp(*args, '--mean', '0.5,0.5,0.5', '--std', '0.25')
    assert r.returncode == 0, r.stderr
    assert 'pxp: warning: no weights given: this explains a randomly initialised resnet20' in r.stderr and '--model-path FILE' in r.stderr
    assert 'UserWarning' not in r.stderr   # one plain line, not Python's warning with a source line
    run = Path(r.stdout.strip().splitlines()[-1].split('results: ')[1])
    s = json.loads((run/'metrics.json').read_text())['settings']
    assert s['mean'] == [.5] * 3 and s['std'] == [.25] * 3
    torch.save(resnet20(2).state_dict(), tmp_path/'w.th')
    r = pxp(*args, '--model-path', tmp_path/'w.th')
    assert r.returncode == 0 and 'randomly initialised' not in r.stderr, r.stderr
    s = json.loads((Path(r.stdout.strip().splitlines()[-1].split('results: ')[1])/'metrics.json').read_text())['settings']
    assert s['mean'] == [0.485, 0.456, 0.406]   # the model's (the zoo's resnet20: ImageNet statistics)
    r = pxp(*args, '--mean', '1,2')
    assert r.returncode == 2 and 'mean must be 3 comma-separated numbers' in r.stderr
