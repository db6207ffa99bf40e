"""The `pxp` command as a user runs it: a subprocess, exit codes, messages, outputs on disk.
Checks of the arguments alone (help texts, refused flags) call the same entry point in this process (`pxp_args`): each
subprocess spends about 3 s importing torch and fastai before it reads an argument."""
import json, os, subprocess, sys
from pathlib import Path
from types import SimpleNamespace
import pytest

def pxp(*args, cwd=None):
    return subprocess.run([sys.executable, '-m', 'pixelperception.cli', *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, 'MPLBACKEND': 'Agg'})

@pytest.fixture
def pxp_args(capsys, monkeypatch):
    "`pxp ARGS` through `cli.main` in this process, for commands that stop at their arguments: what `pxp` returns (exit code, stdout, stderr)"
    from pixelperception.cli import main
    monkeypatch.setenv('COLUMNS', '80')   # the help's width as in a subprocess whose output is captured
    def run(*args):
        capsys.readouterr()
        rc = main(list(map(str, args)))
        out, err = capsys.readouterr()
        return SimpleNamespace(returncode=rc, stdout=out, stderr=err)
    return run

def test_help_lists_commands():
    r = pxp('--help')
    assert r.returncode == 0 and 'pxp data synthetic' in r.stdout

def test_data_lists_its_builders(pxp_args):
    for args in (('data',), ('data', '--help')):
        r = pxp_args(*args)
        assert r.returncode == 0 and 'builders:' in r.stdout and all(f'pxp data {b}' in r.stdout for b in ('synthetic', 'coco10', 'imagenet9', 'bam'))
        assert 'pxp train' not in r.stdout

def test_old_flags_stop_with_the_new_name(tmp_path, pxp_args):
    "One vocabulary: an old flag is one line naming the new one, exit 2, no traceback, nothing written"
    for cmd, old, new in (('explain', '--arch', '--classifier'), ('explain', '--target', '--explain-class'), ('explain', '--size', '--resolution'),
                          ('data synthetic', '--size', '--resolution'), ('data bam', '--size', '--resolution')):
        r = pxp_args(*cmd.split(), tmp_path, old, '1', '--experiment', tmp_path/'runs')
        assert r.returncode == 2 and r.stderr == f"pxp: error: {old} is now {new} (one name per option in every pxp command): pass {new} instead\n", r.stderr
    assert not (tmp_path/'runs').exists()

def test_one_vocabulary_in_the_help(pxp_args):
    helps = {c: ' '.join(pxp_args(*c.split(), '--help').stdout.split()) for c in ('train', 'explain', 'data synthetic', 'data coco10', 'data bam')}
    for c in ('train', 'explain'): assert '--classifier' in helps[c] and '--model-path' in helps[c] and '--resolution' in helps[c] and '--n-segments' in helps[c]
    assert '--precision {auto,fp32,fp16,bf16}' in helps['train'] and '--precision {auto,fp32,fp16,bf16}' in helps['explain']
    assert '(default: 100)' in helps['explain'].split('--n-segments N')[2][:250]   # as train's recipes (usage, then the option's help)
    for c in ('explain', 'data synthetic', 'data coco10', 'data bam'): assert '--no-progress' in helps[c] and '--resolution' in helps[c], c
    assert '--explain-class {label,pred}' in helps['explain'] and '--arch' not in helps['explain'] and '--target' not in helps['explain']

def test_data_synthetic_builds_and_reuses(tmp_path):
    r = pxp('data', 'synthetic', '--out', tmp_path/'syn', '--n-train', 3, '--n-val', 2)
    assert r.returncode == 0, r.stderr
    root = tmp_path/'syn'
    assert len(list((root/'data'/'obj'/'train').rglob('*.png'))) == 30
    assert len(list((root/'data'/'scene'/'val_mask').rglob('*.npy'))) == 20
    assert (root/'preview.png').stat().st_size > 1000
    meta = json.loads((root/'synthetic.json').read_text())
    assert meta['params']['n_train'] == 3 and meta['counts'] == {'train': 30, 'val': 20}
    before = {p: p.stat().st_mtime_ns for p in root.rglob('*') if p.is_file()}
    r2 = pxp('data', 'synthetic', '--out', root, '--n-train', 3, '--n-val', 2)
    assert r2.returncode == 0 and before == {p: p.stat().st_mtime_ns for p in root.rglob('*') if p.is_file()}

