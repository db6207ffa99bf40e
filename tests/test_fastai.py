"P2P in fastai's own tools: CategoryMap vocabulary, Interpretation, predict on files and PIL images, test_dl, load_learner, user callbacks, wandb offline."
import json, struct
from pathlib import Path
import numpy as np, pytest, torch
from PIL import Image
from fastai.callback.core import Callback
from fastai.data.transforms import CategoryMap, Category
from fastai.interpret import ClassificationInterpretation
from fastai.learner import load_learner as fastai_load_learner
from pixelperception.p2p.train import train
from pixelperception.p2p.runs import load_learner, load_run
from pixelperception.data.datasets import dataset_items, get_eval_dl
from pixelperception.p2p.learner import P2PLearner

TINY = dict(n_train=4, n_val=2, resolution=32, batch_size=20, classifier_epochs=0, epochs=1, validate_per_epoch=1, progress=False, threads=1)

class CountBatches(Callback):
    "Counts the training batches it sees: proof that `train(cbs=...)` reaches the P2P learner"
    def before_fit(self): self.n_train, self.n_valid = 0, 0
    def after_batch(self):
        if self.training: self.n_train += 1
        else: self.n_valid += 1

@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp('fastai')
    kw = dict(TINY, data_path=root/'data', experiment=root/'runs')
    counter = CountBatches()
    run = train(cbs=[counter], **kw)
    files = dataset_items('synthetic', kw['data_path'], 'val', size=32, n_train=4, n_val=2)[0].srcs
    return kw, run, counter, files

def test_cbs_reach_the_learner(tiny):
    kw, run, counter, _ = tiny
    assert counter.n_train == 2 and counter.n_valid == 1   # 40 training images in batches of 20; 20 validation images, one batch
    assert 'cbs' not in json.loads((run/'config.json').read_text())   # Python objects are not options

def test_bad_cbs(tmp_path):
    with pytest.raises(ValueError, match='cbs must be fastai Callbacks'): train(cbs=['not a callback'], data_path=tmp_path, **TINY)
    assert not (tmp_path/'runs').exists()

def test_load_learner_predicts_like_the_run(tiny):
    kw, run, _, files = tiny
    learn = load_learner(run)
    assert isinstance(learn, P2PLearner) and isinstance(learn.dls.vocab, CategoryMap) and len(learn.dls.vocab) == 10
    label, idx, probs = learn.predict(files[0])
    assert isinstance(label, Category) and label == learn.dls.vocab[int(idx)] and probs.shape == (10,)
    model, cfg = load_run(run)
    edl = get_eval_dl(data_path=kw['data_path'], size=32, bs=20, n_train=4, n_val=2)
    x, g = (o.as_subclass(torch.Tensor) for o in edl.one_batch()[:2])
    with torch.no_grad(): ref = model(x[:1], g[:1]).logits.softmax(-1)[0]
    assert torch.allclose(probs, ref, atol=1e-5)   # the run's own model at its certainty level, on the image prepared the same way
    # a PIL image and an array of the same file: the same prediction
    img = Image.open(files[0])
    assert torch.allclose(learn.predict(img)[2], probs, atol=1e-5) and torch.allclose(learn.predict(np.asarray(img.convert('RGB')))[2], probs, atol=1e-5)
    p = learn.predict_p2p(files[0])
    assert p.label == label and torch.allclose(p.probs, probs, atol=1e-5)
    assert p.keep.shape == (32, 32) and p.keep.dtype == torch.bool and p.groups.shape == (32, 32)
    assert 0.05 <= p.tau <= 1 and learn.predict_p2p(files[0], delta=0.5).tau <= learn.predict_p2p(files[0], delta=0.999).tau

def test_test_dl_and_interpretation(tiny):
    _, run, _, files = tiny
    learn = load_learner(run)
    tdl = learn.dls.test_dl(files[:5])
    preds, _ = learn.get_preds(dl=tdl)
    assert preds.shape == (5, 10)
    ldl = learn.dls.test_dl([(f, int(Path(f).parent.name == learn.dls.vocab[1])) for f in files[:6]], with_labels=True)
    interp = ClassificationInterpretation.from_learner(learn, dl=ldl)
    cm = interp.confusion_matrix()
    assert cm.shape == (10, 10) and cm.sum() == 6   # 10 classes, not the letters of the last class name
    interp.plot_top_losses(3)
    import matplotlib.pyplot as plt
    plt.close('all')
    with pytest.raises(FileNotFoundError, match='nope.jpg not found'): learn.predict('nope.jpg')

