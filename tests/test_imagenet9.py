"ImageNet-9 builder and test-set check: real-format fixtures (path-list pickles, an ImageNet tree, bg_challenge folders with .npy masks)"
import os, pickle, shutil
from pathlib import Path
import numpy as np, pytest
from PIL import Image
import pixelperception.data.imagenet9 as i9m
from pixelperception.data.imagenet9 import build_imagenet9, fake_imagenet9, imagenet9_test, load_bg_mask, read_imagenet9_pkl, IMAGENET9_FOLDERS, IMAGENET9_PKLS

def _files(root): return sorted(str(p.relative_to(root)) for p in Path(root).rglob('*') if p.is_file())

@pytest.fixture
def fx(tmp_path): return fake_imagenet9(tmp_path/'data')

def test_build_layout_counts_and_links(fx, tmp_path):
    res = build_imagenet9(fx['imagenet'], fx['pkl_dir'], tmp_path/'i9', progress=False)
    assert res['counts'] == {'train': {f: 3 for f in IMAGENET9_FOLDERS}, 'val': {f: 2 for f in IMAGENET9_FOLDERS}}
    assert res['linked'] + res['copied'] == 45 and res['reused'] == 0
    assert sorted(os.listdir(tmp_path/'i9'/'train')) == list(IMAGENET9_FOLDERS) == ['00_dog', '01_bird', '02_wheeled_vehicle', '03_reptile',
        '04_carnivore', '05_insect', '06_musical_instrument', '07_primate', '08_fish']
    lists = {s: read_imagenet9_pkl(fx['pkl_dir']/n) for s, n in IMAGENET9_PKLS.items()}
    for s, l in lists.items():                                 # every listed file, under its own name, in its class folder
        for folder, paths in zip(IMAGENET9_FOLDERS, l):
            for p in paths:
                d = tmp_path/'i9'/s/folder/Path(p).name
                assert d.read_bytes() == (fx['imagenet']/p).read_bytes()
                if res['linked'] == 45: assert d.stat().st_ino == (fx['imagenet']/p).stat().st_ino
    assert len(_files(tmp_path/'i9')) == 46 and 'imagenet9.json' in _files(tmp_path/'i9')   # 45 images and the completion record

def test_copy_mode_and_link_fallback(fx, tmp_path, monkeypatch):
    res = build_imagenet9(fx['imagenet'], fx['pkl_dir'], tmp_path/'cp', link=False, progress=False)
    assert (res['copied'], res['linked']) == (45, 0)
    f = tmp_path/'cp'/'train'/'00_dog'/'n02085620_0.JPEG'
    assert f.stat().st_ino != (fx['imagenet']/'train'/'n02085620'/'n02085620_0.JPEG').stat().st_ino
    def no_link(*a, **k): raise OSError(18, 'Invalid cross-device link')
    monkeypatch.setattr(i9m.os, 'link', no_link)
    res = build_imagenet9(fx['imagenet'], fx['pkl_dir'], tmp_path/'fb', link=True, progress=False)
    assert (res['copied'], res['linked']) == (45, 0)
    assert _files(tmp_path/'fb') == _files(tmp_path/'cp')

def test_seed_style_prefixed_paths(tmp_path):
    fx = fake_imagenet9(tmp_path/'d', n_train=2, n_val=1, n_test=1, prefix='imagenet/')
    assert read_imagenet9_pkl(fx['pkl_dir']/IMAGENET9_PKLS['train'])[0][0] == 'imagenet/train/n02085620/n02085620_0.JPEG'
    res = build_imagenet9(fx['imagenet'], fx['pkl_dir'], fx['pkl_dir'], progress=False)
    assert sum(res['counts']['train'].values()) == 18 and sum(res['counts']['val'].values()) == 9

