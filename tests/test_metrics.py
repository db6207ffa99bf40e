"Cross-checks of pixelperception.evaluation.metrics/report against slow, obviously-correct loops, and against the real maskers."
import json, threading
import numpy as np, pytest, torch
from pixelperception.evaluation.metrics import P2P_THRESHOLDS, PxAP, pxap, fidelity_masks, fidelity_curves, ranking_curves, mask_precision, mask_iou, auroc, aupr
from pixelperception.files import new_run_dir
from pixelperception.evaluation.report import write_report


def _pxap_loop(scores, gt, bw=1e-5):
    "PxAP from numpy histograms, walking thresholds one by one"
    edges = np.append(np.arange(0, 1, bw), [1., 2., 3.])
    pos, _ = np.histogram(scores[gt], bins=edges); neg, _ = np.histogram(scores[~gt], bins=edges)
    tp = fp = 0; prev_recall = 0.; ap = 0.
    for k in range(len(pos) - 1, -1, -1):           # thresholds high -> low
        tp += pos[k]; fp += neg[k]
        if tp + fp == 0: continue
        recall = tp / pos.sum()
        ap += tp / (tp + fp) * (recall - prev_recall); prev_recall = recall
    return ap


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_pxap_matches_loop(seed):
    g = torch.Generator().manual_seed(seed)
    s = torch.rand(4, 16, 16, generator=g)
    s = torch.where(torch.rand(4, 16, 16, generator=g) < .3, (s * 20).round() / 20, s)   # many ties on bin edges
    s[0, 0, 0], s[0, 0, 1] = 1., 0.
    m = torch.rand(4, 16, 16, generator=g) < s
    assert abs(pxap(s, m) - _pxap_loop(s.numpy(), m.numpy())) < 1e-12
    acc = PxAP()
    for b in range(4): acc.accumulate(s[b:b+1], m[b:b+1])
    assert abs(acc.value - pxap(s, m)) < 1e-12
    assert 0 <= acc.value <= 1


def _fidelity_loop(probs, groups, thresholds, insertion):
    B, G = probs.shape; H, W = groups.shape[1:]
    out = torch.zeros(B, len(thresholds), G, dtype=torch.bool)
    for b in range(B):
        order = sorted(range(G), key=lambda i: (-probs[b, i].item(), i))
        area = torch.tensor([(groups[b] == i).sum().item() for i in range(G)]).float() / (H * W)
        c = area[order].cumsum(0)
        for ti, t in enumerate(thresholds):
            t = torch.tensor(t, dtype=torch.float32)
            keep = set(range(G))
            if insertion: keep = {order[k] for k in range(G) if c[k] < t}
            else:
                first = next((k for k in range(G) if c[k] >= t), None)
                for k in range(G):
                    if c[k] < t or k == first: keep.discard(order[k])
                if first is None: keep = set()
            for i in keep: out[b, ti, i] = True
    return out


@pytest.mark.parametrize('insertion', [False, True])
def test_fidelity_masks_match_loop(insertion):
    g = torch.Generator().manual_seed(3)
    groups = torch.randint(0, 9, (5, 6, 7), generator=g)            # some ids absent from some images
    probs = (torch.rand(5, 12, generator=g) * 4).round() / 4         # padded to G=12, many ties
    got = fidelity_masks(probs, groups, P2P_THRESHOLDS, insertion=insertion)
    assert torch.equal(got, _fidelity_loop(probs, groups, P2P_THRESHOLDS, insertion))


class _Grid:
    "A minimal masker on a g x g grid (duck-typed, as the metrics expect)"
    def __init__(self, g, fill=0.): self.g, self.fill = g, fill
    def n_features(self, x, groups=None): return self.g ** 2
    def __call__(self, model, x, keep, groups=None):
        B, K, N = keep.shape; H, W = x.shape[-2:]
        m = keep.view(B, K, self.g, self.g).repeat_interleave(H // self.g, 2).repeat_interleave(W // self.g, 3)
        return model(torch.where(m[:, :, None], x[:, None], torch.tensor(self.fill)).flatten(0, 1)).view(B, K, -1)


def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(),
                               torch.nn.Linear(16, 3)).eval()


