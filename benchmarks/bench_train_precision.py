"""Benchmark P2P training in float32 against bfloat16 autocast (`train(precision='bf16')`), side by side in one run.

    python benchmarks/bench_train_precision.py                      # the default `pxp train` (built-in data), both precisions
    python benchmarks/bench_train_precision.py --dataset cifar10 --data-path ../shared/data --max-train 10000 --epochs 2

Two measurements, each fp32 then bf16 on the same machine, nothing else changed:
1. model cost: optimiser steps of the P2P model on one batch already in memory (forward, score-function surrogate,
   backward, Adam), fp32 / bf16 / bf16 + channels-last;
2. end to end: the whole `train` call (data, training, BatchNorm recalibration, evaluation) with its quality at every
   certainty level, so that a speed-up is only read together with what it does to the answers.
On a CPU bf16 pays only with native bfloat16 (avx512_bf16 or AMX); the machine line says which this one has.
Results go to a new folder under benchmarks/results/train_precision/ (results.json, results.md); nothing is overwritten.
"""
import argparse, json, os, time, warnings
from pathlib import Path
import torch, torch.nn.functional as F
from torch import Tensor
from _machine import machine

def model_steps(a, n=8):
    "Images/s of optimiser steps on one in-memory batch: fp32, bf16, bf16 + channels-last"
    from pixelperception.data.datasets import get_dls
    from pixelperception.p2p.learner import p2p_model
    from pixelperception.p2p.recipes import recipe_options
    from pixelperception.p2p.runs import MODEL_KEYS
    from pixelperception.models.zoo import normalization
    o = recipe_options('cpu', a.dataset, a.classifier)
    mean, std = normalization(o['classifier'])
    size = o['resolution'] or (32 if a.dataset == 'cifar10' else 64)
    dls = get_dls(a.dataset, a.data_path, size=size, bs=o['batch_size'], n_segments=o['n_segments'], compactness=o['compactness'],
                  color_aug=0., max_train=2*o['batch_size'], mean=mean, std=std, device='cpu')
    x, g, y = (t.as_subclass(Tensor) for t in dls.one_batch()[:3])
    mkw = {k: o[k] for k in MODEL_KEYS if k in o and k not in ('selector', 'classifier', 'n_segments')}
    model = p2p_model(dls.c, selector=o['selector'], classifier=o['classifier'], size=size, n_segments=o['n_segments'],
                      model_path=a.model_path, mean=mean, std=std, **mkw).train()
    opt = torch.optim.Adam(model.parameters(), 1e-4)
    def step(bf16, cl):
        tau = torch.rand(len(x))*0.9 + 0.05
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=bf16):
            out = model(x.contiguous(memory_format=torch.channels_last) if cl else x, g, tau, temp=0.5)   # a P2POutput
            loss = F.cross_entropy(out.logits.float(), y)
            if out.log_prob is not None: loss = loss - 0.01*out.log_prob.mean()   # the score-function surrogate's graph
        loss.backward(); opt.step(); opt.zero_grad()
    res = {}
    for name, bf16, cl in (('fp32', False, False), ('bf16', True, False), ('bf16_channels_last', True, True)):
        model.to(memory_format=torch.channels_last if cl else torch.contiguous_format)
        step(bf16, cl)   # warm-up
        t = time.perf_counter()
        for _ in range(n): step(bf16, cl)
        res[name] = n*len(x)/(time.perf_counter() - t)
    return dict(batch=len(x), images_per_s=res)

def end_to_end(a, precision):
    from pixelperception.p2p.train import train
    kw = dict(dataset=a.dataset, data_path=a.data_path, precision=precision, experiment=a.out/'runs', progress=False, threads=a.threads)
    if a.classifier: kw['classifier'] = a.classifier
    if a.model_path: kw['model_path'] = a.model_path
    if a.max_train: kw['max_train'] = a.max_train
    if a.epochs: kw['epochs'] = a.epochs
    t = time.time()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        run = train(**kw)
    wall = time.time() - t
    m = json.loads((run/'metrics.json').read_text())
    ev = {d: {k: v for k, v in r.items() if isinstance(v, (int, float))} for d, r in m['evaluation'].items() if d != 'passes'}
    return dict(run=str(run), wall_s=wall, timing=m['timing'], evaluation=ev)

def table(r):
    mc = r['machine']
    lines = [f"Machine: {mc['cpu']}, {mc['cores']} cores, torch {mc['torch']} ({mc['torch_threads']} threads), GPU: {mc['gpu'] or 'none'}, "
             f"native bf16: {mc['native_bf16']}; load average at start {mc['load_avg_at_start']:.1f}.", '',
             f"Command: `{r['command']}`", '']
    if 'model_steps' in r:
        s = r['model_steps']['images_per_s']
        lines += ['| model steps (batch %d) | images/s | × fp32 |' % r['model_steps']['batch'], '|---|---|---|']
        lines += [f"| {k} | {v:.0f} | {v/s['fp32']:.2f} |" for k, v in s.items()] + ['']
    e = r['end_to_end']
    lines += ['| end to end | wall s | train s | train images/s | × fp32 (train) |', '|---|---|---|---|---|']
    for p, v in e.items():
        lines.append(f"| {p} | {v['wall_s']:.0f} | {v['timing']['train_s']:.0f} | {v['timing']['train_images_per_s']:.0f} | "
                     f"{v['timing']['train_images_per_s']/e['fp32']['timing']['train_images_per_s']:.2f} |")
    keys = [k for k in ('accuracy', 'kept', 'tau', 'auroc', 'mask_precision') if k in e['fp32']['evaluation']['0.9']]
    lines += ['', '| precision | δ | ' + ' | '.join(keys) + ' |', '|---|---|' + '---|'*len(keys)]
    for p, v in e.items():
        for d, m in v['evaluation'].items():
            lines.append(f"| {p} | {d} | " + ' | '.join(f"{m[k]:.4f}" if m.get(k) is not None else '–' for k in keys) + ' |')
    return '\n'.join(lines) + '\n'

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--dataset', default='synthetic'); p.add_argument('--data-path', default='data')
    p.add_argument('--classifier', default=None); p.add_argument('--model-path', default=None)
    p.add_argument('--max-train', type=int, default=None); p.add_argument('--epochs', type=int, default=None)
    p.add_argument('--threads', type=int, default=2); p.add_argument('--skip-steps', action='store_true')
    p.add_argument('--out', type=Path, default=Path(__file__).parent/'results'/'train_precision')
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    from pixelperception.files import new_run_dir, atomic_write
    a.out = new_run_dir(a.out, 'bench')
    r = dict(machine=machine(), command='python benchmarks/bench_train_precision.py ' + ' '.join(os.sys.argv[1:]))
    print(r['machine'], flush=True)
    if not a.skip_steps:
        r['model_steps'] = model_steps(a); print('model steps (images/s):', r['model_steps'], flush=True)
    r['end_to_end'] = {}
    for prec in ('fp32', 'bf16'):
        r['end_to_end'][prec] = end_to_end(a, prec)
        print(prec, f"{r['end_to_end'][prec]['wall_s']:.0f} s", r['end_to_end'][prec]['evaluation'].get('0.9'), flush=True)
    atomic_write(a.out/'results.json', lambda t: Path(t).write_text(json.dumps(r, indent=1)))
    md = table(r); atomic_write(a.out/'results.md', lambda t: Path(t).write_text(md))
    print(md)

if __name__ == '__main__': main()