def test_export_round_trip(tiny, tmp_path):
    _, run, _, files = tiny
    learn = load_learner(run)
    learn.export(tmp_path/'export.pkl')
    l2 = load_learner(tmp_path/'export.pkl')   # a file: fastai's load_learner
    l3 = fastai_load_learner(tmp_path/'export.pkl')
    ref = learn.predict(files[1])
    for l in (l2, l3):
        out = l.predict(files[1])
        assert out[0] == ref[0] and torch.allclose(out[2], ref[2], atol=1e-5)

def test_files_are_labelled_by_their_folder(tiny, tmp_path):
    "fastai's rule (issue 26): `test_dl(files, with_labels=True)` labels each file by its parent folder, so every entry point a user reaches for works on a run read back with `load_learner` (no validation data)"
    import matplotlib.pyplot as plt
    from pixelperception.files import PxpError
    _, run, _, files = tiny
    files = [files[i] for i in range(0, len(files), 2)][:6]                        # several classes
    learn = load_learner(run)
    truth = torch.tensor([list(learn.dls.vocab).index(Path(f).parent.name) for f in files])
    assert len(set(truth.tolist())) > 1
    dl = learn.dls.test_dl(files, with_labels=True)
    preds, targs = learn.get_preds(dl=dl)                                          # 1. learn.get_preds(dl=...)
    assert preds.shape == (len(files), 10) and torch.equal(targs, truth)
    interp = ClassificationInterpretation.from_learner(learn, dl=learn.dls.test_dl(files, with_labels=True))   # 2. Interpretation
    cm = interp.confusion_matrix()
    assert cm.sum() == len(files) and (cm.sum(1)[truth.unique()] == torch.bincount(truth)[truth.unique()].numpy()).all()   # rows: the folders' classes
    interp.plot_top_losses(3)                                                      # 3. plot_top_losses
    assert plt.get_fignums(); plt.close('all')
    axs = learn.show_results(dl=learn.dls.test_dl(files, with_labels=True), max_n=2)   # 4. show_results, labelled ...
    assert axs[0].get_title() == f"label: {Path(files[0]).parent.name}"
    axs = learn.show_results(dl=learn.dls.test_dl(files), max_n=2)                 # ... and without labels
    assert axs[0].get_title() == 'label: ?'; plt.close('all')
    with pytest.raises(PxpError, match=r"no validation images .*pass dl=learn.dls.test_dl\(files, with_labels=True\)"): learn.show_results()
    learn.export(tmp_path/'export.pkl')                                            # 5. export, then fastai's load_learner
    l2 = fastai_load_learner(tmp_path/'export.pkl')
    p2, t2 = l2.get_preds(dl=l2.dls.test_dl(files, with_labels=True))
    assert torch.equal(t2, truth) and torch.allclose(p2, preds, atol=1e-5)
    (tmp_path/'loose.png').write_bytes(Path(files[0]).read_bytes())               # a file outside any class folder: named, with the fix
    with pytest.raises(ValueError, match=r"loose.png's folder .* is not one of the model's classes .*put the files in class folders"):
        learn.dls.test_dl([tmp_path/'loose.png'], with_labels=True)

def wandb_records(path, block=32768):
    "The protobuf records of an offline W&B run file (`run-*.wandb`: LevelDB's log format behind a 7-byte ':W&B' header)"
    from wandb.proto import wandb_internal_pb2 as pb
    data, pos, buf = Path(path).read_bytes(), 7, b''
    assert data[:4] == b':W&B', 'not a W&B run file'
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7: pos += left; continue   # a block's tail too short for a header is padding
        _, n, kind = struct.unpack('<IHB', data[pos:pos + 7])
        if kind == 0: pos += left; continue
        chunk, pos = data[pos + 7:pos + 7 + n], pos + 7 + n
        buf = chunk if kind in (1, 2) else buf + chunk   # full, first | middle, last
        if kind in (1, 4):
            r = pb.Record(); r.ParseFromString(buf); yield r

