"Data files cannot run code: every pickle reader refuses a crafted pickle whose reduce runs a shell command, and says what it refused"
import os, pickle, shlex, struct
import numpy as np, pytest
from pixelperception import cli
from pixelperception.data.datasets import cifar10_items
from pixelperception.files import safe_pickle_load
from pixelperception.data.imagenet9 import build_imagenet9, fake_imagenet9, read_imagenet9_pkl, IMAGENET9_PKLS
from pixelperception.testing import make_cifar10, CIFAR10_CLASSES

REFUSED = f"refusing to unpickle '{os.system.__module__}.system'"   # 'posix.system' on Linux and macOS

class Evil:
    "Unpickles as a call to `os.system(cmd)`"
    def __init__(self, cmd): self.cmd = cmd
    def __reduce__(self): return os.system, (self.cmd,)

def _evil(marker, wrap=lambda e: e):
    "A pickle that runs `touch marker` when plain `pickle.load` reads it, inside the structure `wrap` builds"
    return pickle.dumps(wrap(Evil(f'touch {shlex.quote(str(marker))}')))

# what a crafted file would look like in each format
FAKES = {'batches.meta': lambda e: {'label_names': e, 'num_vis': 3072},
         'data_batch_3': lambda e: {'data': e, 'labels': [0, 1], 'batch_label': 'training batch 3 of 5'},
         'test_batch':   lambda e: {'data': np.zeros((2, 3072), np.uint8), 'labels': e}}

def test_payload_runs_under_plain_pickle(tmp_path):
    "The crafted pickle is live: plain `pickle.loads` runs its command (so the marker checks below mean something)"
    marker = tmp_path/'pwned'
    pickle.loads(_evil(marker))
    assert marker.exists()

# --- CIFAR-10 ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('fn', list(FAKES))
def test_cifar10_refuses_code(tmp_path, fn):
    root = make_cifar10(tmp_path/'cifar10', n_train=2, n_test=2); marker = tmp_path/'pwned'
    f = root/'cifar-10-batches-py'/fn
    f.write_bytes(_evil(marker, FAKES[fn]))
    with pytest.raises(ValueError) as e: cifar10_items(root, train=fn != 'test_batch')
    assert not marker.exists()
    assert str(e.value).startswith(f"{f}: {REFUSED}: this pickle holds code, not CIFAR-10 data")
    assert 'Replace it with the original file' in str(e.value)

def test_cli_train_cifar10_refuses_code(tmp_path, capsys):
    make_cifar10(tmp_path/'cifar10', n_train=2, n_test=2); marker = tmp_path/'pwned'
    f = tmp_path/'cifar10'/'cifar-10-batches-py'/'data_batch_1'
    f.write_bytes(_evil(marker, FAKES['data_batch_3']))
    rc = cli.main(['train', '--dataset', 'cifar10', '--data-path', str(tmp_path), '--experiment', str(tmp_path/'runs')])
    err = capsys.readouterr().err
    assert rc == 2 and not marker.exists()
    assert err.splitlines() == [f"pxp: error: {f}: {REFUSED}: this pickle holds code, not CIFAR-10 data. "
                                "Replace it with the original file from the dataset's release."]
    assert not (tmp_path/'runs').exists()                       # stopped before a run folder was made

# --- ImageNet-9 -------------------------------------------------------------------------------------------------------

@pytest.fixture
def i9(tmp_path): return fake_imagenet9(tmp_path/'data', n_train=1, n_val=1, n_test=1)

def test_imagenet9_refuses_code(i9, tmp_path):
    marker = tmp_path/'pwned'
    f = i9['pkl_dir']/IMAGENET9_PKLS['val']
    f.write_bytes(_evil(marker, lambda e: [[e]] + [[]]*8))
    with pytest.raises(ValueError, match=f"not an ImageNet-9 path list") as e: read_imagenet9_pkl(f)
    assert str(e.value).startswith(f"{f}: {REFUSED}")
    with pytest.raises(ValueError, match=REFUSED): build_imagenet9(i9['imagenet'], i9['pkl_dir'], tmp_path/'out', progress=False)
    assert not marker.exists() and not (tmp_path/'out').exists()

def test_cli_data_imagenet9_refuses_code(i9, tmp_path, capsys):
    marker = tmp_path/'pwned'
    f = i9['pkl_dir']/IMAGENET9_PKLS['train']
    f.write_bytes(_evil(marker))                                # the bare payload, not even a list
    rc = cli.main(['data', 'imagenet9', '--imagenet', str(i9['imagenet']), '--pkl-dir', str(i9['pkl_dir']), '--out', str(tmp_path/'out')])
    err = capsys.readouterr().err
    assert rc == 2 and not marker.exists() and not (tmp_path/'out').exists()
    assert len(err.splitlines()) == 1 and err.startswith(f"pxp: error: {f}: {REFUSED}: this pickle holds code, not an ImageNet-9 path list")

