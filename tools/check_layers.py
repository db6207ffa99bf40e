#!/usr/bin/env python
"""Fail if an import runs back up the stack or closes a circle.

The notebooks' order is the architecture: `nbs/NN_pkg.module.ipynb` exports `pixelperception/pkg/module.py`, and a
module may import only modules whose notebooks come before its own (foundations, then data, models, evaluation, p2p,
explain, then the widgets and the CLI). Every import counts, also those inside functions (deferred imports hide an
arrow, they do not remove it), and so does a module named in a string (`importlib.import_module('pixelperception.x')`).
The package's `__init__` (the lazy public names) and nbdev's `_modidx` are not part of the stack. No module imports
another's private (`_name`) names.

    python tools/check_layers.py          # prints the stack with each module's imports; exit 1 on a violation"""
import ast, json, re, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = 'pixelperception'

def notebook_order(nbs:Path) -> dict:
    "module -> its position in the notebooks' order (`#| default_exp` of each top-level notebook, sorted by file name)"
    order = {}
    for nb in sorted(nbs.glob('*.ipynb')):
        for c in json.loads(nb.read_text())['cells']:
            m = re.search(r'^#\|\s*default_exp\s+([\w.]+)', ''.join(c['source']), re.M)
            if m: order[m.group(1)] = len(order); break
    return order

def _modules(pkg:Path) -> dict:
    "dotted module name (below the package) -> file, leaving out `__init__` and `_modidx`"
    mods = {}
    for p in sorted(pkg.rglob('*.py')):
        name = '.'.join(p.relative_to(pkg).with_suffix('').parts)
        if name.split('.')[-1] in ('__init__', '_modidx'): continue
        mods[name] = p
    return mods

def _api(pkg:Path) -> dict:
    "public name -> module, from the package `__init__`'s `_API` table (names imported as `from pixelperception import X`)"
    init = pkg/'__init__.py'
    if not init.exists(): return {}
    for n in ast.parse(init.read_text()).body:
        if isinstance(n, ast.Assign) and any(getattr(t, 'id', None) == '_API' for t in n.targets):
            return {name: mod for mod, names in ast.literal_eval(n.value).items() for name in names}
    return {}

def import_graph(pkg:Path) -> dict:
    "module -> set of package modules it imports (any import statement anywhere in the file, and module names in strings)"
    mods, api = _modules(pkg), _api(pkg)
    def resolve(dotted, names=()):
        "the package modules that `from <dotted> import <names>` (or `import <dotted>`) reaches"
        if dotted in mods: return {dotted}
        out = {f'{dotted}.{n}' if dotted else n for n in names} & set(mods)
        if not dotted: out |= {api[n] for n in names if n in api}
        return out
    graph = {}
    for name, path in mods.items():
        here, deps = name.split('.')[:-1], set()
        for n in ast.walk(ast.parse(path.read_text())):
            if isinstance(n, ast.ImportFrom):
                if n.level: base = here[:len(here) - (n.level - 1)] + (n.module.split('.') if n.module else [])
                elif n.module and (n.module == PKG or n.module.startswith(PKG + '.')): base = n.module.split('.')[1:]
                else: continue
                deps |= resolve('.'.join(base), [a.name for a in n.names])
            elif isinstance(n, ast.Import):
                deps |= {m for a in n.names if a.name.startswith(PKG + '.') for m in resolve(a.name[len(PKG) + 1:])}
            elif isinstance(n, ast.Constant) and isinstance(n.value, str):
                deps |= {m for s in re.findall(rf'\b{PKG}\.([\w.]+)', n.value) for m in [s, s.rsplit('.', 1)[0]] if m in mods}
        graph[name] = deps - {name}
    return graph

def private_imports(pkg:Path) -> list:
    "`module imports _name from other`: a private name used across a module boundary (make it public, or move the code)"
    out = []
    for name, path in _modules(pkg).items():
        here = name.split('.')[:-1]
        for n in ast.walk(ast.parse(path.read_text())):
            if not isinstance(n, ast.ImportFrom): continue
            if n.level: src = '.'.join(here[:len(here) - (n.level - 1)] + (n.module.split('.') if n.module else []))
            elif n.module and n.module.startswith(PKG + '.'): src = n.module[len(PKG) + 1:]
            else: continue
            out += [f"{name} imports {a.name} from {src}: a private name crossing a module boundary" for a in n.names if a.name.startswith('_')]
    return out

def circles(graph:dict) -> list:
    "the strongly connected components with more than one module (Tarjan)"
    index, low, stack, on, out, i = {}, {}, [], set(), [], [0]
    def visit(v):
        index[v] = low[v] = i[0]; i[0] += 1; stack.append(v); on.add(v)
        for w in graph.get(v, ()):
            if w not in index: visit(w); low[v] = min(low[v], low[w])
            elif w in on: low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v: break
            if len(comp) > 1: out.append(sorted(comp))
    for v in sorted(graph):
        if v not in index: visit(v)
    return out

def violations(graph:dict, order:dict) -> list:
    "One line per problem: a module without a notebook, an import of a later notebook's module, a circle, a folder split in the order"
    bad = [f"{m}: no notebook exports it (`#| default_exp {m}`)" for m in sorted(graph) if m not in order]
    bad += [f"{m} imports {d}, which comes later in the notebooks' order (an arrow running back up)"
            for m in sorted(graph) for d in sorted(graph[m]) if m in order and d in order and order[d] > order[m]]
    bad += [f"import circle: {' <-> '.join(c)}" for c in circles(graph)]
    seq = [m.split('.')[0] if '.' in m else None for m in sorted(order, key=order.get)]
    for p in {s for s in seq if s}:
        idx = [k for k, s in enumerate(seq) if s == p]
        if idx[-1] - idx[0] + 1 != len(idx): bad.append(f"the notebooks of {p}/ are not consecutive: a folder is one layer of the stack")
    return bad

def main(root:Path=ROOT) -> int:
    graph, order = import_graph(root/PKG), notebook_order(root/'nbs')
    for m in sorted(graph, key=lambda m: order.get(m, len(order))):
        print(f"  {m:22} -> {', '.join(sorted(graph[m], key=lambda d: order.get(d, 0))) or '-'}")
    bad = violations(graph, order) + private_imports(root/PKG)
    if bad:
        print("Layering problems (a module may import only modules whose notebooks come before its own):\n  " + "\n  ".join(bad))
        return 1
    print(f"layers ok: {len(graph)} modules, {sum(map(len, graph.values()))} imports, every one running down the notebooks' order, no circle, no private name imported")
    return 0

if __name__ == '__main__': sys.exit(main())
