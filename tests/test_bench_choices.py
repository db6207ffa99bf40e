"""The choices of two small benchmark scripts: replaying the dynamic threshold from per-τ predictions
(`bench_tau_policy.replay`), and reading finished runs side by side (`compare_runs`)."""
import json
from conftest import bench_modules
import pytest, torch

GRID = dict(grid=[0.25, 0.5, 0.75, 1.0],
            conf=torch.tensor([[0.95, 0.99, 0.99, 0.99],     # certain from the first τ
                               [0.50, 0.60, 0.95, 0.99]]),   # certain from τ = 0.75
            pred=torch.tensor([[1, 0, 0, 0], [2, 2, 1, 1]]), y=torch.tensor([0, 1]), run='runs/x', split='val')

def test_replay_stops_at_the_first_certain_tau_from_the_start():
    with bench_modules('bench_tau_policy') as (tp,):
        assert tp.replay(GRID, 0.9, 0.05) == (0.5, 0.5)       # image 0 stops at 0.25 (wrong), image 1 at 0.75 (right)
        assert tp.replay(GRID, 0.9, 0.5) == (1.0, 0.625)      # from τ0 = 0.5 image 0 stops there, and is right
        assert tp.replay(GRID, 0.999, 0.05) == (1.0, 1.0)     # never certain: the whole image (max_tau), right on both
        md = tp.report(GRID)
        assert 'accuracy **1.000**' in md and '| 0.9 | 0.500 / 0.500 |' in md

def _run(path, acc, share):
    path.mkdir()
    (path/'config.json').write_text(json.dumps(dict(classifier='resnet20', precision='bf16')))
    (path/'metrics.json').write_text(json.dumps(dict(
        timing=dict(epochs_run=4, train_images_per_s=200., total_s=900.),
        black_box=dict(accuracy=0.8, certain={'0.9': 0.8}, p2p_accuracy_over_black_box={'0.9': share}),
        evaluation={'0.9': dict(accuracy=acc, kept=0.4)})))
    return path

def test_compare_runs_reads_each_run_once_per_level(tmp_path):
    with bench_modules('compare_runs') as (cr,):
        a, b = _run(tmp_path/'a', 0.83, 1.04), _run(tmp_path/'b', 0.85, None)
        md = cr.table([cr.load(f'A={a}'), cr.load(str(b))])
        rows = md.splitlines()[2:]
        assert len(rows) == 2 and rows[0].startswith('| A | resnet20 | bf16 | 4 |') and '| 0.9 | 0.830 | 1.040 | 0.400 |' in rows[0]
        assert rows[1].startswith('| b |') and '| 0.850 | – |' in rows[1]   # a run without a black box share
        with pytest.raises(SystemExit, match='holds no finished run'): cr.load(str(tmp_path/'missing'))
