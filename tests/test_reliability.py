"""Issue 14: no silent wrong result, one clear line for every bad input, no half-finished output left behind.

Each test drives `pxp` (through `cli.main`) or the API with one kind of bad input and checks: exit code 2, exactly one line on
stderr that starts `pxp: error:` and names the problem and the fix, no traceback, and nothing left on disk."""
import errno, json, os, shutil, socket, subprocess, sys
from pathlib import Path
import numpy as np, pytest, torch
from PIL import Image
from pixelperception import cli
from pixelperception.files import PxpError, NonFiniteError
from pixelperception.testing import make_imagefolder
from pixelperception.models.cifar_resnet import resnet20, CifarResNet

def pxp(capsys, *args):
    "Run `pxp args` in-process: (exit code, stdout, stderr)"
    rc = cli.main([str(a) for a in args])
    o = capsys.readouterr()
    return rc, o.out, o.err

def one_error(rc, err, *needles):
    "Exit code 2, one line `pxp: error: ...` holding every needle, no traceback"
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('pxp: error: ') and 'Traceback' not in err, err
    for s in needles: assert s in lines[0], (s, lines[0])
    return lines[0]

def dead_pid() -> int:
    "The id of a process that has ended"
    p = subprocess.Popen([sys.executable, '-c', 'pass']); p.wait()
    return p.pid

# --- fixtures -----------------------------------------------------------------------------------------------------------

TINY = dict(n_train=2, n_val=1, resolution=32, batch_size=20, classifier_epochs=0, epochs=2, validate_per_epoch=1, progress=False)
TINY_ARGS = ['--n-train', 2, '--n-val', 1, '--resolution', 32, '--batch-size', 20, '--classifier-epochs', 0, '--epochs', 2, '--no-progress']

@pytest.fixture(scope='module')
def ckrun(tmp_path_factory):
    "A tiny finished run, trained with checkpoints (2 epochs)"
    from pixelperception.p2p.train import train
    root = tmp_path_factory.mktemp('rel')
    kw = dict(TINY, data_path=root/'data', experiment=root/'runs', checkpoint=True)
    return kw, train(**kw)

@pytest.fixture
def run_copy(ckrun, tmp_path):
    "A copy of the finished run to damage"
    kw, run = ckrun
    dst = tmp_path/run.name
    shutil.copytree(run, dst, ignore=shutil.ignore_patterns('evaluate-*', 'explain-*'))
    return kw, dst

def folder(tmp_path, n=2, size=32, classes=('a', 'b')):
    return make_imagefolder(tmp_path/'imgs', classes=classes, n=n, size=size)

def weights(tmp_path, model, name='w.pth'):
    torch.save(model.state_dict(), tmp_path/name); return tmp_path/name

# --- class 2: silent wrong results ----------------------------------------------------------------------------------------

def test_nan_model_is_not_explained(tmp_path, capsys):
    "A model that outputs NaN is refused, not explained and scored as chance"
    m = resnet20(2)
    with torch.no_grad(): m.linear.bias.fill_(float('nan'))
    rc, _, err = pxp(capsys, 'explain', folder(tmp_path), '--model-path', weights(tmp_path, m), '--n-images', 2,
                     '--methods', 'moxi,random', '--experiment', tmp_path/'out', '--no-figures', '--no-progress')
    one_error(rc, err, 'not finite (NaN or inf)', 'check the weights file')
    assert not (tmp_path/'out').exists() or not any((tmp_path/'out').iterdir())   # no run folder

def test_nan_in_metrics_and_tuple_model():
    from pixelperception.evaluation.metrics import accuracy, auroc, ranking_curves
    from pixelperception.models.maskers import PatchMasker
    from pixelperception.explain.moxi import MoXI
    logits = torch.tensor([[float('nan'), 0.], [1., 0.]])
    with pytest.raises(NonFiniteError, match='not finite'): accuracy(logits, torch.tensor([0, 0]))
    with pytest.raises(NonFiniteError, match='not finite'): auroc(logits.softmax(-1), torch.tensor([0, 1]))
    x = torch.zeros(2, 3, 8, 8)
    tuple_model = lambda x: (x.mean((2, 3)), None)
    with pytest.raises(PxpError, match='returned a tuple'): MoXI(tuple_model, PatchMasker(2)).attribute(x)
    with pytest.raises(PxpError, match='returned a tuple'):
        ranking_curves(tuple_model, x, None, torch.arange(4).expand(2, 4), PatchMasker(2))

