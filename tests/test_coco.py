"COCO-10 builder: real-format fixtures (COCO JSON with polygon / RLE / crowd segmentations + JPEGs) and the real coco-tiny slice"
import json, shutil, warnings
from pathlib import Path
import numpy as np, pytest
from PIL import Image
import pixelperception.data.coco as cc
from pixelperception.data.coco import build_coco10, class_images, derive_classes, fake_coco, find_coco, PAPER_CLASSES, _crafted_ann
from pixelperception.files import remove_temps

SHARED = Path(__file__).parents[1]/'..'/'shared'
TINY = SHARED/'data'/'coco-tiny'
KW = dict(per_class=4, n_train=2, size=32, progress=False)

def _build(src, out, **kw):
    "build_coco10 with the class-shortage warning silenced (tested separately)"
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return build_coco10(src, out, **{**KW, **kw})

def _tree(root):
    "{relative path: bytes} of every file under root"
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(Path(root).rglob('*')) if p.is_file() and p.name != 'coco10.json'}

def _painted(img): return (img[..., 0] > 200) & (img[..., 1] < 60)  # fake_coco paints the (first) object pure red
def _iou(a, b): return (a & b).sum() / (a | b).sum()

@pytest.fixture(scope='module')
def src(tmp_path_factory): return fake_coco(tmp_path_factory.mktemp('coco'))

# --- finding the source ---------------------------------------------------------------------------------------------

def test_find_coco_both_layouts(tmp_path):
    a, b = fake_coco(tmp_path/'a'), fake_coco(tmp_path/'b', layout='top')
    assert find_coco(a)[1] == a/'images'/'train2017'
    assert find_coco(b)[1] == b/'train2017'
    assert find_coco(b, img_dir=b/'train2017')[1] == b/'train2017'
    shutil.rmtree(b/'train2017')
    with pytest.raises(FileNotFoundError) as e: find_coco(b)
    assert 'images/train2017' in str(e.value) and 'coco/train2017' in str(e.value)
    with pytest.raises(FileNotFoundError, match='instances_train2017.json'): find_coco(tmp_path)
    with pytest.raises(FileNotFoundError, match='does not exist'): find_coco(tmp_path/'nope')
    with pytest.raises(FileNotFoundError, match='img_dir'): find_coco(a, img_dir='elsewhere')

def test_fixture_has_all_segmentation_kinds(src):
    anns = json.loads((src/'annotations'/'instances_train2017.json').read_text())['annotations']
    kinds = {('poly' if isinstance(a['segmentation'], list) else 'crowd' if isinstance(a['segmentation']['counts'], list) else 'rle')
             for a in anns}
    assert kinds == {'poly', 'rle', 'crowd'}
    assert all(a['iscrowd'] == (isinstance(a['segmentation'], dict) and isinstance(a['segmentation']['counts'], list)) for a in anns)

# --- class membership and the derivation rule --------------------------------------------------------------------------

def test_class_images_rule(src):
    bc = class_images(src/'annotations'/'instances_train2017.json', list(PAPER_CLASSES))
    assert {c: len(v) for c, v in bc.items()} == dict(bed=3, car=4, cat=4, clock=3, dog=4, person=3, sink=3, train=3, tv=3, vase=3)
    assert 33 in bc['car']                      # car + banana: banana is not one of the ten
    assert not any(31 in v or 32 in v for v in bc.values())  # cat+dog, person+car: excluded
    assert all(v == sorted(v) for v in bc.values())
    assert class_images(src/'annotations'/'instances_train2017.json', ['cat', 'banana'])['cat'] == [7, 8, 9, 31, 36]  # with other classes the rule changes

