"The choices of benchmarks/bench_imagenette_moxi.py that its numbers rest on: balanced images, the paper's operating points, black patches."
from conftest import bench_modules
import pytest, torch

@pytest.fixture(scope='module')
def bench():
    with bench_modules('bench_imagenette_moxi') as (m,): yield m

def _folder(tmp_path, counts):
    for c, n in counts.items():
        (tmp_path/c).mkdir()
        for i in range(n): (tmp_path/c/f'{c}_{i:03d}.JPEG').write_bytes(b'')
    return tmp_path

def test_pick_files_balanced_and_deterministic(bench, tmp_path):
    val = _folder(tmp_path, {'n2': 5, 'n1': 5, 'n3': 1})
    picks, classes = bench.pick_files(val, 7)
    assert classes == ['n1', 'n2', 'n3']
    assert [c for _, c in picks] == [0, 1, 2, 0, 1, 0, 1]          # class by class; a short class runs out, the others go on
    assert [f.name for f, _ in picks][:3] == ['n1_000.JPEG', 'n2_000.JPEG', 'n3_000.JPEG']
    assert bench.pick_files(val, 7) == (picks, classes)

def test_pick_files_too_many(bench, tmp_path, capsys):
    with pytest.raises(SystemExit) as e: bench.pick_files(_folder(tmp_path, {'n1': 2}), 3)
    assert e.value.code == 2 and '--n-images 3' in capsys.readouterr().err

def test_operating_points(bench):
    ks = bench.steps_for(196, 21)
    assert round(bench.INS_SHARE * 196) == 8 and round(bench.DEL_SHARE * 196) == 20   # the paper's 4 % shown, 10 % removed
    assert {0, 8, 20, 196} <= set(ks) and ks == sorted(set(ks))

def test_hidden_patches_black(bench):
    from pixelperception.models.zoo import normalization
    mean, std = normalization('efficientnet_lite0')
    m = bench.patch_masker(7, mean, std)
    x = (torch.rand(1, 3, 224, 224) - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
    keep = torch.zeros(1, 1, 49, dtype=torch.bool); keep[0, 0, 0] = True          # only the top-left patch shown
    seen = []
    m(lambda xb: seen.append(xb) or torch.zeros(len(xb), 2), x, keep)
    pixels = seen[0][0] * torch.tensor(std)[:, None, None] + torch.tensor(mean)[:, None, None]
    assert torch.allclose(pixels[:, 32:, 32:], torch.zeros(3, 192, 192), atol=1e-6)   # hidden: black, not the mean colour
    assert torch.allclose(seen[0][0, :, :32, :32], x[0, :, :32, :32])