def test_16bit_png_keeps_its_grey_levels(tmp_path):
    from pixelperception.data.datasets import folder_items
    (tmp_path/'d'/'a').mkdir(parents=True); (tmp_path/'d'/'b').mkdir()
    grey = np.full((16, 16), 30000, np.uint16)                      # 30000/65535 of white: mid-grey, not white
    Image.fromarray(grey).save(tmp_path/'d'/'a'/'0.png'); Image.fromarray(grey).save(tmp_path/'d'/'b'/'0.png')
    with Image.open(tmp_path/'d'/'a'/'0.png') as im: assert np.array(im.convert('RGB')).min() == 255   # PIL alone: white
    im = folder_items(tmp_path/'d').image(0)
    assert im.shape == (16, 16, 3) and im.dtype == np.uint8 and (im == round(30000/257)).all()

def test_non_binary_masks_are_refused(tmp_path):
    from pixelperception.data.datasets import folder_items
    root = make_imagefolder(tmp_path/'d', n=1, size=16, masks=tmp_path/'m')
    np.save(tmp_path/'m'/'a'/'0000.npy', np.full((16, 16), 0.3))
    it = folder_items(root, tmp_path/'m')
    with pytest.raises(PxpError, match=r"0000.npy is not binary: it holds values such as 0.3 .*save binary masks"): it.mask(0)
    assert it.mask(1).dtype == bool                                 # a 0/1 mask still loads

def test_resolution_zero_is_refused(tmp_path, capsys):
    rc, _, err = pxp(capsys, 'train', '--resolution', 0, '--data-path', tmp_path/'data', '--experiment', tmp_path/'runs')
    one_error(rc, err, 'resolution must be a whole number >= 16', 'leave it out for the dataset\'s default')
    assert not (tmp_path/'runs').exists() and not (tmp_path/'data').exists()

def test_interrupted_coco10_build_is_refused(tmp_path, capsys, monkeypatch):
    import pixelperception.data.coco as coco
    src = coco.fake_coco(tmp_path/'coco')
    real, n = coco._build_item, []
    def dies(*a, **k):   # the build is killed after three images
        if len(n) == 3: raise KeyboardInterrupt
        n.append(1); return real(*a, **k)
    monkeypatch.setattr(coco, '_build_item', dies)
    with pytest.raises(KeyboardInterrupt): coco.build_coco10(src, tmp_path/'data'/'coco10', per_class=3, n_train=2, size=32, progress=False)
    monkeypatch.undo()
    rc, _, err = pxp(capsys, 'train', '--dataset', 'coco10', '--data-path', tmp_path/'data', '--experiment', tmp_path/'runs', *TINY_ARGS)
    one_error(rc, err, 'coco10 is incomplete', f"finish it with `pxp data coco10 --coco {src}", '--per-class 3 --n-train 2 --resolution 32')
    assert not (tmp_path/'runs').exists() or not any((tmp_path/'runs').iterdir())
    coco.build_coco10(src, tmp_path/'data'/'coco10', per_class=3, n_train=2, size=32, progress=False)   # the command it names finishes it
    from pixelperception.data.datasets import dataset_items
    items, _ = dataset_items('coco10', tmp_path/'data', 'train')
    assert len(items.vocab) == 10

def test_interrupted_imagenet9_build_is_refused(tmp_path, capsys):
    from pixelperception.data.imagenet9 import fake_imagenet9, build_imagenet9
    from pixelperception.data.datasets import dataset_items
    fx = fake_imagenet9(tmp_path/'data', n_train=1, n_val=1, n_test=1)
    build_imagenet9(fx['imagenet'], fx['pkl_dir'], fx['pkl_dir'], progress=False)
    (fx['pkl_dir']/'imagenet9.json').unlink()                        # a complete build from before the completion record: accepted
    assert len(dataset_items('imagenet9', tmp_path/'data', 'train')[0]) == 9
    next((fx['pkl_dir']/'val').rglob('*.JPEG')).unlink()            # now interrupted, and ImageNet is not there to finish it
    shutil.rmtree(fx['imagenet'])
    rc, _, err = pxp(capsys, 'train', '--dataset', 'imagenet9', '--data-path', tmp_path/'data', '--experiment', tmp_path/'runs', *TINY_ARGS)
    one_error(rc, err, 'the ImageNet-9 build in', 'is incomplete', f"finish it with `pxp data imagenet9 --imagenet IMAGENET_DIR --pkl-dir {fx['pkl_dir']}")
    assert not (tmp_path/'runs').exists()

