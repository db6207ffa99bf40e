"Classifiers and selectors by name (the zoo), recipes (`paper`, `cpu`), CIFAR-10 in both layouts, `pxp evaluate --data-path`."
import contextlib, io, json
from pathlib import Path
import pytest, torch
from pixelperception.models.zoo import create_classifier, create_selector, list_classifiers, list_selectors, normalization, register_classifier, classifier_spec, _CLASSIFIERS, CIFAR10_MEAN, CIFAR10_STD, small_cnn
from pixelperception.p2p.recipes import recipe_options, list_recipes, RECIPE_OPTIONS
from pixelperception.data.datasets import CIFAR10_CLASSES, IMAGENET_MEAN, IMAGENET_STD, cifar10_items
from pixelperception.testing import make_imagefolder, make_cifar10
from pixelperception.p2p.train import train
from pixelperception.p2p.runs import load_run
from pixelperception.cli import main

def _cli(argv):
    "Run `pxp` in-process: (exit code, stdout, stderr)"
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err): rc = main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()

# ---------------------------------------------------------------- the zoo
def test_registry_lists_and_builds_every_cifar_resnet():
    names = list_classifiers()
    for d in (20, 32, 44, 56, 110):
        assert f'resnet{d}' in names and f'resnet{d}' in list_selectors()
        m = create_classifier(f'resnet{d}', 7)
        assert m(torch.randn(2, 3, 32, 32)).shape == (2, 7)
        assert sum(isinstance(l, torch.nn.Conv2d) for l in m.modules()) + 1 == d
    assert {'resnet18', 'resnet34', 'resnet50', 'small_cnn', 'vit_tiny', 'vit_base'} <= set(names)

def test_timm_by_name_with_its_normalisation():
    assert create_classifier('timm/resnet10t', 4, size=32)(torch.randn(2, 3, 32, 32)).shape == (2, 4)
    assert normalization('timm/vit_small_patch16_224') == ((0.5,)*3, (0.5,)*3)    # timm's pretrained configuration
    assert normalization('resnet20') == (IMAGENET_MEAN, IMAGENET_STD)             # what the shared checkpoint was trained with
    with pytest.raises(ValueError, match="unknown classifier 'vgg'.*resnet20"): classifier_spec('vgg')

def test_register_your_own():
    @register_classifier('test_mlp', mean=CIFAR10_MEAN, std=CIFAR10_STD, size=32)
    def test_mlp(n_classes, size, pretrained=False):
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3*size*size, n_classes))
    try:
        assert 'test_mlp' in list_classifiers() and normalization('test_mlp') == (CIFAR10_MEAN, CIFAR10_STD)
        assert create_classifier('test_mlp', 3)(torch.randn(2, 3, 32, 32)).shape == (2, 3)
        with pytest.raises(ValueError, match='already registered'): register_classifier('test_mlp')(small_cnn)   # a name is taken once
        register_classifier('test_mlp', size=32)(test_mlp)   # registered again by the same function (a re-run cell): replaced, as for datasets and explainers
    finally: del _CLASSIFIERS['test_mlp']

def _checkpoint(path, depth=20, n_classes=10, seed=0):
    "A CIFAR ResNet checkpoint in the shared format: {'state_dict': {'module.<key>': tensor}}"
    torch.manual_seed(seed)
    m = create_classifier(f'resnet{depth}', n_classes)
    torch.save({'best_prec1': 0., 'state_dict': {f'module.{k}': v for k, v in m.state_dict().items()}}, path)
    return m

def test_selector_trunk_starts_from_the_classifier_checkpoint(tmp_path):
    m = _checkpoint(tmp_path/'w.th')
    s = create_selector('resnet20', 4, model_path=tmp_path/'w.th')
    assert torch.equal(s.layer3[2].conv2.weight, m.layer3[2].conv2.weight)
    assert s(torch.randn(2, 3, 32, 32), torch.tensor([0.2, 0.7])).shape == (2, 4, 32, 32)

