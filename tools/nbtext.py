#!/usr/bin/env python
"""Round-trip notebooks through a plain-text form, for editing notebooks in a text editor or by script.

    python tools/nbtext.py dump nbs/10_data.superpixels.ipynb > /tmp/sp.txt   # notebook -> text
    python tools/nbtext.py build /tmp/sp.txt nbs/10_data.superpixels.ipynb     # text -> notebook (outputs dropped)

Text form: cells start with a line `##CELL code` or `##CELL md`; everything up to the next marker is the cell source.
The notebook stays the source of truth: run `nbdev-export` and `nbdev-clean` after `build`."""
import json, sys, re
from pathlib import Path

MARK = re.compile(r'^##CELL (code|md)\s*$')

def dump(nb_path):
    nb = json.loads(Path(nb_path).read_text())
    out = []
    for c in nb['cells']:
        kind = 'md' if c['cell_type'] == 'markdown' else 'code'
        src = ''.join(c['source'])
        out.append(f'##CELL {kind}\n{src}\n')
    return ''.join(out)

def build(txt):
    cells, kind, buf = [], None, []
    def flush():
        if kind is None: return
        src = '\n'.join(buf).strip('\n')
        lines = [l + '\n' for l in src.split('\n')]
        if lines: lines[-1] = lines[-1][:-1]
        cell = dict(cell_type='markdown' if kind == 'md' else 'code', metadata={}, source=lines)
        if kind == 'code': cell.update(execution_count=None, outputs=[])
        cells.append(cell)
    for line in txt.split('\n'):
        m = MARK.match(line)
        if m: flush(); kind, buf = m.group(1), []
        else: buf.append(line)
    flush()
    return dict(cells=cells, metadata=dict(kernelspec=dict(display_name='python3', language='python', name='python3')),
                nbformat=4, nbformat_minor=5)

if __name__ == '__main__':
    cmd, *args = sys.argv[1:]
    if cmd == 'dump': sys.stdout.write(dump(args[0]))
    elif cmd == 'build':
        Path(args[1]).write_text(json.dumps(build(Path(args[0]).read_text()), indent=1, ensure_ascii=False) + '\n')
    else: sys.exit(__doc__)