def test_superpixel_padding_groups_come_last(tmp_path, capsys):
    "Images with fewer superpixels than the widest one: their absent groups are last in every order, never ranked among real ones"
    rc, out, err = pxp(capsys, 'explain', folder(tmp_path, n=2), '--features', 'superpixels', '--n-segments', 12, '--methods', 'moxi,self-shapley,random',
                       '--n-images', 4, '--curve', 'insertion', '--experiment', tmp_path/'out', '--no-figures', '--no-progress')
    assert rc == 0, err
    run = Path(out.strip().splitlines()[-1].split('results: ')[1])
    o = torch.load(run/'orders.pt', weights_only=False)
    n_b = torch.tensor([len(g.unique()) for g in o['groups']])
    N = o['orders']['moxi']['insertion'].shape[1]
    assert (n_b < N).any(), "the test needs images with different numbers of superpixels"
    for m, d in o['orders'].items():
        order = d['insertion']
        for b in range(len(order)):
            present = set(o['groups'][b].unique().tolist())
            assert set(order[b, :n_b[b]].tolist()) == present, m   # the first N_b are exactly the image's own groups

def test_ranking_curves_count_each_images_own_features():
    "k/N is each image's own fraction of its features: padding groups neither fill the order nor stretch the axis"
    from pixelperception.evaluation.metrics import ranking_curves
    from pixelperception.models.maskers import GroupMasker
    model = lambda x: torch.stack([torch.full_like(x[:, 0, 0, 0], .5), x[:, 0, :2, :2].mean((-1, -2))], -1)   # class 1 iff the top-left is visible
    gq = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]])   # four quadrants
    gh = torch.tensor([[0, 0, 1, 1]] * 4)                                           # two halves: groups 2 and 3 absent
    r = ranking_curves(model, torch.ones(2, 3, 4, 4), torch.tensor([1, 1]), torch.tensor([[0, 1, 2, 3], [2, 3, 1, 0]]),
                       GroupMasker(fill=0., n_groups=4), groups=torch.stack([gq, gh]))
    assert r.per_image.tolist() == [[1, 1, 1, 1], [0, 0, 1, 1]]   # image 1: one of its 2 halves at x = .25 and .5, both from .75

# --- class 3: one line instead of a traceback ----------------------------------------------------------------------------

def test_truncated_and_foreign_weights(tmp_path, capsys):
    imgs = folder(tmp_path)
    w = weights(tmp_path, resnet20(2))
    (tmp_path/'cut.pth').write_bytes(w.read_bytes()[:3000])
    rc, _, err = pxp(capsys, 'explain', imgs, '--model-path', tmp_path/'cut.pth', '--experiment', tmp_path/'out')
    one_error(rc, err, 'cut.pth: cannot read resnet20 weights, the file is truncated', 'pass weights of a resnet20 with 2 classes')
    w32 = weights(tmp_path, CifarResNet(5, 2), 'r32.pth')             # a ResNet-32 checkpoint given as ResNet-20
    rc, _, err = pxp(capsys, 'explain', imgs, '--model-path', w32, '--experiment', tmp_path/'out')
    one_error(rc, err, 'r32.pth does not fit CifarResNet', 'unexpected')
    rc, _, err = pxp(capsys, 'explain', imgs, '--classifier', 'resnet18', '--model-path', w, '--experiment', tmp_path/'out')
    one_error(rc, err, 'w.pth does not fit ResNet', 'pass weights of a resnet18 with 2 classes')
    assert not (tmp_path/'out').exists() or not any((tmp_path/'out').iterdir())