def test_resume_after_interruption(fx, tmp_path, monkeypatch):
    calls = []
    orig = shutil.copy2
    def flaky(src, dst):
        if len(calls) == 10: Path(dst).write_bytes(b'half a jpeg'); raise KeyboardInterrupt  # killed mid-copy
        calls.append(src); return orig(src, dst)
    monkeypatch.setattr(i9m.shutil, 'copy2', flaky)
    with pytest.raises(KeyboardInterrupt): build_imagenet9(fx['imagenet'], fx['pkl_dir'], tmp_path/'o', link=False, progress=False)
    assert len(_files(tmp_path/'o')) == 10                      # ten complete files, no half-written one, no temp
    monkeypatch.setattr(i9m.shutil, 'copy2', orig)
    (tmp_path/'o'/'val'/'08_fish'/'.ILSVRC2012_val_00008000.JPEG.dead.tmp').parent.mkdir(parents=True)
    (tmp_path/'o'/'val'/'08_fish'/'.ILSVRC2012_val_00008000.JPEG.dead.tmp').write_bytes(b'stray')  # as after a hard kill
    (tmp_path/'o'/'train'/'00_dog'/'n02085620_1.JPEG').unlink()
    res = build_imagenet9(fx['imagenet'], fx['pkl_dir'], tmp_path/'o', link=False, progress=False)
    assert (res['copied'], res['reused'], res['removed_temps']) == (36, 9, 1)
    build_imagenet9(fx['imagenet'], fx['pkl_dir'], tmp_path/'clean', link=False, progress=False)
    assert _files(tmp_path/'o') == _files(tmp_path/'clean')
    for f in _files(tmp_path/'o'): assert (tmp_path/'o'/f).read_bytes() == (tmp_path/'clean'/f).read_bytes()
    again = build_imagenet9(fx['imagenet'], fx['pkl_dir'], tmp_path/'o', progress=False)
    assert (again['reused'], again['linked'], again['copied']) == (45, 0, 0)

def test_missing_inputs_are_clear_errors(fx, tmp_path):
    with pytest.raises(FileNotFoundError, match='ImageNet folder'): build_imagenet9(tmp_path/'nope', fx['pkl_dir'], tmp_path/'o')
    with pytest.raises(FileNotFoundError) as e: build_imagenet9(fx['imagenet'], tmp_path, tmp_path/'o')
    assert 'imagenet9_train_orig_path.pkl' in str(e.value) and 'imagenet9_val_orig_path.pkl' in str(e.value)
    (fx['pkl_dir']/IMAGENET9_PKLS['val']).rename(tmp_path/'v.pkl')
    with pytest.raises(FileNotFoundError, match=r"\['imagenet9_val_orig_path.pkl'\]"): build_imagenet9(fx['imagenet'], fx['pkl_dir'], tmp_path/'o')
    (tmp_path/'v.pkl').rename(fx['pkl_dir']/IMAGENET9_PKLS['val'])
    for p in ['train/n02085620/n02085620_2.JPEG', 'val/n01440764/ILSVRC2012_val_00008001.JPEG', 'train/n01530575/n01530575_0.JPEG']:
        (fx['imagenet']/p).unlink()
    with pytest.raises(FileNotFoundError) as e: build_imagenet9(fx['imagenet'], fx['pkl_dir'], tmp_path/'o')
    msg = str(e.value)
    assert '3 of 45 ImageNet files' in msg and 'train/n02085620/n02085620_2.JPEG' in msg and 'ILSVRC2012_val_00008001.JPEG' in msg
    assert not (tmp_path/'o').exists()                          # checked before anything is written

def test_bad_pickles(fx, tmp_path):
    for bad, what in [([['a']]*8, 'list of 9 lists'), ({'dog': []}, 'list of 9 lists'), ([[1]]*9, 'list of 9 lists')]:
        with open(fx['pkl_dir']/IMAGENET9_PKLS['train'], 'wb') as f: pickle.dump(bad, f)
        with pytest.raises(ValueError, match=what): build_imagenet9(fx['imagenet'], fx['pkl_dir'], tmp_path/'o')
    lists = [[f'train/n02085620/n02085620_0.JPEG']] + [[]]*8
    lists[1] = ['train/n02085620/n02085620_0.JPEG']            # the same file in two classes is fine ...
    lists[0] = lists[0] + ['train/n02085620/n02085620_0.JPEG']  # ... listed twice is built once
    with open(fx['pkl_dir']/IMAGENET9_PKLS['train'], 'wb') as f: pickle.dump(lists, f)
    res = build_imagenet9(fx['imagenet'], fx['pkl_dir'], tmp_path/'o', progress=False)
    assert res['counts']['train']['00_dog'] == 1 and res['counts']['train']['01_bird'] == 1
    (fx['imagenet']/'val'/'other').mkdir()
    shutil.copy(fx['imagenet']/'train'/'n02085620'/'n02085620_0.JPEG', fx['imagenet']/'val'/'other'/'n02085620_0.JPEG')
    lists[0] = ['train/n02085620/n02085620_0.JPEG', 'val/other/n02085620_0.JPEG']  # two files, one name
    with open(fx['pkl_dir']/IMAGENET9_PKLS['train'], 'wb') as f: pickle.dump(lists, f)
    with pytest.raises(ValueError, match='would both become train/00_dog/n02085620_0.JPEG'): build_imagenet9(fx['imagenet'], fx['pkl_dir'], tmp_path/'o2')

