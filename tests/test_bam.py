"`pxp data bam`: the BAM release (generated in its official layout) converted into the layout `--dataset bam` reads, then loaded"
import json, os, subprocess, sys
import numpy as np, pytest, torch
from pixelperception.data.bam import convert_bam, load_bam_masks
from pixelperception.cli import main
from pixelperception.data.datasets import dataset_items, get_dls, get_eval_dl
from pixelperception.files import PxpError
from pixelperception.testing import make_bam

def pxp(*args):
    return subprocess.run([sys.executable, '-m', 'pixelperception.cli', *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, 'MPLBACKEND': 'Agg'})

def _red(img): return (img[..., 0] > 200) & (img[..., 1] < 80) & (img[..., 2] < 80)
def _iou(a, b): return (a & b).sum() / (a | b).sum()

@pytest.mark.parametrize('masks', ['crops', 40, 32])   # the release's cut-outs; one mask per image at the eval size; at another size
def test_cli_converts_and_loaders_read_it(tmp_path, masks):
    rel = make_bam(tmp_path/'release', objs=('dog', 'kite', 'zebra'), n_train=2, n_val=2, masks=masks)
    assert main(['data', 'bam', '--bam', str(rel), '--out', str(tmp_path/'data'/'bam'), '--resolution', '40']) == 0   # in process: quicker
    rep = json.loads((tmp_path/'data'/'bam'/'bam.json').read_text())
    assert rep['size'] == 40 and rep['targets']['obj']['masks'] == ('crops' if masks == 'crops' else 'per image')
    assert rep['mask_sizes'] == ['32x32' if masks == 'crops' else f'{masks}x{masks}']
    for target, classes in (('object', ['dog', 'kite', 'zebra']), ('scene', ['bamboo_forest', 'bedroom'])):
        va, policy = dataset_items('bam', tmp_path/'data', 'val', label_kind=target)
        tr, _ = dataset_items('bam', tmp_path/'data', 'train', label_kind=target)
        assert (va.vocab, tr.vocab, len(va), len(tr), policy) == (classes, classes, 12, 12, 'imagenet')
        for k in range(len(va)):
            m, img = va.mask(k), va.image(k)
            assert m.shape == img.shape[:2] == (40, 40) and _iou(m, _red(img)) > 0.7
    dls = get_dls('bam', data_path=tmp_path/'data', label_kind='scene', size=32, bs=4, device='cpu', n_segments=20)
    assert dls.one_batch()[0].shape == (4, 3, 32, 32) and dls.c == 2
    x, g, y, m = get_eval_dl('bam', data_path=tmp_path/'data', size=32, bs=12, device='cpu', n_segments=20).one_batch()
    assert m.shape == (12, 32, 32) and m.dtype == torch.bool and y.tolist() == [0]*4 + [1]*4 + [2]*4

def test_cut_outs_are_placed_exactly(tmp_path):
    "the release's per-object cut-outs at the val_loc.txt boxes equal the masks the images were drawn with"
    a = convert_bam(make_bam(tmp_path/'rc', n_val=3), tmp_path/'c'/'bam', size=32, progress=False)
    b = convert_bam(make_bam(tmp_path/'rf', n_val=3, masks=32), tmp_path/'f'/'bam', size=32, progress=False)
    ic, jf = dataset_items('bam', tmp_path/'c', 'val')[0], dataset_items('bam', tmp_path/'f', 'val')[0]
    assert (a['targets']['obj']['masks'], b['targets']['obj']['masks']) == ('crops', 'per image') and len(ic) == 12
    assert all((ic.mask(k) == jf.mask(k)).all() for k in range(len(ic)))

def _save(f, a):
    with open(f, 'wb') as fh: np.save(fh, a)

def test_bad_releases_are_refused_before_writing(tmp_path):
    rel = make_bam(tmp_path/'r', n_train=1, n_val=2, masks=32)
    m = np.load(rel/'data'/'obj'/'val_mask')
    for t in ('obj', 'scene'): _save(rel/'data'/t/'val_mask', m[:5])
    r = pxp('data', 'bam', '--bam', rel, '--out', tmp_path/'o')
    assert r.returncode == 2 and r.stderr.count('\n') == 1 and 'holds 5 masks for 8 validation images' in r.stderr
    for t in ('obj', 'scene'): _save(rel/'data'/t/'val_mask', (m * 3).astype(np.uint8))   # values 0 and 3: not a binary mask
    with pytest.raises(PxpError, match='is not binary'): convert_bam(rel, tmp_path/'o', progress=False)
    (rel/'data'/'obj'/'val'/'stray.jpg').write_bytes(b'')
    with pytest.raises(PxpError, match='holds 1 images that val.txt does not list, e.g. stray.jpg'): convert_bam(rel, tmp_path/'o')
    r = pxp('data', 'bam', '--bam', tmp_path/'nothing', '--out', tmp_path/'o')
    assert r.returncode == 2 and 'BAM release' in r.stderr and '--bam' in r.stderr
    assert not (tmp_path/'o').exists() and not list(tmp_path.glob('.o-building-*'))

def test_interrupted_conversion_leaves_nothing(tmp_path, monkeypatch):
    import pixelperception.data.bam as bm
    rel, calls = make_bam(tmp_path/'r', n_train=1, n_val=2), []
    def boom(*a, **k):
        calls.append(1)
        if len(calls) == 3: raise KeyboardInterrupt
        return orig(*a, **k)
    orig = bm._val_item; monkeypatch.setattr(bm, '_val_item', boom)
    with pytest.raises(KeyboardInterrupt): convert_bam(rel, tmp_path/'o', progress=False)
    assert not (tmp_path/'o').exists() and not list(tmp_path.glob('.o-building-*'))
    monkeypatch.setattr(bm, '_val_item', orig)
    assert convert_bam(rel, tmp_path/'o', progress=False)['targets']['scene']['val'] == 8

def test_object_masks_never_run_pickled_code(tmp_path):
    import pickle
    class Evil:
        def __reduce__(self): return (os.system, (f'touch {tmp_path}/pwned',))
    f = tmp_path/'val_mask'
    with open(f, 'wb') as fh:
        np.lib.format.write_array_header_1_0(fh, dict(descr='|O', fortran_order=False, shape=(1,))); pickle.dump(Evil(), fh)
    with pytest.raises(PxpError, match='refusing to unpickle'): load_bam_masks(f)
    assert not (tmp_path/'pwned').exists()