def test_derive_classes_known_answer(tmp_path):
    shows = [['a'], ['a'], ['a', 'b'], ['b'], ['c'], ['c', 'd'], ['d'], ['e'], ['a', 'e'], ['f'], ['b', 'c'], ['f']]
    ann = _crafted_ann(shows, [(5, 'a'), (2, 'b'), (9, 'c'), (1, 'e'), (7, 'd'), (3, 'f')])
    f = tmp_path/'ann.json'; f.write_text(json.dumps(ann))
    assert derive_classes(f, n_top=5, n_keep=3, swaps={'b': 'z'}) == ['a', 'c', 'z']   # from a file on disk
    assert derive_classes(ann, n_top=5, n_keep=3, swaps={}) == ['a', 'b', 'c']
    assert derive_classes(ann, n_top=5, n_keep=4, swaps={}) == ['a', 'b', 'c', 'e']    # tie b,c,e,d -> drop the last (d)
    assert derive_classes(ann, n_top=5, n_keep=3, swaps={'b': 'a'}) == ['a', 'b', 'c']  # swap target already present
    # ranking tie at the cut (e, d, f all 2 images) keeps file order: reorder the file so f comes before e and d
    ann2 = _crafted_ann(shows, [(5, 'a'), (2, 'b'), (9, 'c'), (3, 'f'), (1, 'e'), (7, 'd')])
    assert derive_classes(ann2, n_top=5, n_keep=5, swaps={}) == ['a', 'b', 'c', 'e', 'f']

def test_derive_classes_default_swaps():
    # top-3 by count: dining table (4), bowl (3), cat (3); dropping none: the seed's swaps turn table->vase, bowl->bed
    shows = [['dining table']]*4 + [['bowl']]*3 + [['cat']]*3 + [['dog']]
    ann = _crafted_ann(shows, [(1, 'cat'), (2, 'dog'), (3, 'dining table'), (4, 'bowl'), (5, 'vase'), (6, 'bed')])
    assert derive_classes(ann, n_top=3, n_keep=3) == ['bed', 'cat', 'vase']
    # 30 -> 10 with 12 categories: the two with fewest unique images go
    names = [f'k{i:02d}' for i in range(12)]
    shows = [[n] for i, n in enumerate(names) for _ in range(20 - i)] + [['k00', 'k01']]*50
    ann = _crafted_ann(shows, list(enumerate(names, 1)))
    assert derive_classes(ann) == names[:10]

# --- building ------------------------------------------------------------------------------------------------------------

def test_build_counts_layout_and_masks(src, tmp_path):
    with warnings.catch_warnings(record=True) as ws:
        warnings.simplefilter('always')
        res = build_coco10(src, tmp_path/'out', **KW)
    msgs = [str(w.message) for w in ws if issubclass(w.category, UserWarning)]
    assert len(msgs) == 1 and 'the source ran out for 9 of 10 classes: asked 2 train + 2 val' in msgs[0] and 'cat 2 + 1' in msgs[0]
    assert res['total'] == dict(images=33, train=20, val=11, skipped=2, missing=0, unreadable=0)
    assert res['counts']['cat'] == dict(images=4, train=2, val=1, skipped=1, missing=0, unreadable=0)  # full-frame cat > 95 %
    assert res['counts']['dog']['skipped'] == 1                                                        # tiny dog < 5 %
    out = tmp_path/'out'
    assert sorted(p.name for p in (out/'train').iterdir()) == list(PAPER_CLASSES)
    ann = json.loads((src/'annotations'/'instances_train2017.json').read_text())
    sizes = {Path(r['file_name']).stem: (r['width'], r['height']) for r in ann['images']}
    for split in ('train', 'val'):
        for f in (out/split).rglob('*.png'):
            m = np.load(out/'mask'/split/f.parent.name/f'{f.stem}.npy')
            img = np.asarray(Image.open(f))
            assert img.ndim == 3 and img.shape[2] == 3 and m.dtype == bool
            assert m.shape == img.shape[:2] == ((sizes[f.stem][1], sizes[f.stem][0]) if split == 'train' else (32, 32))
            assert _iou(m, _painted(img)) > (0.9 if split == 'train' else 0.8), f  # polygon, RLE and crowd RLE all decoded
            if split == 'val': assert 0.05 <= m.mean() <= 0.95
    assert len(list((out/'mask'/'train').rglob('*.npy'))) == 20 and len(list((out/'mask'/'val').rglob('*.npy'))) == 11
    assert json.loads((out/'coco10.json').read_text())['report']['total'] == res['total']

