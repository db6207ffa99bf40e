"Loaders on fixtures in their real on-disk formats, the real CIFAR-10 sample, and bad input"
import numpy as np, pytest, torch
from pixelperception.data.datasets import get_dls, get_eval_dl, folder_items, cifar10_items, dataset_items, SuperpixelDataset
from pixelperception.data.imagenet9 import IMAGENET9_FOLDERS
from pixelperception.data.superpixels import SuperpixelCache, slic_groups
from pixelperception.testing import make_imagefolder, make_cifar10


def _bam(root, classes=('bamboo_forest', 'bedroom'), n=3, size=40):
    for target in ('scene', 'obj'):
        base = root/'bam'/'data'/target
        make_imagefolder(base/'train', classes, n=n, size=size)
        make_imagefolder(base/'val', classes, n=n, size=size, masks=base/'val_mask')


def test_bam_layout_with_masks(tmp_path):
    _bam(tmp_path)
    dls = get_dls('bam', data_path=tmp_path, label_kind='scene', size=32, bs=4, device='cpu', n_segments=20)
    x, g, y = dls.one_batch()
    assert x.shape == (4, 3, 32, 32) and g.shape == (4, 32, 32) and dls.vocab == ['bamboo_forest', 'bedroom']
    xb, gb, yb, mb = get_eval_dl('bam', data_path=tmp_path, size=32, bs=6, device='cpu', n_segments=20).one_batch()
    assert mb.shape == (6, 32, 32) and mb.dtype == torch.bool
    # eval resize+centre-crop keeps the mask aligned: the fixture's mask is the central square
    assert mb[:, 16, 16].all() and not mb[:, 0, 0].any()


def test_cifar10_pickles(tmp_path):
    make_cifar10(tmp_path/'cifar10', n_train=8, n_test=6)
    dls = get_dls('cifar10', data_path=tmp_path, bs=8, device='cpu', n_segments=16)
    assert dls.c == 10 and len(dls.train.dataset) == 40 and len(dls.valid.dataset) == 6
    x, g, y = dls.one_batch()
    assert x.shape == (8, 3, 32, 32) and int(g.max()) < 64
    d224 = get_dls('cifar10', data_path=tmp_path, size=224, bs=2, device='cpu', n_segments=16)
    assert d224.one_batch()[0].shape == (2, 3, 224, 224)


def test_imagenet_and_folder(tmp_path):
    for split in ('train', 'val'):
        make_imagefolder(tmp_path/'imagenet'/split, ('n01440764', 'n01443537'), n=2, size=(50, 70), ext='.JPEG')
        make_imagefolder(tmp_path/split, ('x', 'y', 'z'), n=2, size=30)
    d = get_dls('imagenet', data_path=tmp_path, size=48, bs=4, device='cpu', n_segments=10)
    assert d.one_batch()[0].shape == (4, 3, 48, 48) and d.vocab == ['n01440764', 'n01443537']
    assert get_dls('folder', data_path=tmp_path, size=24, bs=2, device='cpu', n_segments=10).c == 3


def test_imagenet9_test_set_never_resized(tmp_path):
    bg = tmp_path/'imagenet9'/'backgrounds_challenge_data'/'bg_challenge'
    classes = list(IMAGENET9_FOLDERS)
    make_imagefolder(bg/'original'/'val', classes, n=1, size=224, masks=bg/'fg_mask'/'val', ext='.JPEG')
    xb, gb, yb, mb = get_eval_dl('imagenet9', data_path=tmp_path, split='test', size=224, bs=9, device='cpu', n_segments=20).one_batch()
    assert xb.shape == (9, 3, 224, 224) and mb.shape == (9, 224, 224) and yb.tolist() == list(range(9))


def test_real_cifar_sample(shared):
    it = folder_items(shared/'data'/'cifar10-sample'/'test')
    assert len(it.vocab) == 10 and len(it) == 200
    ds = SuperpixelDataset(it, size=32, policy='pad-crop', train=True, n_segments=25, sp_mode='faithful')
    x, g, y = ds[5]
    assert x.shape == (3, 32, 32) and 5 <= int(g.max()) + 1 <= 60


def test_cached_and_faithful_agree_on_eval_and_differ_in_cost(tmp_path):
    make_imagefolder(tmp_path/'f', ('a',), n=2, size=40)
    it = folder_items(tmp_path/'f')
    cache = SuperpixelCache(tmp_path/'cache', 30)
    a = SuperpixelDataset(it, size=32, policy='imagenet', n_segments=30, cache=cache)
    b = SuperpixelDataset(it, size=32, policy='imagenet', n_segments=30, sp_mode='faithful')
    for i in range(2): assert torch.equal(a[i][1], b[i][1])
    a[0]; assert cache.misses == 2 and cache.hits == 0   # the second time from memory: no file read
    c = SuperpixelDataset(it, size=32, policy='imagenet', n_segments=30, cache=cache, ram_cache_mb=0)
    c[0]; c[0]; assert cache.misses == 2 and cache.hits == 2   # without the memory cache: from the disk cache, no SLIC


@pytest.mark.parametrize('make,match', [
    (lambda p: None, 'expected an ImageFolder layout'),
    (lambda p: (p/'bam'/'data'/'obj'/'train'/'dog').mkdir(parents=True), 'holds no images'),
])
def test_bad_layouts(tmp_path, make, match):
    make(tmp_path)
    with pytest.raises((FileNotFoundError, ValueError), match=match): get_dls('bam', data_path=tmp_path, device='cpu')


def test_corrupt_image_and_mask_mismatch(tmp_path):
    make_imagefolder(tmp_path/'val', ('a',), n=2, size=32, masks=tmp_path/'m')
    (tmp_path/'val'/'a'/'0000.png').write_bytes(b'not a png')
    it = folder_items(tmp_path/'val', tmp_path/'m')
    with pytest.raises(ValueError, match='cannot read image .*0000.png'): SuperpixelDataset(it, size=32)[0]
    np.save(tmp_path/'m'/'a'/'0001.npy', np.zeros((8, 8), bool))
    with pytest.raises(ValueError, match='masks must match their images'): SuperpixelDataset(it, size=32, with_masks=True)[1]


def test_bad_values(tmp_path):
    with pytest.raises(ValueError, match='n_segments'): slic_groups(np.zeros((8, 8, 3), np.uint8), n_segments=0)
    with pytest.raises(ValueError, match='unknown dataset'): dataset_items('mnist', tmp_path)
    with pytest.raises(ValueError, match="label_kind must be"): dataset_items('bam', tmp_path, label_kind='both')
    with pytest.raises(FileNotFoundError, match='download=True'): cifar10_items(tmp_path)
    with pytest.raises(ValueError, match='color_aug'): get_dls('synthetic', data_path=tmp_path, n_train=2, n_val=1, color_aug=2.)
