"Hugging Face `transformers` ViTs (ViTForImageClassification, the MoXI seed's model family) in token mode, on tiny random configs (no download)."
import copy
import pytest, torch
from pixelperception.models.maskers import TokenMasker, PatchMasker, GroupMasker, as_classifier, HFClassifier, vit_kind, vit_grid, log_odds
from pixelperception.explain.moxi import MoXI, SelfShapley
from pixelperception.explain.cam import GradCAM, AttentionRollout, rollout
from pixelperception.evaluation.metrics import ranking_curves

tf = pytest.importorskip('transformers', reason="transformers is not installed (pip install transformers, or the dev extra): skipping the Hugging Face ViT tests")

def tiny_vit(seed=0, attn='sdpa', **kw):
    "A tiny random ViTForImageClassification: 32x32 images, 8x8 patches (16 tokens), 2 layers, hidden 32"
    torch.manual_seed(seed)
    cfg = dict(image_size=32, patch_size=8, num_hidden_layers=2, hidden_size=32, num_attention_heads=2, intermediate_size=64, num_labels=5) | kw
    return tf.ViTForImageClassification(tf.ViTConfig(**cfg, attn_implementation=attn)).eval()

def by_hand(hf, x, idx):
    "Logits of the model on the CLS token and the patch tokens idx [B,k] only, layer by layer from its own modules"
    e = hf.vit.embeddings(x)
    t = torch.cat([e[:, :1], e.gather(1, (1 + idx)[..., None].expand(-1, -1, e.shape[-1]))], 1)
    layers = hf.vit.layers if hasattr(hf.vit, 'layers') else hf.vit.encoder.layer   # transformers 5 / 4
    for layer in layers:
        t = layer(t)
        t = t[0] if isinstance(t, tuple) else t
    return hf.classifier(hf.vit.layernorm(t)[:, 0])

@pytest.fixture
def x():
    torch.manual_seed(1)
    return torch.randn(3, 3, 32, 32)

def test_recognised(x):
    hf = tiny_vit()
    assert vit_kind(hf) == 'hf' and vit_kind(as_classifier(hf)) == 'hf'
    assert vit_grid(hf, x) == (4, 4) and TokenMasker(hf).n_features(x) == 16
    assert isinstance(as_classifier(hf), HFClassifier) and as_classifier(as_classifier(hf)).hf is hf
    torch.testing.assert_close(as_classifier(hf)(x), hf(x).logits)
    with pytest.raises(ValueError, match=r"this ViT expects \(32, 32\) images"): TokenMasker(hf).n_features(torch.randn(1, 3, 48, 48))

@pytest.mark.parametrize('k', [1, 4, 15, 16])
def test_all_but_k_tokens_equal_the_model_on_those_tokens(x, k):
    hf = tiny_vit()
    torch.manual_seed(k)
    idx = torch.stack([torch.randperm(16)[:k].sort().values for _ in range(3)])   # different tokens per image
    keep = torch.zeros(3, 1, 16, dtype=torch.bool).scatter_(2, idx[:, None], True)
    with torch.no_grad():
        got = TokenMasker(hf)(hf, x, keep)[:, 0]
        want = by_hand(hf, x, idx)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(got, hf(x).logits.detach()) or k == 16        # removal changes the answer...
    if k == 16: torch.testing.assert_close(got, hf(x).logits.detach(), atol=1e-5, rtol=1e-5)   # ...except with every token

def test_mixed_coalition_sizes_in_chunks(x):
    "Rows of different lengths, split over chunks: each equals its own by-hand sequence"
    hf = tiny_vit()
    torch.manual_seed(2)
    keep = torch.rand(3, 5, 16) < 0.4
    keep[..., 0] = True
    got = TokenMasker(hf)(hf, x, keep, batch_size=4)
    with torch.no_grad():
        for b in range(3):
            for j in range(5):
                idx = keep[b, j].nonzero()[:, 0][None]
                torch.testing.assert_close(got[b, j], by_hand(hf, x[b:b + 1], idx)[0], atol=1e-5, rtol=1e-5)

def test_model_left_as_it_was(x):
    hf = tiny_vit()
    before = copy.deepcopy(hf.state_dict())
    TokenMasker(hf)(hf, x, torch.rand(3, 2, 16) < 0.5)
    assert not hf.vit.embeddings._forward_hooks and not hf._forward_hooks
    assert all(torch.equal(v, hf.state_dict()[k]) for k, v in before.items())

def test_moxi_end_to_end(x):
    "MoXI on the raw HF model: a full order, the paper's evaluation count, and a first pick checked by hand"
    hf = tiny_vit()
    mx = MoXI(hf, batch_size=64)
    assert isinstance(mx.masker, TokenMasker)
    r = mx.attribute(x)
    assert torch.equal(r.order.sort(-1).values, torch.arange(16).expand(3, -1))
    assert mx.evals_per_image == 16 * 17 / 2 + 1
    with torch.no_grad():
        y = hf(x).logits.argmax(-1)
        single = torch.stack([log_odds(by_hand(hf, x, torch.full((3, 1), i)), y) for i in range(16)], 1)   # v({i})
    assert torch.equal(r.order[:, 0], single.argmax(1))
    # the explainers' other features: curves on the raw model, pixel maskers, captum's names
    c = ranking_curves(hf, x, None, r.order, TokenMasker(hf), curve='insertion')
    assert (c.per_image[:, -1] == 1).all()                            # all tokens shown: the prediction itself
    groups = (torch.arange(32)[:, None] // 16 * 2 + torch.arange(32)[None] // 16).expand(3, 32, 32)
    assert MoXI(hf, GroupMasker()).attribute(x, groups=groups).order.shape == (3, 4)
    assert ranking_curves(hf, x, None, r.order, PatchMasker(4)).auc >= 0
    assert SelfShapley(hf).attribute(inputs=x, target=2).order.shape == (3, 16)

def test_gradcam_and_rollout(x):
    hf = tiny_vit(attn='eager')
    assert GradCAM(hf).heatmap(x).shape == (3, 4, 4)
    with torch.no_grad(): a = torch.stack(hf(x, output_attentions=True).attentions).mean(2)
    torch.testing.assert_close(AttentionRollout(hf).heatmap(x), rollout(a)[:, 0, 1:].float().view(3, 4, 4))
    with pytest.raises(ValueError, match="attn_implementation='eager'"): AttentionRollout(tiny_vit(attn='sdpa')).heatmap(x)

def test_public_api():
    import pixelperception
    assert pixelperception.as_classifier is as_classifier
