"P2P training runs end to end: a tiny `train` on a tiny built-in benchmark, the run folder, no overwriting, bad input."
import json
from pathlib import Path
import pytest, torch
from pixelperception.p2p.train import train
from pixelperception.p2p.recipes import parse_deltas
from pixelperception.p2p.runs import evaluate_run, load_run
from pixelperception.p2p.evaluate import evaluate_p2p
from pixelperception.data.datasets import get_eval_dl
from pixelperception.p2p.run_callbacks import eval_precision

TINY = dict(n_train=4, n_val=2, resolution=32, batch_size=20, epochs=1, validate_per_epoch=1, progress=False)

@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp('p2p')
    kw = dict(TINY, data_path=root/'data', experiment=root/'runs')
    return kw, train(**kw)

def test_run_folder(tiny):
    kw, run = tiny
    assert run.parent == Path(kw['experiment']) and run.name.startswith('train-')
    names = {p.name for p in run.iterdir()}
    assert {'config.json', 'metrics.json', 'report.md', 'model.pth', 'results.png', 'kept_vs_tau.png', 'history.png'} <= names
    assert not [n for n in names if n.endswith('.tmp')]
    cfg = json.loads((run/'config.json').read_text())
    assert cfg['epochs'] == 1 and cfg['resolution'] == 32 and cfg['n_classes'] == 10 and cfg['deltas'] == [0.8, 0.9, 0.95, 0.99]
    m = json.loads((run/'metrics.json').read_text())
    for d in ('0.8', '0.9', '0.95', '0.99'):
        r = m['evaluation'][d]
        assert 0 <= r['accuracy'] <= 1 and 0 <= r['kept'] <= 1 and 0.05 <= r['tau'] <= 1
        assert 0 <= r['mask_precision'] <= 1 and 0 <= r['mask_iou'] <= 1 and r['n_images'] == 20
    p = m['evaluation']['passes']
    assert 0 < p['ours'] <= p['reference']
    assert len(m['history']) == 1

def test_model_reloads_and_reproduces_metrics(tiny):
    kw, run = tiny
    model, cfg = load_run(run)
    m = json.loads((run/'metrics.json').read_text())
    edl = get_eval_dl(data_path=kw['data_path'], size=32, bs=20, n_train=4, n_val=2)
    with eval_precision(model, json.loads((run/'config.json').read_text())['precision']): res = evaluate_p2p(model, edl, [0.9])   # as train evaluated
    assert res['0.9']['accuracy'] == pytest.approx(m['evaluation']['0.9']['accuracy'])
    assert res['0.9']['kept'] == pytest.approx(m['evaluation']['0.9']['kept'])

def test_never_overwrites(tiny):
    kw, run = tiny
    before = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
    ev = evaluate_run(run, certainty='0.9')
    ev2 = evaluate_run(run, certainty='0.9')
    assert ev.parent == run and ev != ev2 and (ev/'metrics.json').exists()
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir() if p.name in before} == before
    run2 = train(**kw)
    assert run2 != run and run2.parent == run.parent
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir() if p.name in before} == before

@pytest.mark.parametrize('bad, msg', [
    (dict(certainty='0.9,1.5'), '(0, 1]'), (dict(certainty='0'), '(0, 1]'), (dict(certainty='very'), 'comma-separated'),
    (dict(reg_threshold=1.0), 'reg_threshold must be a finite number >= 0 and < 1'), (dict(reg_threshold=-0.1), 'reg_threshold'),
    (dict(num_dims=0), 'num_dims must be a whole number >= 1'), (dict(classifier='vit_tiny', resolution=40), 'multiple of 16'),
    (dict(model_path='/nonexistent/weights.pth'), 'is not a file'), (dict(selector='unet'), 'unknown selector'),
    (dict(classifier='vgg'), 'unknown classifier'), (dict(dataset='mnist'), 'unknown dataset'),
    (dict(optimizer='lamb'), 'unknown optimizer'), (dict(reg_variant='l2'), "unknown reg_variant 'l2': choose one of kl, l1")])
def test_bad_input(tmp_path, bad, msg):
    kw = dict(TINY, data_path=tmp_path/'data', experiment=tmp_path/'runs')
    kw.update(bad)
    with pytest.raises((ValueError, FileNotFoundError), match=None) as e: train(**kw)
    assert msg in str(e.value)
    assert not (tmp_path/'runs').exists()      # checked before any folder is made

def test_wrong_class_count(tmp_path):
    from pixelperception.p2p.learner import p2p_learner
    from pixelperception.data.datasets import get_dls
    from pixelperception.models.zoo import create_classifier
    dls = get_dls(data_path=tmp_path/'data', n_train=2, n_val=1, size=32, bs=10)
    with pytest.raises(ValueError, match='outputs 3 classes but the data has 10'):
        p2p_learner(dls, classifier=create_classifier('small_cnn', 3))

def test_missing_run(tmp_path):
    with pytest.raises(FileNotFoundError, match='no config.json'): load_run(tmp_path)
    assert parse_deltas('0.8,0.9') == [0.8, 0.9]

# ---------------------------------------------------------------- one typed config per run
def test_config_json_reads_back_into_the_run_config(tiny):
    from pixelperception.config import RunConfig, option_fields
    from pixelperception.p2p.runs import run_config
    kw, run = tiny
    cfg = json.loads((run/'config.json').read_text())
    rc = run_config(cfg)
    assert isinstance(rc, RunConfig) and rc.train.epochs == 1 and rc.data.resolution == 32 and rc.model.tau_mode == 'rank'
    assert rc.flat() == {k: cfg[k] for k in option_fields()}          # every option is in config.json under its one name
    assert rc.threads == torch.get_num_threads() and rc.precision in ('fp32', 'bf16')   # what ran: torch's thread count, not the load's

def test_an_old_config_json_still_loads(tiny, tmp_path):
    import shutil
    kw, run = tiny
    old = tmp_path/'old-run'; shutil.copytree(run, old)
    cfg = json.loads((old/'config.json').read_text())
    for k in ('min_tau', 'rank_scale', 'warmup', 'threads', 'precision'): cfg.pop(k)   # options older runs did not record
    cfg['an_option_long_gone'] = 3                                                       # and one this version does not know
    (old/'config.json').write_text(json.dumps(cfg))
    model, _ = load_run(old)
    ref, _ = load_run(run)
    assert model.min_tau == ref.min_tau == 0.05 and model.tau_mode == 'rank'
    x, g = torch.rand(2, 3, 32, 32), torch.randint(0, 50, (2, 32, 32))
    with torch.no_grad(): assert torch.equal(model(x, g).logits, ref(x, g).logits)

def test_threads_is_an_explicit_option(tmp_path):
    before = torch.get_num_threads()
    run = train(threads=1, data_path=tmp_path/'data', experiment=tmp_path/'runs', **{**TINY, 'classifier_epochs': 0})
    assert json.loads((run/'config.json').read_text())['threads'] == 1 and torch.get_num_threads() == before
    with pytest.raises(ValueError, match='threads must be a whole number >= 1'): train(threads=0, data_path=tmp_path/'data', **TINY)