@pytest.mark.parametrize('curve', ['insertion', 'deletion'])
def test_ranking_curves_match_loop(curve):
    net, g = _net(), torch.Generator().manual_seed(4)
    x, y = torch.randn(3, 3, 8, 8, generator=g), torch.randint(0, 3, (3,), generator=g)
    orders = torch.stack([torch.randperm(16, generator=g) for _ in range(3)])
    res = ranking_curves(net, x, y, orders, _Grid(4), curve=curve, batch_size=7)
    for b in range(3):
        for k in range(1, 17):
            vis = torch.zeros(16, dtype=torch.bool); vis[orders[b, :k]] = True
            if curve == 'deletion': vis = ~vis
            m = vis.view(4, 4).repeat_interleave(2, 0).repeat_interleave(2, 1)
            pred = net(torch.where(m, x[b], torch.tensor(0.))[None]).argmax(-1).item()
            assert res.per_image[b, k - 1].item() == float(pred == y[b].item())


def test_fidelity_curves_match_loop():
    net, g = _net(), torch.Generator().manual_seed(5)
    x = torch.randn(2, 3, 8, 8, generator=g)
    groups = torch.randint(0, 6, (2, 8, 8), generator=g); probs = torch.rand(2, 6, generator=g)
    fill = torch.tensor([.1, -.2, .3])
    for insertion in (False, True):
        res = fidelity_curves(net, x, groups, probs, fill, insertion=insertion, batch_size=5)
        keep = fidelity_masks(probs, groups, insertion=insertion)
        base = net(x).argmax(-1)
        for b in range(2):
            for t, th in enumerate(P2P_THRESHOLDS):
                m = keep[b, t][groups[b]]
                pred = net(torch.where(m, x[b], fill[:, None, None])[None]).argmax(-1)
                want = 1. if (th == 0 and not insertion) else float(pred.item() == base[b].item())
                assert res.per_image[b, t].item() == want


def test_with_real_maskers():
    maskers = pytest.importorskip('pixelperception.models.maskers', reason='pixelperception.models.maskers not available yet')
    net, g = _net(), torch.Generator().manual_seed(6)
    x, y = torch.randn(2, 3, 8, 8, generator=g), torch.tensor([0, 1])
    orders = torch.stack([torch.randperm(16, generator=g) for _ in range(2)])
    ours = ranking_curves(net, x, y, orders, _Grid(4))
    theirs = ranking_curves(net, x, y, orders, maskers.PatchMasker(4))
    assert torch.equal(ours.per_image, theirs.per_image)
    groups = torch.arange(16).view(4, 4).repeat_interleave(2, 0).repeat_interleave(2, 1).expand(2, 8, 8)
    by_groups = ranking_curves(net, x, y, orders, maskers.GroupMasker(), groups=groups, curve='deletion')
    assert torch.equal(by_groups.per_image, ranking_curves(net, x, y, orders, _Grid(4), curve='deletion').per_image)


def test_classification_and_masks_agree_with_definitions():
    g = torch.Generator().manual_seed(7)
    pred, gt = torch.rand(6, 5, 5, generator=g) < .4, torch.rand(6, 5, 5, generator=g) < .4
    pred[0] = False; gt[0] = False
    for b in range(6):
        inter, n, union = (pred[b] & gt[b]).sum().item(), pred[b].sum().item(), (pred[b] | gt[b]).sum().item()
        assert mask_precision(pred, gt)[b].item() == pytest.approx(inter / n if n else 0.)
        assert mask_iou(pred, gt)[b].item() == pytest.approx(inter / union if union else 0.)
    probs, y = torch.rand(50, 3, generator=g).softmax(-1), torch.randint(0, 3, (50,), generator=g)
    assert 0 <= auroc(probs, y) <= 1 and 0 <= aupr(probs, y) <= 1


def test_new_run_dir_is_race_free(tmp_path):
    out = []
    threads = [threading.Thread(target=lambda: out.append(new_run_dir(tmp_path, 'train'))) for _ in range(16)]
    for t in threads: t.start()
    for t in threads: t.join()
    assert len(set(out)) == 16 and all(p.is_dir() for p in out)


def test_write_report_roundtrip(tmp_path):
    paths = write_report(tmp_path/'r', {'acc': torch.tensor(.5), 'nested': {'v': np.float32(.25)}})
    assert json.loads(paths['metrics'].read_text()) == {'acc': .5, 'nested': {'v': .25}}
    with pytest.raises(FileExistsError): write_report(tmp_path/'r', {'acc': 1.})