def test_wandb_offline(tiny, tmp_path, monkeypatch):
    pytest.importorskip('wandb')
    kw, *_ = tiny
    for k, v in dict(WANDB_MODE='offline', WANDB_DIR=str(tmp_path), WANDB_SILENT='true', WANDB_PROJECT='pxp-test').items(): monkeypatch.setenv(k, v)
    run = train(wandb=True, **{**kw, 'epochs': 2})
    wruns = list((tmp_path/'wandb').glob('offline-run-*'))
    assert len(wruns) == 1
    recs = list(wandb_records(next(wruns[0].glob('run-*.wandb'))))
    key = lambda i: i.key or '/'.join(i.nested_key)
    config = {key(i): json.loads(i.value_json) for r in recs for i in (r.run.config.update if r.WhichOneof('record_type') == 'run' else
                                                                    r.config.update if r.WhichOneof('record_type') == 'config' else [])}
    assert config['n_segments'] == 100 and config['epochs'] == 2 and config['vocab'][0] == 'arrow'   # the resolved options
    history = [{key(i): json.loads(i.value_json) for i in r.history.item} for r in recs if r.WhichOneof('record_type') == 'history']
    epochs = [h for h in history if 'valid_loss' in h]
    assert [h['epoch'] for h in epochs] == [1, 2] and all({'accuracy', 'kept', 'tau'} <= set(h) for h in epochs)   # per epoch
    assert sum('train_loss' in h for h in history) == 4   # per batch: 2 batches x 2 epochs
    final = next(h for h in history if 'evaluation' in {k.split('/')[0] for k in h})
    assert {'figures/kept_regions/path', 'evaluation/path'} <= set(final)
    summary = {key(i): json.loads(i.value_json) for r in recs if r.WhichOneof('record_type') == 'summary' for i in r.summary.update}
    m = json.loads((run/'metrics.json').read_text())
    assert summary['eval/0.9/accuracy'] == pytest.approx(m['evaluation']['0.9']['accuracy'])
    table = json.loads(next((wruns[0]/'files').rglob('evaluation_*.table.json')).read_text())
    assert [r[0] for r in table['data']] == ['0.8', '0.9', '0.95', '0.99'] and table['columns'][:3] == ['certainty', 'accuracy', 'kept']
    assert list((wruns[0]/'files').rglob('kept_regions_*.png'))

def test_wandb_missing(tmp_path, monkeypatch):
    import builtins
    real = builtins.__import__
    def no_wandb(name, *a, **k):
        if name == 'wandb': raise ImportError("No module named 'wandb'")
        return real(name, *a, **k)
    monkeypatch.setattr(builtins, '__import__', no_wandb)
    with pytest.raises(ValueError, match='pip install wandb'): train(wandb=True, data_path=tmp_path, **TINY)
    assert not (tmp_path/'runs').exists()

def test_fastai_vit_token_removal():
    "A fastai `vision_learner` ViT (timm body + fastai head) is explained by token removal, by default"
    from fastai.vision.learner import create_timm_model
    from pixelperception.explain.moxi import MoXI
    from pixelperception.models.maskers import TokenMasker
    torch.manual_seed(0)
    fvit = create_timm_model('vit_tiny_patch16_224', 3, pretrained=False, img_size=32, patch_size=16, depth=1)[0].eval()
    x = torch.randn(2, 3, 32, 32)
    ex = MoXI(fvit)
    assert isinstance(ex.masker, TokenMasker)
    r = ex.attribute(x, target=torch.tensor([0, 2]))
    assert r.order.shape == (2, 4) and sorted(r.order[0].tolist()) == [0, 1, 2, 3]
    with torch.no_grad():   # all tokens kept = the fastai model's own forward
        assert torch.allclose(TokenMasker()(fvit, x, torch.ones(2, 1, 4, dtype=torch.bool))[:, 0], fvit(x), atol=1e-5)
