import importlib, os, sys
from contextlib import contextmanager
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent/'shared'
os.environ.setdefault('MPLBACKEND', 'Agg')

@pytest.fixture
def shared():
    "The shared/ folder beside the checkout, or skip"
    if not SHARED.exists(): pytest.skip(f"{SHARED} not found: real-data tests need the shared/ folder beside the checkout")
    return SHARED

@contextmanager
def bench_modules(*names):
    "Scripts of benchmarks/ imported as modules (they import their siblings, e.g. _machine), for the tests of their choices"
    sys.path.insert(0, str(ROOT/'benchmarks'))
    try: yield tuple(importlib.import_module(n) for n in names)
    finally: sys.path.remove(str(ROOT/'benchmarks'))
