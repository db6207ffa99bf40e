"""Image classifiers that explain themselves: P2P (interpretable by design) and MoXI (game-theoretic explanations), on fastai.

The public API, importable from the package: `from pixelperception import MoXI, PatchMasker, P2P, load_run`.
Names load their module on first use, so `import pixelperception` (and `pxp --help`) stays fast. This file is written
by hand, not exported by nbdev (nbdev-export only keeps `__version__` in it); each name is documented in its notebook."""
__version__ = "0.0.1"

import importlib as _importlib, warnings as _warnings

# fastai's layers use `torch.jit.script` at import, which torch 2.14 deprecates with a FutureWarning on every run; it is not
# something a user of this library can act on, so it is silenced (that one message only)
_warnings.filterwarnings('ignore', message=r'`torch\.jit\.script` is deprecated', category=FutureWarning)

_API = {   # module -> its public names
    'explain.moxi': ('Ranking', 'Explainer', 'MoXI', 'SelfShapley', 'SampledShapley', 'RandomOrder', 'feature_groups'),
    'models.maskers': ('PatchMasker', 'GroupMasker', 'TokenMasker', 'as_classifier'),
    'explain.cam': ('GradCAM', 'AttentionRollout'),
    'explain.interop': ('quantus_explain_func',),
    'p2p.model': ('P2P',),
    'p2p.runs': ('load_run', 'evaluate_run', 'load_learner'),
    'models.zoo': ('create_classifier', 'create_selector', 'list_classifiers', 'list_selectors', 'register_classifier',
            'register_selector', 'normalization', 'input_normalization'),
    'p2p.recipes': ('list_recipes',),
    'data.datasets': ('get_dls', 'get_eval_dl'),
    'data.superpixels': ('slic_groups',),
    'evaluation.metrics': ('ranking_curves',),
    'explain.run': ('ExplainConfig', 'register_explainer', 'list_explainers', 'create_explainer'),
}
_WHERE = {name: mod for mod, names in _API.items() for name in names}
__all__ = list(_WHERE)

def __getattr__(name):
    if name not in _WHERE: raise AttributeError(f"module 'pixelperception' has no attribute {name!r}")
    obj = getattr(_importlib.import_module(f'pixelperception.{_WHERE[name]}'), name)
    globals()[name] = obj
    return obj

def __dir__(): return sorted(set(globals()) | set(__all__))
