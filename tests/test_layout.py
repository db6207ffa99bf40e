"The package's layout: imports run down the notebooks' order (tools/check_layers.py), with no circle"
import importlib.util, json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location('check_layers', ROOT/'tools'/'check_layers.py')
cl = importlib.util.module_from_spec(spec); spec.loader.exec_module(cl)

def test_the_package_has_no_circle_and_no_upward_import():
    graph, order = cl.import_graph(ROOT/'pixelperception'), cl.notebook_order(ROOT/'nbs')
    assert cl.violations(graph, order) == []
    assert cl.private_imports(ROOT/'pixelperception') == []
    assert {'data.datasets', 'models.zoo', 'p2p.train', 'explain.run', 'evaluation.metrics'} <= set(graph)   # the subpackages are seen
    assert 'p2p.model' in graph['p2p.learner'] and 'files' in graph['data.superpixels']

def _nb(path, mod): path.write_text(json.dumps({'cells': [{'cell_type': 'code', 'source': [f'#| default_exp {mod}']}]}))

def test_the_check_finds_an_upward_import_a_deferred_one_and_a_circle(tmp_path):
    nbs, pkg = tmp_path/'nbs', tmp_path/'pixelperception'
    (pkg/'data').mkdir(parents=True); nbs.mkdir()
    for nb, mod in (('00_files', 'files'), ('10_data.a', 'data.a'), ('11_data.b', 'data.b'), ('20_top', 'top')): _nb(nbs/f'{nb}.ipynb', mod)
    (pkg/'files.py').write_text('from .data.a import x\n')                          # up two layers
    (pkg/'data'/'a.py').write_text('from .b import y\nx = 1\n')                    # a -> b: b comes later
    (pkg/'data'/'b.py').write_text('def f():\n    from pixelperception.data import a\ny = 2\n')   # deferred, and closes a circle
    (pkg/'top.py').write_text("import importlib\nm = importlib.import_module('pixelperception.files')\n")
    bad = cl.violations(cl.import_graph(pkg), cl.notebook_order(nbs))
    assert 'files imports data.a, which comes later in the notebooks\' order (an arrow running back up)' in bad
    assert any(b.startswith('data.a imports data.b') for b in bad)
    assert 'import circle: data.a <-> data.b' in bad
    assert cl.import_graph(pkg)['top'] == {'files'}                                # a module named in a string counts
    _nb(nbs/'30_data.c.ipynb', 'data.c'); (pkg/'data'/'c.py').write_text('')
    assert 'the notebooks of data/ are not consecutive: a folder is one layer of the stack' in cl.violations(cl.import_graph(pkg), cl.notebook_order(nbs))
    (pkg/'top.py').write_text("from .data.b import _helper\n")
    assert cl.private_imports(pkg) == ['top imports _helper from data.b: a private name crossing a module boundary']
    (pkg/'extra.py').write_text('')
    assert 'extra: no notebook exports it (`#| default_exp extra`)' in cl.violations(cl.import_graph(pkg), cl.notebook_order(nbs))