def test_damaged_images_in_explain(tmp_path, capsys):
    imgs = folder(tmp_path)
    good = (imgs/'a'/'0000.png').read_bytes()
    for name, data in (('zero', b''), ('cut', good[:80]), ('junk', b'not an image at all')):
        (imgs/'a'/'0000.png').write_bytes(data)
        rc, _, err = pxp(capsys, 'explain', imgs, '--experiment', tmp_path/'out')
        one_error(rc, err, f"cannot read image {imgs/'a'/'0000.png'}", 'replace the file with a good copy, or delete it')
    (imgs/'a'/'0000.png').write_bytes(good)
    Image.fromarray(np.zeros((40, 36, 3), np.uint8)).save(imgs/'b'/'0001.png')
    rc, _, err = pxp(capsys, 'explain', imgs, '--experiment', tmp_path/'out')
    one_error(rc, err, 'different sizes', 'pass resolution=N (--resolution N)')
    assert not (tmp_path/'out').exists() or not any((tmp_path/'out').iterdir())

@pytest.mark.parametrize('args,needle', [(['train', '--batch-size', 0], 'batch_size must be a whole number >= 1, got 0'),
                                         (['train', '--learning-rate', 'nan'], 'learning_rate must be a finite number > 0, got nan'),
                                         (['train', '--classifier-lr', 'inf'], 'classifier_lr must be a finite number > 0, got inf'),
                                         (['train', '--epochs', 0], 'epochs must be a whole number >= 1, got 0'),
                                         (['explain', '.', '--batch-size', 0], 'batch_size must be a whole number >= 1, got 0'),
                                         (['explain', '.', '--chunk', 0], 'chunk must be a whole number >= 1, got 0')])
def test_bad_numbers(tmp_path, capsys, args, needle):
    rc, _, err = pxp(capsys, *args, *(['--data-path', tmp_path/'data', '--experiment', tmp_path/'runs'] if args[0] == 'train' else ['--experiment', tmp_path/'out']))
    one_error(rc, err, needle)
    assert not any(tmp_path.iterdir())                                # nothing built, nothing written

def test_evaluate_batch_size_zero(ckrun, capsys):
    rc, _, err = pxp(capsys, 'evaluate', ckrun[1], '--batch-size', 0)
    one_error(rc, err, 'batch_size must be a whole number >= 1, got 0')

def test_config_and_weights_disagree(run_copy, capsys):
    _, run = run_copy
    cfg = json.loads((run/'config.json').read_text()); cfg['width'] = 8
    (run/'config.json').write_text(json.dumps(cfg))
    rc, _, err = pxp(capsys, 'evaluate', run)
    one_error(rc, err, f"{run/'model.pth'} does not fit P2P", 'restore', 'own config.json')
    assert not [p for p in run.iterdir() if p.name.startswith('evaluate-')]

def test_truncated_config(run_copy, capsys):
    _, run = run_copy
    (run/'config.json').write_text((run/'config.json').read_text()[:50])
    rc, _, err = pxp(capsys, 'evaluate', run)
    one_error(rc, err, f"{run/'config.json'} is not valid JSON (the run configuration)", 'restore')

def test_resume_with_other_model_settings(ckrun, tmp_path, capsys):
    kw, run = ckrun
    rc, _, err = pxp(capsys, 'train', '--resume', run, '--width', 8, '--data-path', kw['data_path'], '--experiment', tmp_path/'runs', *TINY_ARGS)
    one_error(rc, err, 'was trained with other model settings: width=24 (now 8)', '--width 24')
    assert not (tmp_path/'runs').exists()

# --- class 4: one-liners that name the fix ---------------------------------------------------------------------------------