# ---------------------------------------------------------------- recipes
def test_paper_recipe_is_the_seed_configuration():
    p = recipe_options('paper', 'cifar10', 'resnet20')
    seed = dict(tau_mode='input', estimator='pathwise', straight_through=False, final_temp=0.5, num_monte_carlo=1,
                reg_variant='kl', reg_weight=10., reg_anneal=True, use_cov=True, num_dims=4, cov_weight=0.01, optimizer='adam',
                learning_rate=1e-4, lr_schedule='constant', weight_decay=0., classifier_epochs=0, recalibrate=False, epochs=100)
    assert {k: p[k] for k in seed} == seed
    assert set(list_recipes()) >= {'paper', 'cpu'} and set(p) == set(RECIPE_OPTIONS)

TINY = dict(n_train=4, n_val=2, resolution=32, batch_size=20, epochs=1, validate_per_epoch=1, progress=False)

def test_a_paper_run_records_the_seed_values_and_the_overrides(tmp_path):
    run = train(recipe='paper', data_path=tmp_path/'data', experiment=tmp_path/'runs', **TINY)
    cfg = json.loads((run/'config.json').read_text())
    assert cfg['recipe'] == 'paper'
    assert cfg['overrides'] == dict(resolution=32, batch_size=20, epochs=1, validate_per_epoch=1)
    assert (cfg['tau_mode'], cfg['estimator'], cfg['num_monte_carlo'], cfg['reg_variant'], cfg['reg_weight'], cfg['use_cov'],
            cfg['cov_weight'], cfg['learning_rate'], cfg['lr_schedule'], cfg['classifier_epochs'], cfg['recalibrate']) == \
           ('input', 'pathwise', 1, 'kl', 10., True, 0.01, 1e-4, 'constant', 0, False)
    m = json.loads((run/'metrics.json').read_text())
    assert m['classifier_history'] == [] and all(p['score'] == 0 for p in m['penalties'])   # no pre-phase, no score function
    model, _ = load_run(run)
    assert model.tau_mode == 'input' and model.use_cov and model.estimator == 'pathwise'

def test_options_override_the_recipe(tmp_path):
    run = train(recipe='cpu', data_path=tmp_path/'data', experiment=tmp_path/'runs', classifier_epochs=0, tau_power=1., **TINY)
    cfg = json.loads((run/'config.json').read_text())
    assert cfg['recipe'] == 'cpu' and cfg['tau_power'] == 1. and cfg['classifier_epochs'] == 0
    assert cfg['overrides']['tau_power'] == 1. and 'tau_mode' not in cfg['overrides'] and cfg['tau_mode'] == 'rank'
    rc, _, err = _cli(['train', '--recipe', 'fast', '--data-path', tmp_path/'data', '--experiment', tmp_path/'runs2'])
    assert rc == 2 and "invalid choice: 'fast' (choose from 'cpu', 'paper')" in err and not (tmp_path/'runs2').exists()   # the CLI lists the registry's recipes
    with pytest.raises(ValueError, match='unknown recipe .fast.: choose one of cpu, paper'):   # the Python API says the same
        train(recipe='fast', data_path=tmp_path/'data', experiment=tmp_path/'runs2', **TINY)
    assert not (tmp_path/'runs2').exists()

# ---------------------------------------------------------------- CIFAR-10, both layouts, and evaluate --data-path
def _cifar_folder(root, n_train=3, n_test=2, seed=0):
    make_imagefolder(root/'cifar10'/'train', classes=CIFAR10_CLASSES, n=n_train, size=32, ext='.jpg', seed=seed)
    make_imagefolder(root/'cifar10'/'test', classes=CIFAR10_CLASSES, n=n_test, size=32, ext='.jpg', seed=seed + 1)
    return root

def test_cifar10_both_layouts(tmp_path):
    make_cifar10(tmp_path/'pk'/'cifar10', n_train=3, n_test=2)
    _cifar_folder(tmp_path/'if')
    a, b = cifar10_items(tmp_path/'pk'/'cifar10', train=False), cifar10_items(tmp_path/'if'/'cifar10', train=False)
    assert list(a.vocab) == list(b.vocab) == list(CIFAR10_CLASSES)
    assert a.image(0).shape == b.image(0).shape == (32, 32, 3) and len(b) == 20
    with pytest.raises(FileNotFoundError, match='ImageFolder layout'): cifar10_items(tmp_path/'none')

