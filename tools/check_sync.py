#!/usr/bin/env python
"""Fail if `nbdev-export`, `nbdev-clean` or the README generator would change the tree.

Hashes every file under nbs/ and pixelperception/ plus README.md, runs the three generators, hashes again and
lists what changed. Works in a git checkout with local changes and outside git alike."""
import hashlib, subprocess, sys
from pathlib import Path

root = Path(__file__).resolve().parents[1]
SKIP = ('_proc', '_docs', '.ipynb_checkpoints', '__pycache__', '.quarto')
NB_OUTPUTS = ('data', 'runs')   # folders the notebooks write under nbs/ (not to be confused with the package's data/ subpackage)

def snapshot():
    files = [root/'README.md'] + [p for d in ('nbs', 'pixelperception') for p in (root/d).rglob('*')
                                  if p.is_file() and not any(s in p.parts for s in SKIP)
                                  and not (d == 'nbs' and any(s in p.relative_to(root/d).parts for s in NB_OUTPUTS))]
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest() for p in files if p.exists()}

before = snapshot()
for cmd in (['nbdev-export'], ['nbdev-clean'], [sys.executable, str(root/'tools'/'make_readme.py')]):
    subprocess.run(cmd, cwd=root, check=True)
after = snapshot()
changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
if changed:
    print("These files change when nbdev-export / nbdev-clean / tools/make_readme.py run:\n  " + "\n  ".join(changed))
    print("Run `nbdev-export && nbdev-clean && python tools/make_readme.py` and commit the result.")
    sys.exit(1)
print(f"in sync: nbdev-export, nbdev-clean and the README generator change nothing ({len(after)} files checked)")