# --- genuine files still load; damaged ones are one clear error ---------------------------------------------------------

def _py2(obj) -> bytes:
    "Pickle `obj` (dict of str, list of int, uint8 array) as Python 2's cPickle did for CIFAR-10: protocol 2, str opcodes, numpy.core"
    def s(b): return (b'U' + bytes([len(b)]) if len(b) < 256 else b'T' + struct.pack('<I', len(b))) + b
    def one(o):
        if isinstance(o, str): return s(o.encode('latin1'))
        if isinstance(o, int): return b'K' + bytes([o]) if 0 <= o < 256 else b'J' + struct.pack('<i', o)
        if isinstance(o, list): return b'](' + b''.join(map(one, o)) + b'e'
        if isinstance(o, dict): return b'}(' + b''.join(one(k) + one(v) for k, v in o.items()) + b'u'
        assert isinstance(o, np.ndarray) and o.dtype == np.uint8 and o.ndim == 2
        return (b'cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85U\x01b\x87R(K\x01' + one(o.shape[0]) + one(o.shape[1]) +
                b'\x86cnumpy\ndtype\nU\x02u1K\x00K\x01\x87R(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89' + s(o.tobytes()) + b'tb')
    return b'\x80\x02' + one(obj) + b'.'

def test_python2_cifar10_pickles_load(tmp_path):
    "The layout and pickle dialect of cifar-10-python.tar.gz (Python 2, numpy 1) loads, bytes >= 128 included"
    base = tmp_path/'cifar-10-batches-py'; base.mkdir()
    rng = np.random.default_rng(0)
    xs = {f: rng.integers(0, 256, (3, 3072), dtype=np.uint8) for f in ['data_batch_1', 'data_batch_2', 'data_batch_3', 'data_batch_4', 'data_batch_5', 'test_batch']}
    for f, x in xs.items():
        (base/f).write_bytes(_py2({'batch_label': f'batch {f}', 'labels': [1, 2, 3], 'data': x, 'filenames': ['a.png', 'b.png', 'c.png']}))
    (base/'batches.meta').write_bytes(_py2({'num_cases_per_batch': 10000, 'label_names': list(CIFAR10_CLASSES), 'num_vis': 3072}))
    it = cifar10_items(tmp_path)
    assert len(it) == 15 and it.vocab == list(CIFAR10_CLASSES) and it.labels.tolist() == [1, 2, 3]*5
    assert np.array_equal(it.srcs[3], xs['data_batch_2'][0].reshape(3, 32, 32).transpose(1, 2, 0))
    te = cifar10_items(tmp_path, train=False)
    assert np.array_equal(np.stack(te.srcs), xs['test_batch'].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))

def test_library_pickles_still_load(tmp_path):
    "Pickles written by the library's own fixtures (numpy arrays, np.int64 labels) load as plain pickle loads them"
    root = make_cifar10(tmp_path/'c', n_train=4, n_test=3)
    it = cifar10_items(root)
    assert len(it) == 20 and it.vocab == list(CIFAR10_CLASSES) and it.srcs[0].shape == (32, 32, 3)
    with open(root/'cifar-10-batches-py'/'test_batch', 'rb') as f: plain = pickle.load(f, encoding='latin1')
    safe = safe_pickle_load(root/'cifar-10-batches-py'/'test_batch', encoding='latin1')
    assert np.array_equal(safe['data'], plain['data']) and safe['labels'] == plain['labels']
    fx = fake_imagenet9(tmp_path/'d', n_train=2, n_val=1, n_test=1, prefix='imagenet/')
    for name in IMAGENET9_PKLS.values():
        with open(fx['pkl_dir']/name, 'rb') as f: assert read_imagenet9_pkl(fx['pkl_dir']/name) == pickle.load(f)

def test_truncated_pickles_are_clear_errors(tmp_path, i9, capsys):
    root = make_cifar10(tmp_path/'c', n_train=2, n_test=2)
    f = root/'cifar-10-batches-py'/'data_batch_2'
    f.write_bytes(f.read_bytes()[:100])                        # an interrupted download or extraction
    with pytest.raises(ValueError) as e: cifar10_items(root)
    assert str(e.value).startswith(f"{f}: cannot read CIFAR-10 data from this pickle, the file is truncated or corrupt")
    assert str(e.value).endswith("Download or extract it again.")
    g = i9['pkl_dir']/IMAGENET9_PKLS['train']
    g.write_bytes(b'')
    with pytest.raises(ValueError, match='cannot read an ImageNet-9 path list from this pickle, the file is truncated or corrupt'): read_imagenet9_pkl(g)
    rc = cli.main(['data', 'imagenet9', '--imagenet', str(i9['imagenet']), '--pkl-dir', str(i9['pkl_dir']), '--out', str(tmp_path/'out')])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.splitlines()) == 1 and err.startswith(f"pxp: error: {g}: cannot read an ImageNet-9 path list")