@pytest.mark.parametrize('layout', ['pickles', 'folder'])
def test_pxp_train_cifar10_resnet20_model_path(tmp_path, layout):
    if layout == 'pickles': make_cifar10(tmp_path/'data'/'cifar10', n_train=3, n_test=2)
    else: _cifar_folder(tmp_path/'data')
    _checkpoint(tmp_path/'w.th')
    rc, out, err = _cli(['train', '--dataset', 'cifar10', '--data-path', tmp_path/'data', '--classifier', 'resnet20',
                         '--model-path', tmp_path/'w.th', '--epochs', '1', '--experiment', tmp_path/'runs', '--no-progress',
                         '--cache-dir', tmp_path/'cache'])
    assert rc == 0, err
    run = Path(out.strip().splitlines()[-1].removeprefix('results: '))
    cfg = json.loads((run/'config.json').read_text())
    assert (cfg['classifier'], cfg['selector'], cfg['recipe']) == ('resnet20', 'resnet20', 'cpu')
    assert cfg['mean'] == list(IMAGENET_MEAN) and cfg['vocab'] == list(CIFAR10_CLASSES) and cfg['size'] == 32
    n_test = len(cifar10_items(tmp_path/'data'/'cifar10', train=False))
    assert cfg['classifier_epochs'] == 0 and cfg['n_valid_images'] == n_test > 0   # the pretrained recipe; evaluated on the test split
    assert set(json.loads((run/'metrics.json').read_text())['evaluation']) >= {'0.8', '0.9', '0.95', '0.99'}

def test_evaluate_on_another_copy(tmp_path):
    _cifar_folder(tmp_path/'a'); _cifar_folder(tmp_path/'b', n_test=3, seed=7)
    _checkpoint(tmp_path/'w.th')
    run = train(dataset='cifar10', data_path=tmp_path/'a', classifier='resnet20', model_path=str(tmp_path/'w.th'), epochs=1,
                experiment=tmp_path/'runs', progress=False, cache_dir=tmp_path/'cache')
    rc, out, err = _cli(['evaluate', run, '--data-path', tmp_path/'b', '--certainty', '0.8,0.9', '--cache-dir', tmp_path/'cache'])
    assert rc == 0, err
    ev = Path(out.strip().splitlines()[-1].removeprefix('results: '))
    assert ev.parent == run and ev.name.startswith('evaluate-')
    m = json.loads((ev/'metrics.json').read_text())
    assert set(m['evaluation']) == {'0.8', '0.9', 'passes'} and m['evaluation']['0.9']['n_images'] == 30   # the other copy's 30 test images
    assert m['data_path'] == str(tmp_path/'b')
    make_imagefolder(tmp_path/'c'/'cifar10'/'test', classes=('cat', 'dog'), n=1, size=32)
    rc, _, err = _cli(['evaluate', run, '--data-path', tmp_path/'c'])
    assert rc == 2 and 'class folders' in err and err.count('\n') == 1

def test_shared_resnet20_by_name_on_real_cifar10(shared, tmp_path):
    from pixelperception.data.datasets import get_eval_dl
    w = shared/'weights'/'resnet20-cifar10.th'
    m = create_classifier('resnet20', 10, model_path=w).eval()
    dl = get_eval_dl('cifar10', shared/'data', size=32, bs=500, device='cpu', cache_dir=tmp_path/'cache', mean=normalization('resnet20')[0],
                     std=normalization('resnet20')[1])
    with torch.no_grad(): acc = torch.cat([(m(b[0].as_subclass(torch.Tensor)).argmax(-1) == b[2]).float() for b in dl]).mean().item()
    assert len(dl.dataset) == 1000 and acc == pytest.approx(0.804, abs=0.01)   # the checkpoint README's figure for these JPEGs