def test_user_errors_are_one_line(tmp_path, pxp_args):
    (tmp_path/'full').mkdir(); (tmp_path/'full'/'mine.txt').write_text('keep me')
    r = pxp('data', 'synthetic', '--out', tmp_path/'full', '--n-train', 2, '--n-val', 1)
    assert r.returncode == 2 and 'pxp: error:' in r.stderr and 'Traceback' not in r.stderr
    assert (tmp_path/'full'/'mine.txt').read_text() == 'keep me'
    r = pxp_args('data', 'synthetic', '--out', tmp_path/'x', '--n-train', 0)
    assert r.returncode == 2 and 'n_train must be' in r.stderr
    r = pxp_args('teleport')
    assert r.returncode == 2 and 'unknown command' in r.stderr

def test_data_coco10_on_the_real_slice(tmp_path, shared):
    r = pxp('data', 'coco10', '--coco', shared/'data'/'coco-tiny', '--out', tmp_path/'c10', '--per-class', 6, '--n-train', 3)
    assert r.returncode == 0, r.stderr
    assert len(list((tmp_path/'c10'/'train').rglob('*.png'))) > 0
    assert len(list((tmp_path/'c10'/'mask'/'train').rglob('*.npy'))) == len(list((tmp_path/'c10'/'train').rglob('*.png')))
    r = pxp('data', 'coco10', '--out', tmp_path/'c11')
    assert r.returncode == 2 and '--coco is required' in r.stderr

def test_explain_real_resnet20(tmp_path, shared):
    r = pxp('explain', shared/'data'/'cifar10-sample'/'test', '--model-path', shared/'weights'/'resnet20-cifar10.th',
            '--n-images', 2, '--methods', 'moxi,random', '--curve', 'insertion', '--experiment', tmp_path/'runs', '--no-figures')
    assert r.returncode == 0, r.stderr
    run = Path(r.stdout.strip().splitlines()[-1].split('results: ')[1])
    assert run.parent == tmp_path/'runs' and (run/'metrics.json').exists() and (run/'orders.pt').exists()
    r2 = pxp('explain', tmp_path/'nowhere', '--experiment', tmp_path/'runs')
    assert r2.returncode == 2 and 'Traceback' not in r2.stderr

def test_train_then_evaluate(tmp_path):
    r = pxp('train', '--data-path', tmp_path/'data', '--n-train', 4, '--n-val', 2, '--epochs', 1, '--experiment', tmp_path/'runs', '--no-progress')
    assert r.returncode == 0, r.stderr
    run = Path(r.stdout.strip().splitlines()[-1].split('results: ')[1])
    assert (run/'config.json').exists() and (run/'model.pth').exists() and (run/'metrics.json').exists()
    e = pxp('evaluate', run, '--certainty', '0.9')
    assert e.returncode == 0, e.stderr
    ev = Path(e.stdout.strip().splitlines()[-1].split('results: ')[1])
    assert ev.parent == run and {'metrics.json', 'report.md', 'kept_regions.png', 'fidelity_deletion.png'} <= {p.name for p in ev.iterdir()}
    m = json.loads((ev/'metrics.json').read_text())
    assert set(m['evaluation']['0.9']) >= {'accuracy', 'kept', 'tau', 'mask_precision', 'mask_iou', 'pxap'}
    assert m['fidelity']['deletion']['higher_is_better'] is False and m['fidelity']['insertion']['higher_is_better'] is True
    # a second evaluation gets a new folder; the first is untouched
    e2 = pxp('evaluate', run, '--certainty', '0.9')
    assert e2.returncode == 0 and len([p for p in run.iterdir() if p.name.startswith('evaluate-')]) == 2
    bad = pxp('evaluate', tmp_path, '--certainty', '0.9')
    assert bad.returncode == 2 and 'config.json' in bad.stderr
    bad = pxp('evaluate', run, '--certainty', '1.5')
    assert bad.returncode == 2 and 'Traceback' not in bad.stderr