def test_val_crop_is_resize_then_center_crop(tmp_path):
    # a 100x50 image whose left and right quarters are outside the crop: Resize(size*256/224) then CenterCrop(size)
    src = fake_coco(tmp_path/'c', images=[(100, 50, [('car', (0.0, 0.0, 0.2, 1.0), 'poly')]), (100, 50, [('car', (0.3, 0.2, 0.7, 0.8), 'poly')]),
                                          (100, 50, [('dog', (0.3, 0.2, 0.7, 0.8), 'rle')])])
    res = _build(src, tmp_path/'o', classes='car,dog', per_class=2, n_train=0, size=28)
    assert res['counts']['car'] == dict(images=2, train=0, val=1, skipped=1, missing=0, unreadable=0)  # left strip cropped away
    m = np.load(tmp_path/'o'/'mask'/'val'/'car'/'000000000002.npy')
    # resize 50 -> 32 (round(28*256/224)), width 100 -> 64; object x in [19.2, 44.8), y in [6.4, 25.6); crop offsets (18, 2)
    exp = np.zeros((28, 28), bool); exp[4:24, 1:27] = True
    assert m.shape == (28, 28) and _iou(m, exp) > 0.85

def test_merged_instances_and_greyscale(tmp_path):
    src = fake_coco(tmp_path/'c', images=[(60, 40, [('car', (0.1, 0.1, 0.3, 0.3), 'poly'), ('car', (0.6, 0.5, 0.9, 0.9), 'rle'),
                                                      ('banana', (0.4, 0.0, 0.5, 0.2), 'poly')]),
                                          (60, 40, [('dog', (0.2, 0.2, 0.6, 0.6), 'poly')])])
    im = src/'images'/'train2017'/'000000000002.jpg'
    Image.open(im).convert('L').save(im)                        # COCO has some greyscale JPEGs
    res = _build(src, tmp_path/'o', classes='car,dog', per_class=1, n_train=1)
    assert res['total']['train'] == 2
    m = np.load(tmp_path/'o'/'mask'/'train'/'car'/'000000000001.npy')
    exp = np.zeros((40, 60), bool); exp[4:12, 6:18] = True; exp[20:36, 36:54] = True  # both cars, not the banana
    assert _iou(m, exp) > 0.9 and not m[0:8, 24:30].any()
    assert Image.open(tmp_path/'o'/'train'/'dog'/'000000000002.png').mode == 'RGB'

def test_missing_corrupt_truncated_and_wrong_size_are_reported(tmp_path):
    src = fake_coco(tmp_path/'c')
    ims = sorted((src/'images'/'train2017').iterdir())
    ims[0].unlink()                                             # bed 1: missing
    ims[3].write_bytes(b'not a jpeg')                           # car 1: corrupt
    ims[6].write_bytes(ims[6].read_bytes()[:300])               # cat 1: truncated
    Image.new('RGB', (10, 10)).save(ims[9])                     # clock 1: wrong size
    with warnings.catch_warnings(record=True) as ws:
        warnings.simplefilter('always')
        res = build_coco10(src, tmp_path/'o', **KW)
    assert res['total']['missing'] == 1 and res['total']['unreadable'] == 3
    assert [p['cls'] for p in res['problems']] == ['bed', 'car', 'cat', 'clock']
    assert 'differs from the annotation' in res['problems'][3]['reason']
    assert res['counts']['bed'] == dict(images=3, train=1, val=1, skipped=0, missing=1, unreadable=0)  # train by position: the gap stays
    msg = [str(w.message) for w in ws if 'missing and' in str(w.message)]
    assert len(msg) == 1 and '1 missing and 3 unreadable' in msg[0] and str(ims[0]) in msg[0]
    assert not (tmp_path/'o'/'train'/'bed'/f'{ims[0].stem}.png').exists()
    assert not list((tmp_path/'o').rglob('*.tmp'))
    report = json.loads((tmp_path/'o'/'coco10.json').read_text())['report']
    assert len(report['problems']) == 4

