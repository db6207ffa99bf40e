"""Finished `pxp train` runs side by side, read from their run folders (nothing is recomputed).

    python benchmarks/compare_runs.py runs/train-A runs/train-B                  # a markdown table on stdout
    python benchmarks/compare_runs.py LABEL=runs/train-A ... --out FILE.md       # labelled rows, also written to a new file

Per run: the classifier, precision, epochs run, training images/s and wall time; its black box (the pretrained or given
classifier before P2P trained it, on the same evaluation images) and how often that black box is δ-certain; and per
certainty level δ P2P's accuracy, its share of the black box's accuracy and the mean kept fraction. Which machine made a
run is not recorded in it: say so beside the table (runs compared here should come from one machine, run alone).
"""
import argparse, json, sys
from pathlib import Path

def load(spec:str) -> tuple:
    "(label, metrics, config) of a run folder given as FOLDER or LABEL=FOLDER"
    label, _, folder = spec.rpartition('=')
    run = Path(folder)
    try: m, c = (json.loads((run/f).read_text()) for f in ('metrics.json', 'config.json'))
    except FileNotFoundError:
        sys.exit(f"{run} holds no finished run (metrics.json and config.json): pass the folder `pxp train` printed")
    return label or run.name, m, c

def table(runs:list, deltas=('0.8', '0.9', '0.95', '0.99')) -> str:
    "Markdown: one row per run and δ"
    head = ("| run | classifier | precision | epochs | train img/s | wall s | black box acc | black box δ-certain | δ | accuracy | "
            "of black box | kept |")
    lines = [head, '|' + '---|'*(head.count('|') - 1)]
    for label, m, c in runs:
        t, bb = m['timing'], m.get('black_box') or {}
        for d in deltas:
            e = m['evaluation'].get(d)
            if e is None: continue
            share = (bb.get('p2p_accuracy_over_black_box') or {}).get(d)
            lines.append(f"| {label} | {c['classifier']} | {c['precision']} | {t['epochs_run']} | {t['train_images_per_s']:.0f} | "
                         f"{t['total_s']:.0f} | {bb.get('accuracy', float('nan')):.3f} | {(bb.get('certain') or {}).get(d, float('nan')):.3f} | "
                         f"{d} | {e['accuracy']:.3f} | {'–' if share is None else f'{share:.3f}'} | {e['kept']:.3f} |")
    return '\n'.join(lines)

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('runs', nargs='+', help='run folders, or LABEL=FOLDER')
    p.add_argument('--out', type=Path, default=None, help='also write the table to this new file (never overwritten)')
    a = p.parse_args()
    md = table([load(s) for s in a.runs])
    print(md)
    if a.out is not None:
        if a.out.exists(): sys.exit(f"{a.out} exists: pass a new --out (earlier results are never overwritten)")
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(md + '\n')

if __name__ == '__main__': main()
