#!/usr/bin/env python
"""Write README.md from nbs/index.ipynb (nbdev-readme needs Quarto; this needs nothing).

Markdown cells are copied as they are; code cells become ```python blocks (without `#|` directives); cells
flagged `#| hide` are left out, and so are cells whose code the docs hide (`#| echo: false`: e.g. code drawing a figure)."""
import json
from pathlib import Path

root = Path(__file__).resolve().parents[1]

def render(nb_path):
    nb = json.loads(Path(nb_path).read_text())
    parts = []
    for c in nb['cells']:
        src = ''.join(c['source']).strip('\n')
        lines = src.split('\n')
        if any(l.strip().replace(' ', '') in ('#|hide', '#|include:false', '#|echo:false') for l in lines): continue
        if c['cell_type'] == 'markdown': parts.append(src)
        elif c['cell_type'] == 'code':
            code = '\n'.join(l for l in lines if not l.startswith('#|')).strip('\n')
            if code: parts.append(f"```python\n{code}\n```")
    return "<!-- generated from nbs/index.ipynb by tools/make_readme.py: edit the notebook, not this file -->\n\n" + '\n\n'.join(parts) + '\n'

if __name__ == '__main__':
    txt = render(root/'nbs'/'index.ipynb')
    out = root/'README.md'
    if not out.exists() or out.read_text() != txt: out.write_text(txt)