def test_resume_after_deletions_and_stray_temp(src, tmp_path):
    clean = _build(src, tmp_path/'clean')
    out = tmp_path/'o'; _build(src, out)
    gone = [sorted((out/'train'/'car').glob('*.png'))[0], sorted((out/'mask'/'val'/'tv').glob('*.npy'))[0]]
    for g in gone: g.unlink()
    (out/'val'/'tv'/'.000000000099.png.abcd.tmp').write_bytes(b'half a png')
    res = _build(src, out)
    assert (res['written'], res['reused'], res['removed_temps']) == (2, 29, 1)
    assert res['total'] == clean['total']
    assert _tree(out) == _tree(tmp_path/'clean')                # byte-identical to an uninterrupted build

def test_interrupted_build_leaves_no_partial_file(src, tmp_path, monkeypatch):
    orig, calls = cc._save_png, []
    def half(t): Path(t).write_bytes(b'\x89PNG half'); raise KeyboardInterrupt
    def flaky(f, img):
        if len(calls) == 7: cc.atomic_write(f, half)           # Ctrl-C in the middle of writing the 8th image
        calls.append(f); orig(f, img)
    monkeypatch.setattr(cc, '_save_png', flaky)
    with pytest.raises(KeyboardInterrupt): _build(src, tmp_path/'o')
    monkeypatch.setattr(cc, '_save_png', orig)
    pngs = list((tmp_path/'o').rglob('*.png'))
    assert len(pngs) == 7 and not list((tmp_path/'o').rglob('*.tmp'))
    assert all(Image.open(p).verify() is None for p in pngs)
    res = _build(src, tmp_path/'o')
    assert res['reused'] == 7 and res['written'] == 24            # 7 items done (image and mask), the rest written
    _build(src, tmp_path/'clean')
    assert _tree(tmp_path/'o') == _tree(tmp_path/'clean')

def test_atomic_write_cleans_up_on_error(tmp_path):
    def boom(t): Path(t).write_bytes(b'half'); raise OSError('disk full')
    with pytest.raises(OSError, match='disk full'): cc.atomic_write(tmp_path/'x.png', boom)
    assert list(tmp_path.iterdir()) == []
    (tmp_path/'d').mkdir(); (tmp_path/'d'/'.a.png.1.tmp').write_bytes(b''); (tmp_path/'d'/'keep.png').write_bytes(b'')
    assert remove_temps(tmp_path) == 1 and [p.name for p in (tmp_path/'d').iterdir()] == ['keep.png']

def test_settings_guard_and_bad_arguments(src, tmp_path):
    _build(src, tmp_path/'o')
    with pytest.raises(ValueError, match='other settings'): _build(src, tmp_path/'o', size=48)
    (tmp_path/'busy').mkdir(); (tmp_path/'busy'/'thesis.tex').write_text('x')
    with pytest.raises(ValueError, match='no coco10.json'): _build(src, tmp_path/'busy')
    with pytest.raises(ValueError, match='n_train <= per_class'): _build(src, tmp_path/'x', n_train=5)
    with pytest.raises(ValueError, match='min_area < max_area'): _build(src, tmp_path/'x', min_area=0.9, max_area=0.1)
    with pytest.raises(ValueError, match='size must be'): _build(src, tmp_path/'x', size=0)
    with pytest.raises(ValueError, match=r"\['unicorn'\]"): _build(src, tmp_path/'x', classes='bed,unicorn')
    with pytest.raises(ValueError, match='at least two distinct'): _build(src, tmp_path/'x', classes='bed')
    assert not (tmp_path/'x').exists()

def test_val_drawn_until_full_or_reported(tmp_path):
    car = lambda box, kind='poly': (48, 40, [('car', box, kind)])
    boxes = [(0.2, 0.2, 0.8, 0.8), (0.1, 0.1, 0.7, 0.9), (0.45, 0.45, 0.5, 0.5), (0, 0, 1, 1), (0.3, 0.2, 0.7, 0.8), (0.2, 0.3, 0.6, 0.9)]
    src = fake_coco(tmp_path/'c', images=[car(b) for b in boxes] + [(48, 40, [('dog', (0.2, 0.2, 0.8, 0.8), 'rle')])] * 3)
    ims = sorted((src/'images'/'train2017').iterdir())
    ims[4].write_bytes(b'not a jpeg')                          # car 5: unreadable, drawn past too
    with warnings.catch_warnings(record=True) as ws:
        warnings.simplefilter('always')
        res = build_coco10(src, tmp_path/'o', classes='car,dog', per_class=3, n_train=2, size=32, progress=False)
    assert res['counts']['car'] == dict(images=6, train=2, val=1, skipped=2, missing=0, unreadable=1)   # tiny, full-frame, corrupt, then car 6
    assert [p.name for p in (tmp_path/'o'/'val'/'car').iterdir()] == [ims[5].with_suffix('.png').name]
    assert res['counts']['dog'] == dict(images=3, train=2, val=1, skipped=0, missing=0, unreadable=0)
    assert not [w for w in ws if 'ran out' in str(w.message)]    # both classes full: no shortage warning
    with pytest.warns(UserWarning, match=r"ran out for 2 of 2 classes: asked 2 train \+ 3 val .*found car 2 \+ 1, dog 2 \+ 1"):
        build_coco10(src, tmp_path/'o4', classes='car,dog', per_class=5, n_train=2, size=32, progress=False)