@pytest.mark.parametrize('damage,needle', [
    (lambda t: t[:len(t)//2], 'is not valid JSON (COCO annotations)'),
    (lambda t: json.dumps({k: v for k, v in json.loads(t).items() if k != 'categories'}), "it has no 'categories' list"),
    (lambda t: json.dumps({**json.loads(t), 'annotations': [{**json.loads(t)['annotations'][0], 'category_id': 99999}]}),
     "refers to category_id 99999, which is not among its 'categories'")])
def test_broken_coco_annotations(tmp_path, capsys, damage, needle):
    from pixelperception.data.coco import fake_coco
    src = fake_coco(tmp_path/'coco'); f = src/'annotations'/'instances_train2017.json'
    f.write_text(damage(f.read_text()))
    rc, _, err = pxp(capsys, 'data', 'coco10', '--coco', src, '--out', tmp_path/'c10')
    line = one_error(rc, err, needle)
    assert str(f) in line and ('download' in line or 'restore' in line)
    assert not (tmp_path/'c10').exists()

def test_read_only_folder(tmp_path, capsys, monkeypatch):
    "A protected folder: the OS says [Errno 1]; pxp says which folder and what to do"
    ro = tmp_path/'ro'; ro.mkdir()
    mkdir = Path.mkdir
    def refuse(self, *a, **k):
        if ro in self.parents or self == ro: raise PermissionError(errno.EPERM, 'Operation not permitted', str(self))
        return mkdir(self, *a, **k)
    monkeypatch.setattr(Path, 'mkdir', refuse)
    rc, _, err = pxp(capsys, 'explain', folder(tmp_path), '--experiment', ro/'runs')
    one_error(rc, err, f"{ro/'runs'}: operation not permitted", 'choose a writable folder')

def test_killed_and_failed_runs_are_named(run_copy, capsys):
    _, run = run_copy
    (run/'model.pth').unlink()
    (run/'status.json').write_text(json.dumps(dict(state='running', pid=dead_pid(), host=socket.gethostname(), time='2026-01-01T00:00:00+00:00')))
    rc, _, err = pxp(capsys, 'evaluate', run)
    line = one_error(rc, err, 'is incomplete: the run was killed before it finished', f'pxp train --resume {run}')
    assert 'save_model' not in line
    (run/'status.json').write_text(json.dumps(dict(state='failed', error='RuntimeError: out of memory')))
    one_error(*pxp(capsys, 'evaluate', run)[::2], 'the run failed (RuntimeError: out of memory)')
    (run/'status.json').write_text(json.dumps(dict(state='running', pid=os.getpid(), host=socket.gethostname())))
    one_error(*pxp(capsys, 'evaluate', run)[::2], 'is still running', 'wait until it has finished')
    (run/'status.json').write_text(json.dumps(dict(state='running', pid=1, host='another-machine', time='t0')))
    one_error(*pxp(capsys, 'evaluate', run)[::2], 'the run started on another-machine at t0 has not finished', 'if it is still running there, wait')
    (run/'status.json').unlink()                                      # a run from before status.json: still not blamed on save_model
    line = one_error(*pxp(capsys, 'evaluate', run)[::2], 'has no model.pth: the run did not finish')
    assert 'save_model' not in line

def test_class_count_mismatch_names_the_fix(tmp_path, capsys):
    imgs = folder(tmp_path)
    rc, _, err = pxp(capsys, 'explain', imgs, '--model-path', weights(tmp_path, resnet20(10)), '--experiment', tmp_path/'out')
    one_error(rc, err, 'holds a resnet20 for 10 classes, not the 2 of the data', 'pass the data the model was trained on')

def test_bad_option_syntax_is_one_line(tmp_path, capsys):
    one_error(*pxp(capsys, 'train', '--epochs', 'two')[::2], "argument --epochs: invalid int value: 'two'", 'see `pxp train --help`')
    one_error(*pxp(capsys, 'evaluate', tmp_path, '--no-such-option')[::2], 'unrecognized arguments: --no-such-option', 'see `pxp evaluate --help`')
    one_error(*pxp(capsys, 'teleport')[::2], "unknown command 'teleport': use one of train,", '`pxp --help`')

def test_debug_flag_shows_the_traceback(tmp_path, capsys):
    rc, _, err = pxp(capsys, '--debug', 'train', '--batch-size', 0, '--data-path', tmp_path)
    assert rc == 2 and 'Traceback' in err and err.strip().splitlines()[-1].startswith('pxp: error: batch_size')

# --- class 5: nothing half-finished ---------------------------------------------------------------------------------------

def test_failed_train_leaves_nothing(ckrun, tmp_path, capsys):
    kw, _ = ckrun
    (tmp_path/'cut.pth').write_bytes(b'PK\x03\x04 not really a zip')
    rc, _, err = pxp(capsys, 'train', '--model-path', tmp_path/'cut.pth', '--data-path', kw['data_path'], '--experiment', tmp_path/'runs', *TINY_ARGS)
    one_error(rc, err, 'cut.pth: cannot read weights, the file is truncated')
    assert not any((tmp_path/'runs').iterdir())                       # the run folder was removed, not left with config.json

def test_nan_loss_stops_training_and_leaves_nothing(ckrun, tmp_path, capsys, monkeypatch):
    import pixelperception.p2p.learner as L
    class NanLoss(L.CrossEntropyLossFlat):
        def __call__(self, *a, **k): return super().__call__(*a, **k) * float('nan')
    monkeypatch.setattr(L, 'CrossEntropyLossFlat', NanLoss)
    kw, _ = ckrun
    rc, _, err = pxp(capsys, 'train', '--data-path', kw['data_path'], '--experiment', tmp_path/'runs', *TINY_ARGS)
    one_error(rc, err, 'the training loss at epoch 0, batch 0', 'not finite', 'lower the learning rate')
    assert not any((tmp_path/'runs').iterdir())

def test_failed_checkpointed_run_is_marked(ckrun, tmp_path, capsys, monkeypatch):
    "A run that saved checkpoints and then failed is kept, marked failed, and says how to resume"
    import pixelperception.p2p.train as T
    def boom(*a, **k): raise RuntimeError('the evaluation broke')
    monkeypatch.setattr(T, 'evaluate_p2p_sharded', boom)
    kw, _ = ckrun
    with pytest.raises(RuntimeError): T.train(**{**kw, 'experiment': tmp_path/'runs'})
    (run,) = list((tmp_path/'runs').iterdir())
    st = json.loads((run/'status.json').read_text())
    assert st['state'] == 'failed' and 'the evaluation broke' in st['error'] and f'--resume {run}' in st['resume']
    one_error(*pxp(capsys, 'evaluate', run)[::2], 'the run failed (RuntimeError: the evaluation broke)', f'pxp train --resume {run}')

def test_finished_run_is_marked_complete(ckrun):
    _, run = ckrun
    assert json.loads((run/'status.json').read_text())['state'] == 'complete'
    assert sorted(p.name for p in (run/'models').iterdir()) == ['checkpoint_0.pth', 'checkpoint_1.pth']   # no temporary files

def test_killed_synthetic_build_is_cleaned(tmp_path, capsys):
    stale = tmp_path/'.syn-building-abc123'; stale.mkdir()
    (stale/'builder.json').write_text(json.dumps(dict(pid=dead_pid(), host=socket.gethostname())))
    (stale/'half.png').write_bytes(b'x')
    alive = tmp_path/'.syn-building-xyz789'; alive.mkdir()            # a build still running (this process) is left alone
    (alive/'builder.json').write_text(json.dumps(dict(pid=os.getpid(), host=socket.gethostname())))
    rc, _, err = pxp(capsys, 'data', 'synthetic', '--out', tmp_path/'syn', '--n-train', 1, '--n-val', 1, '--no-preview')
    assert rc == 0, err
    assert not stale.exists() and alive.exists() and (tmp_path/'syn'/'synthetic.json').exists()

def test_checkpoint_save_is_atomic(ckrun, tmp_path, monkeypatch):
    "A kill in the middle of a checkpoint save leaves the earlier checkpoints and no partial file"
    import pixelperception.p2p.learner as L
    from pixelperception.p2p.learner import AtomicSaveModel
    kw, run = ckrun
    d = tmp_path/'models'; shutil.copytree(run/'models', d)
    def half(file, *a, **k): Path(file).write_bytes(b'PK\x03\x04 half'); raise KeyboardInterrupt
    monkeypatch.setattr(L, 'save_model', half)
    class Fake: path, model_dir, model, opt = tmp_path, 'models', None, None
    cb = AtomicSaveModel(every_epoch=True, with_opt=True, fname='checkpoint'); cb.learn = Fake()
    with pytest.raises(KeyboardInterrupt): cb._save('checkpoint_2')
    assert sorted(p.name for p in d.iterdir()) == ['checkpoint_0.pth', 'checkpoint_1.pth']

def test_resume_skips_a_truncated_checkpoint(ckrun, tmp_path, capsys):
    kw, run = ckrun
    src = tmp_path/run.name; shutil.copytree(run, src, ignore=shutil.ignore_patterns('evaluate-*', 'explain-*'))
    last = src/'models'/'checkpoint_1.pth'; last.write_bytes(last.read_bytes()[:1000])
    rc, out, err = pxp(capsys, 'train', '--resume', src, '--data-path', kw['data_path'], '--experiment', tmp_path/'runs', *TINY_ARGS, '--epochs', 3)
    assert rc == 0, err
    assert f"skipping checkpoint {last}: it cannot be read" in err and 'Traceback' not in err
    new = Path(out.strip().splitlines()[-1].split('results: ')[1])
    assert json.loads((new/'config.json').read_text())['resumed_from'] == str(src/'models'/'checkpoint_0.pth')

# --- issue 26: evaluation never builds data, unknown options are named, fixes for damaged runs ------------------------------

def test_evaluate_never_builds_or_writes_data(run_copy, tmp_path, capsys):
    "A missing dataset, or a folder of the user's own images, is refused with the command that builds the data: nothing is created"
    kw, run = run_copy
    missing = tmp_path/'nowhere'
    rc, _, err = pxp(capsys, 'evaluate', run, '--data-path', missing)
    one_error(rc, err, f'no built-in benchmark in {missing}', 'pass the data_path that holds it', 'pxp data synthetic --out', '--n-train 2 --n-val 1')
    assert not missing.exists()
    mine = folder(tmp_path); before = sorted(mine.rglob('*'))           # the user's own images
    one_error(*pxp(capsys, 'evaluate', run, '--data-path', mine)[::2], f'no built-in benchmark in {mine}')
    assert sorted(mine.rglob('*')) == before
    assert not [p for p in run.iterdir() if p.name.startswith('evaluate-')]

def test_evaluate_refuses_other_classes(run_copy, tmp_path, capsys):
    kw, run = run_copy
    (src,) = [p for p in Path(kw['data_path']).iterdir() if p.name.startswith('synthetic')]
    copy = tmp_path/'copy'; shutil.copytree(src, copy/src.name)
    val = copy/src.name/'data'/'obj'
    c0 = sorted(p.name for p in (val/'val').iterdir())[0]
    for d in ('val', 'val_mask'): (val/d/c0).rename(val/d/'zebra')
    rc, _, err = pxp(capsys, 'evaluate', run, '--data-path', copy)
    one_error(rc, err, 'the evaluation data has classes [', "'zebra'", f"the run's are ['{c0}'", 'with the same class folders')
    assert not (copy/'superpixel_cache').exists() and not [p for p in run.iterdir() if p.name.startswith('evaluate-')]

def test_check_classes_names_what_each_side_lacks():
    from pixelperception.p2p.runs import _check_classes
    run = [f'c{i:03d}' for i in range(100)]
    with pytest.raises(PxpError, match=r"lacks the run's classes \['c000'\]; has classes the run does not know \['zebra'\]"):
        _check_classes(['zebra', *run[1:]], run, 'folder')
    with pytest.raises(PxpError, match="in another order"): _check_classes(run[::-1], run, 'folder')
    _check_classes(run, run, 'folder')

@pytest.mark.parametrize('cfg', [{'epochs': 1, 'epocs': 2}, {'epocs': 1}])
def test_config_file_unknown_keys(tmp_path, capsys, cfg):
    f = tmp_path/'c.json'; f.write_text(json.dumps(cfg))
    rc, _, err = pxp(capsys, 'train', '--config', f, '--data-path', tmp_path/'data', '--experiment', tmp_path/'runs')
    one_error(rc, err, f"{f} has keys that are no option of `pxp train`: 'epocs' (did you mean 'epochs'?)", 'nothing was started')
    assert sorted(p.name for p in tmp_path.iterdir()) == ['c.json']   # nothing built, nothing written

def test_a_runs_config_is_a_valid_config_file(ckrun):
    "Every key `train` writes into config.json is an option or a recorded fact (`RUN_RECORD`): --config accepts a run's own file"
    from pixelperception.p2p.runs import unknown_options, RUN_RECORD
    from pixelperception.config import option_fields
    assert unknown_options(json.loads((ckrun[1]/'config.json').read_text()), option_fields(), RUN_RECORD) == ''

def test_old_run_config_keys_warn(run_copy):
    from pixelperception.p2p.runs import load_run
    _, run = run_copy
    cfg = json.loads((run/'config.json').read_text())
    (run/'config.json').write_text(json.dumps({**cfg, 'legacy_flag': True, 'epocs': 3}))
    with pytest.warns(UserWarning, match=r"has keys that are no option .* 'legacy_flag', 'epocs' \(did you mean 'epochs'\?\)"):
        model, got = load_run(run)
    assert got['epochs'] == cfg['epochs']

def test_data_help_lists_the_builders(capsys):
    for args in (['data'], ['data', '--help']):
        rc, out, err = pxp(capsys, *args)
        assert rc == 0 and not err, err
        assert 'builders:' in out and all(f'pxp data {b}' in out for b in ('synthetic', 'coco10', 'imagenet9', 'bam'))
    one_error(*pxp(capsys, 'data', 'nope')[::2], "unknown command 'data nope'")

def test_truncated_run_weights_name_the_fix(run_copy, capsys):
    _, run = run_copy
    w = run/'model.pth'; w.write_bytes(w.read_bytes()[:2000])
    rc, _, err = pxp(capsys, 'evaluate', run)
    one_error(rc, err, f"{w}: cannot read the run's P2P weights", 'from its last checkpoint (checkpoint_1.pth)',
              f"`pxp train --config {run/'config.json'} --resume {run}`")
    shutil.rmtree(run/'models')
    one_error(*pxp(capsys, 'evaluate', run)[::2], "train again with the run's options", f"`pxp train --config {run/'config.json'}`", 'no checkpoints')

def test_n_classes_disagreeing_with_the_weights(run_copy, capsys):
    _, run = run_copy
    cfg = json.loads((run/'config.json').read_text()); n = cfg['n_classes']
    (run/'config.json').write_text(json.dumps({**cfg, 'n_classes': n + 3}))
    rc, _, err = pxp(capsys, 'evaluate', run)
    one_error(rc, err, f"says n_classes={n + 3}, but its vocab lists {n} classes", 'trust model.pth', f'"n_classes": {n} in config.json')

def test_progress_in_a_log_is_plain_lines(tmp_path, capsys, monkeypatch):
    "Output that is not a terminal (a log, CI) gets one plain line per epoch, not fastprogress's redraw fragments; a terminal keeps the bars"
    args = ['train', '--data-path', tmp_path/'data', '--experiment', tmp_path/'runs', *[a for a in TINY_ARGS if a != '--no-progress'], '--classifier-epochs', 1]
    rc, out, err = pxp(capsys, *args)
    assert rc == 0, err
    assert '\r' not in out + err and '█' not in out + err, out[:300]
    lines = out.splitlines()
    assert lines.count('epoch  train_loss  valid_loss  accuracy  time') == 1                  # the classifier's phase: its table
    assert any(l.startswith('epoch  train_loss  valid_loss  accuracy  kept') for l in lines)   # then P2P's
    assert [l.split()[0] for l in lines if l[:1].isdigit()] == ['0', '0', '1']                  # one row per epoch (1 + 2)
    import pixelperception.core as core, pixelperception.p2p.learner as L
    for m in (core, L): monkeypatch.setattr(m, 'bars_shown', lambda: True)                      # a terminal: fastai's bars as before
    rc, out, err = pxp(capsys, *args)
    assert rc == 0 and '█' in out, err

def test_test_command_without_quarto_is_quiet(tmp_path):
    "The README's test command where Quarto is absent: no attempt to install it (no 'Cancelled', no sudo), one line saying what is skipped"
    ROOT = Path(__file__).resolve().parents[1]
    log = Path(os.environ.get('PXP_STEP2_LOG') or tmp_path/'none')
    if log.is_file() and 'without Quarto' in (out := log.read_text()):   # run by tools/test.sh, whose step 2 just ran without Quarto: its output
        return _check_quiet_step2(out, None)
    path = os.pathsep.join(d for d in os.environ['PATH'].split(os.pathsep) if not (Path(d)/'quarto').exists())   # Quarto hidden if installed
    p = subprocess.Popen(['bash', str(ROOT/'tools'/'test.sh'), '2'], cwd=ROOT, env={**os.environ, 'PATH': path}, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, start_new_session=True)
    out, rc = [], None
    try:
        for line in p.stdout:
            if line.startswith('== 3/'): break                      # an old test.sh ignores the step and goes on: step 2 is what is checked
            out.append(line)
        else: rc = p.wait()
    finally:
        if rc is None: os.killpg(p.pid, 9); p.wait()
    _check_quiet_step2(''.join(out), rc)

def _check_quiet_step2(out, rc):
    assert rc in (None, 0), out[-2000:]
    assert 'Cancelled' not in out and 'sudo' not in out and 'install Quarto' not in out, out[-2000:]
    assert sum('Quarto' in l for l in out.splitlines()) == 1 and '== 2/4 docs pre-processing without Quarto (not installed' in out, out[-2000:]