def test_explain_p2p_run(tmp_path):
    r = pxp('train', '--data-path', tmp_path/'data', '--n-train', 3, '--n-val', 1, '--epochs', 1, '--experiment', tmp_path/'runs', '--no-progress')
    assert r.returncode == 0, r.stderr
    run = Path(r.stdout.strip().splitlines()[-1].split('results: ')[1])
    e = pxp('explain', run, '--n-images', 3)   # a run folder is not an image folder: one line naming the command that takes it
    assert e.returncode == 2 and f"pxp explain-p2p {run}" in e.stderr and 'Traceback' not in e.stderr
    e = pxp('explain-p2p', run, '--n-images', 3, '--methods', 'moxi,random')
    assert e.returncode == 0, e.stderr
    out = Path(e.stdout.strip().splitlines()[-1].split('results: ')[1])
    m = json.loads((out/'metrics.json').read_text())
    assert list(m['methods']) == ['p2p', 'moxi', 'random'] and 0 <= m['methods']['moxi']['overlap'] <= 1   # P2P's own ranking is a method too
    assert all(0 <= v['auc'] <= 1 for v in m['methods'].values()) and '| p2p |' in (out/'report.md').read_text()
    assert 'cost estimate for 3 images' in e.stdout and 'moxi' in e.stdout.split('cost estimate')[1]   # printed before the run
    import torch   # P2P's AUC is the metric code's: recomputed from its saved order on the same images
    from pixelperception.p2p.runs import load_run
    from pixelperception.data.datasets import get_eval_dl
    from pixelperception.models.maskers import GroupMasker
    from pixelperception.evaluation.metrics import ranking_curves
    model, cfg = load_run(run)
    edl = get_eval_dl(cfg['dataset'], cfg['data_path'], cfg['label_kind'], cfg['size'], 3, n_segments=cfg['n_segments'], compactness=cfg['compactness'],
                      seed=cfg['seed'], n_train=cfg['n_train'], n_val=cfg['n_val'], device='cpu', mean=model.mean, std=model.std)
    x, groups = (o.as_subclass(torch.Tensor) for o in edl.one_batch()[:2])
    saved = torch.load(out/'orders.pt', weights_only=False)
    assert torch.equal(saved['groups'], groups)
    c = ranking_curves(model.classifier, x, None, saved['orders']['p2p'], GroupMasker(fill=model.fill, n_groups=m['n_groups']), groups=groups)
    assert abs(c.auc - m['methods']['p2p']['auc']) < 1e-6
    old = pxp('explain-p2p', run, '--delta', '0.9')
    assert old.returncode == 2 and old.stderr == 'pxp: error: --delta is now --certainty (one name per option in every pxp command): pass --certainty instead\n'


def _offline_cifar10(calls):
    "A stand-in for torchvision's CIFAR10 that records how it was called and fails as an offline machine would"
    class CIFAR10:
        def __init__(self, root, train=True, download=False, **kw):
            calls.append(dict(root=Path(root), train=train, download=download))
            raise OSError("offline test: no download")
    return CIFAR10

def test_train_download_reaches_torchvision(tmp_path, monkeypatch, capsys):
    import torchvision.datasets
    from pixelperception.cli import main
    calls = []
    monkeypatch.setattr(torchvision.datasets, 'CIFAR10', _offline_cifar10(calls))
    args = ['train', '--dataset', 'cifar10', '--data-path', tmp_path/'data', '--experiment', tmp_path/'runs', '--epochs', '1']
    assert main([*map(str, args), '--download']) == 2
    assert calls == [dict(root=tmp_path/'data'/'cifar10', train=True, download=True)]
    assert 'offline test: no download' in capsys.readouterr().err
    calls.clear()
    assert main(list(map(str, args))) == 2   # without --download torchvision is never asked, and the message names the flag
    err = capsys.readouterr().err
    assert calls == [] and 'CIFAR-10 files missing' in err and 'pxp train --download' in err
    assert not (tmp_path/'runs').exists() or not any((tmp_path/'runs').iterdir())   # no run folder for a run that never started

def test_train_dataset_choices_come_from_the_registry(pxp_args):
    from pixelperception.data.datasets import list_datasets
    r = pxp_args('train', '--help')
    assert r.returncode == 0 and '{' + ','.join(list_datasets()) + '}' in r.stdout and '--download' in r.stdout
    r = pxp_args('train', '--dataset', 'mnist')
    assert r.returncode == 2 and "invalid choice: 'mnist'" in r.stderr
