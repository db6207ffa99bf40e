"Issue 24: the configuration sits at the bottom; the builders have real, small signatures; functions stay short; `target` is `label_kind`"
import ast, inspect, json
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT/'pixelperception'
# the modules of this part of the redesign: the configuration, the data, the evaluation, the P2P learner and run layers, the maskers
MODULES = [PKG/'config.py', PKG/'core.py', PKG/'models'/'maskers.py', *sorted((PKG/'data').glob('*.py')), *sorted((PKG/'evaluation').glob('*.py')),
           *(PKG/'p2p'/f'{m}.py' for m in ('learner', 'recipes', 'run_callbacks', 'runs', 'train'))]

def long_functions(files, limit=40) -> list:
    "(file, function, lines) for every function or method longer than `limit` lines, decorators and docstring included"
    out = []
    for p in files:
        for n in ast.walk(ast.parse(Path(p).read_text())):
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([n.lineno, *(d.lineno for d in n.decorator_list)])
                if n.end_lineno - start + 1 > limit: out.append((Path(p).name, n.name, n.end_lineno - start + 1))
    return out

def test_the_walk_finds_a_long_function(tmp_path):
    f = tmp_path/'m.py'
    f.write_text('def short():\n    return 1\n\ndef long():\n' + '    x = 1\n'*40 + '    return x\n')
    assert long_functions([f]) == [('m.py', 'long', 42)]

def test_no_function_longer_than_40_lines():
    assert all(p.is_file() for p in MODULES)
    assert long_functions(MODULES) == []

def test_builders_have_real_small_signatures():
    from pixelperception.p2p.train import train
    from pixelperception.p2p.learner import p2p_model, p2p_learner, WandbLogger
    from pixelperception.data.datasets import SuperpixelDL
    for f in (train, p2p_model, p2p_learner, SuperpixelDL, WandbLogger):
        assert '__signature__' not in vars(f), f"{f.__name__} has a generated signature"
        assert len(inspect.signature(f).parameters) <= 20, f.__name__
    assert list(inspect.signature(train).parameters) == ['config', 'cbs', 'overrides']
    assert list(inspect.signature(p2p_model).parameters)[:2] == ['n_classes', 'config']
    assert list(inspect.signature(p2p_learner).parameters)[:3] == ['dls', 'config', 'model']

def test_each_default_is_written_once_in_the_config():
    "No module reads its defaults from a builder's signature any more; p2p_model builds exactly what ModelConfig says"
    from pixelperception.config import ModelConfig
    from pixelperception.p2p.learner import p2p_model
    src = '\n'.join(p.read_text() for p in MODULES)
    assert 'block_default' not in src and 'signature_defaults' not in src
    m = p2p_model(3, size=32)
    c = ModelConfig()
    assert (m.use_cov, m.num_monte_carlo, m.tau_mode, m.estimator, m.dynamic) == (c.use_cov, c.num_monte_carlo, c.tau_mode, c.estimator, c.use_dynamic_threshold)
    m2 = p2p_model(3, ModelConfig(tau_mode='rank'), size=32, use_cov=False)   # a config, and a field changed by name on top
    assert (m2.tau_mode, m2.use_cov) == ('rank', False)
    with pytest.raises(ValueError, match="'use_covv' is not an option of ModelConfig: did you mean 'use_cov'"): p2p_model(3, use_covv=False)

def test_one_precision_table_and_one_check():
    import torch
    from pixelperception import config
    from pixelperception.models import maskers
    from pixelperception.p2p import recipes
    assert not hasattr(recipes, 'PRECISIONS') or recipes.PRECISIONS is config.PRECISIONS
    assert maskers.PRECISIONS is config.PRECISIONS and config.PRECISIONS['bf16'] is torch.bfloat16
    if not torch.cuda.is_available():
        for f in (lambda: maskers.check_precision('fp16', 'cpu'), lambda: config.RunConfig().updated(precision='fp16').check()):
            with pytest.raises(ValueError, match="precision='fp16' needs a CUDA GPU"): f()

def test_train_takes_a_config_or_options():
    from pixelperception.p2p.recipes import recipe_config
    from pixelperception.p2p.train import train
    from pixelperception.p2p import train as tr
    a, given_a = tr._given_config(None, dict(epochs=3, learning_rate=None))
    b, given_b = tr._given_config(recipe_config('cpu'), dict(epochs=3, learning_rate=None))
    assert a == b and given_a == given_b == dict(epochs=3)
    with pytest.raises(TypeError, match='config must be a RunConfig'): train('cifar10')
    with pytest.raises(ValueError, match="'target' is not an option of a training run: did you mean 'label_kind'"): train(target='scene')

def test_old_target_flag_names_label_kind(capsys):
    from pixelperception.cli import main
    assert main(['train', '--target', 'scene']) == 2
    assert capsys.readouterr().err == 'pxp: error: --target is now --label-kind (one name per option in every pxp command): pass --label-kind instead\n'

def test_progress_is_one_name_in_every_command(capsys):
    "`pxp train` says --no-progress as explain and the data builders do; its old --no-show and show= name the new one"
    from pixelperception.cli import main
    from pixelperception.p2p.train import train
    from pixelperception.p2p.runs import run_config
    assert main(['train', '--no-show']) == 2
    assert capsys.readouterr().err == 'pxp: error: --no-show is now --no-progress (one name per option in every pxp command): pass --no-progress instead\n'
    for cmd in (['train'], ['explain'], ['data', 'synthetic']):
        assert main([*cmd, '--help']) == 0
        assert '--no-progress' in capsys.readouterr().out, cmd
    with pytest.raises(ValueError, match="'show' is not an option of a training run: did you mean 'progress'"): train(show=False)
    assert run_config({'show': False}).progress is False   # an old run's config.json reads back

def test_train_help_lists_every_option_with_its_default(capsys):
    from pixelperception.cli import main
    from pixelperception.config import option_fields
    assert main(['train', '--help']) == 0
    out = capsys.readouterr().out
    assert '--label-kind {object,scene}' in out and '--target' not in out
    for k in option_fields(): assert f"--{k.replace('_', '-')}" in out or f"--no-{k.replace('_', '-')}" in out, k

def test_an_old_config_json_with_target_reads_back(tmp_path):
    from pixelperception.p2p.runs import run_config, check_resume
    rc = run_config({'target': 'scene', 'epochs': 3})
    assert rc.data.label_kind == 'scene' and rc.train.epochs == 3
    old = tmp_path/'old-run'; (old/'models').mkdir(parents=True)
    (old/'models'/'checkpoint_0.pth').write_bytes(b'x')
    (old/'config.json').write_text(json.dumps({'target': 'scene', 'dataset': 'synthetic'}))
    with pytest.raises(ValueError, match=r"label_kind='scene' \(now 'object'\)"):   # the old name is compared as the new one
        check_resume({**rc.updated(label_kind='object').flat(), 'resume': str(old)})