# --- test set ---------------------------------------------------------------------------------------------------------

def test_test_set_paths_and_masks(fx):
    ts = imagenet9_test(fx['pkl_dir'])
    assert ts['classes'] == list(IMAGENET9_FOLDERS)
    assert len(ts['images']) == len(ts['masks']) == len(ts['labels']) == 18
    assert ts['labels'] == sorted(ts['labels']) and set(ts['labels']) == set(range(9))
    for im, m, y in zip(ts['images'], ts['masks'], ts['labels']):
        assert im.parent.name == m.parent.name == IMAGENET9_FOLDERS[y] and im.stem == m.stem
        assert 'original' in im.parts and 'fg_mask' in m.parts
        assert Image.open(im).size == (224, 224)
        mk = load_bg_mask(m); assert mk.shape == (224, 224) and mk.dtype == bool and 0 < mk.mean() < 1
    bg = fx['pkl_dir']/'backgrounds_challenge_data'
    assert imagenet9_test(bg)['images'] == ts['images'] == imagenet9_test(bg/'bg_challenge')['images']

def test_test_set_pairs_by_sorted_position(fx):
    d = fx['pkl_dir']/'backgrounds_challenge_data'/'bg_challenge'/'fg_mask'/'val'/'03_reptile'
    a, b = sorted(d.glob('*.npy'))
    ma, mb = np.load(a), np.load(b)
    a.rename(d/'x_first.npy'); b.rename(d/'y_second.npy')       # names differ from the images: order decides
    ts = imagenet9_test(fx['pkl_dir'])
    ms = [m for m, y in zip(ts['masks'], ts['labels']) if y == 3]
    assert [m.name for m in ms] == ['x_first.npy', 'y_second.npy']
    assert (load_bg_mask(ms[0]) == ma).all() and (load_bg_mask(ms[1]) == mb).all()

def test_test_set_errors(fx, tmp_path):
    root = fx['pkl_dir']
    bg = root/'backgrounds_challenge_data'/'bg_challenge'
    with pytest.raises(FileNotFoundError, match='backgrounds_challenge_data/bg_challenge/original/val'): imagenet9_test(tmp_path)
    m = bg/'fg_mask'/'val'/'05_insect'/'n02165456_1.npy'
    m.rename(tmp_path/'m.npy')
    with pytest.raises(ValueError, match='05_insect: 2 images .* but 1 masks'): imagenet9_test(root)
    (tmp_path/'m.npy').rename(m)
    np.save(m, np.zeros((256, 256), bool))                     # a mask of the wrong size
    with pytest.raises(ValueError, match='n02165456_1.npy 256x256'): imagenet9_test(root)
    with pytest.raises(ValueError, match='of equal size'): imagenet9_test(root, size=None)
    np.save(m, np.zeros((3, 224, 224), np.uint8))              # channel-first masks are accepted
    assert load_bg_mask(m).shape == (224, 224) and len(imagenet9_test(root)['masks']) == 18
    im = bg/'original'/'val'/'07_primate'/'n02480495_0.JPEG'
    Image.new('RGB', (112, 112)).save(im)                      # a resized image: both sizes checked
    with pytest.raises(ValueError, match='never resized'): imagenet9_test(root)
    np.save(bg/'fg_mask'/'val'/'07_primate'/'n02480495_0.npy', np.zeros((112, 112), bool))
    assert len(imagenet9_test(root, size=None)['images']) == 18  # size=None: only agreement is required
    shutil.rmtree(bg/'fg_mask'/'val'/'08_fish')
    with pytest.raises(ValueError, match='exactly the class folders'): imagenet9_test(root, size=None)
    (bg/'fg_mask'/'val'/'08_fish').mkdir()
    with pytest.raises(ValueError, match='08_fish: 2 images'): imagenet9_test(root, size=None)
    (bg/'original'/'val'/'09_extra').mkdir()
    with pytest.raises(ValueError, match='09_extra'): imagenet9_test(root, size=None)