def test_empty_classes_warn_not_crash(tmp_path):
    src = fake_coco(tmp_path/'c', images=[(40, 40, [('cat', (0.2, 0.2, 0.8, 0.8), 'poly')]),
                                          (40, 40, [('clock', (0.2, 0.2, 0.8, 0.8), 'poly'), ('cat', (0, 0, 0.1, 0.1), 'poly')])])
    with pytest.warns(UserWarning, match=r"no images at all for \['car', 'clock'\]"):
        res = build_coco10(src, tmp_path/'o', classes='cat,car,clock', per_class=2, n_train=1, progress=False)
    assert res['counts']['cat']['train'] == 1 and res['counts']['clock']['images'] == 0
    assert not (tmp_path/'o'/'train'/'clock').exists()

def test_derive_option_in_build(src, tmp_path):
    res = _build(src, tmp_path/'o', classes='derive', per_class=2, n_train=1)
    assert res['classes'] == derive_classes(src/'annotations'/'instances_train2017.json') and len(res['classes']) == 10
    assert json.loads((tmp_path/'o'/'coco10.json').read_text())['params']['classes'] == res['classes']

# --- the real slice ----------------------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def tiny():
    if not TINY.exists(): pytest.skip(f'real COCO slice not available: {TINY.resolve()} is absent (needs ../shared next to the repo)')
    return TINY

def test_coco_tiny_layout_and_derivation(tiny):
    ann, imgs = find_coco(tiny)
    assert imgs == tiny/'train2017'                             # the official layout: train2017/ at the top
    d = derive_classes(ann)
    assert len(d) == 10 and d != list(PAPER_CLASSES)            # a slice is too small for the rule

def test_coco_tiny_build(tiny, tmp_path):
    with pytest.warns(UserWarning, match=r"no images at all for \['clock', 'train'\]") as ws:
        res = build_coco10(tiny, tmp_path/'o', per_class=6, n_train=3, progress=False)
    assert any('the source ran out for' in str(w.message) and 'asked 3 train + 3 val' in str(w.message) for w in ws)
    c = res['counts']
    assert c['clock']['images'] == c['train']['images'] == 0
    assert c['person']['images'] == 30 and c['person']['train'] == 3 and c['person']['val'] == 3   # val drawn until full
    assert res['total']['missing'] == res['total']['unreadable'] == 0 and not res['problems']
    ann = json.loads((tiny/'annotations'/'instances_train2017.json').read_text())
    sizes = {Path(r['file_name']).stem: (r['width'], r['height']) for r in ann['images']}
    for f in (tmp_path/'o'/'train').rglob('*.png'):
        assert Image.open(f).size == sizes[f.stem]
        assert np.load(tmp_path/'o'/'mask'/'train'/f.parent.name/f'{f.stem}.npy').shape == sizes[f.stem][::-1]
    for f in (tmp_path/'o'/'val').rglob('*.png'):
        assert Image.open(f).size == (224, 224)
        assert 0.05 <= np.load(tmp_path/'o'/'mask'/'val'/f.parent.name/f'{f.stem}.npy').mean() <= 0.95
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        again = build_coco10(tiny, tmp_path/'o', per_class=6, n_train=3, progress=False)
    assert again['written'] == 0 and again['total'] == res['total']
