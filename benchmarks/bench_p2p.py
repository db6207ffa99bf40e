"""Benchmark P2P: classifier passes of the dynamic-threshold search (ours vs the reference's whole-batch re-run, same
chosen τ), and training throughput (images/s) of P2P and of the plain classifier.

    python benchmarks/bench_p2p.py                         # a quickly trained model on the built-in benchmark
    python benchmarks/bench_p2p.py --run runs/train-...    # a model trained by `pxp train` / `train()`
    python benchmarks/bench_p2p.py --run runs/train-... --skip-search   # only the plain classifier, for the run's training time

Dynamic threshold: for each certainty level δ, the reference evaluates the whole batch at τ = 0.05, 0.10, ... until
every image is certain (at most 19 steps), then runs one more forward at the chosen τ; we run the backbone once,
re-evaluate only the images still uncertain, answer all δ in one search and keep the logits of the step that settled
each image. Both searches are run here on the same batches and their τ compared exactly.
Throughput: optimiser steps on batches already in memory (model cost) and through the data loader (end to end).
The CPU is often shared: the load average is printed, treat timings as noisy.
"""
import argparse, json, time
from pathlib import Path
import torch, torch.nn.functional as F
from torch import Tensor
from pixelperception.data.datasets import get_dls, get_eval_dl
from pixelperception.p2p.learner import p2p_model, p2p_learner
from pixelperception.p2p.runs import load_run
from _machine import machine_line as machine

@torch.no_grad()
def reference_search(model, x, groups, delta):
    "The reference's loop: the whole batch at every step until all are certain (τ += 0.05), then a final forward"
    B = x.shape[0]
    feats = model.selector.encode(x)
    tau, certain, passes = torch.full((B,), 0.05), torch.zeros(B, dtype=torch.bool), 0
    while tau.max() < 1.0 and not certain.all():
        sel = model.select(x, groups, tau, feats=feats); logits, *_ = model.classify(x, groups, sel['decisions'])
        passes += B
        certain |= logits.softmax(-1).max(-1).values >= delta
        tau += (~certain).float() * 0.05
    tau = tau.clamp(max=1.0)
    sel = model.select(x, groups, tau, feats=feats); model.classify(x, groups, sel['decisions'])
    return tau, passes + B

def bench_search(model, dl, deltas, max_batches):
    model.eval()
    batches = [tuple(o.as_subclass(Tensor) for o in b[:2]) for i, b in zip(range(max_batches), dl)]
    n = sum(b[0].shape[0] for b in batches)
    t0 = time.time(); ours, taus = 0, []
    for x, g in batches:
        r = model.find_tau(x, g, deltas); ours += r['passes']; taus.append(r['tau'])
    t_ours = time.time() - t0
    t0 = time.time(); ref, same = 0, True
    for (x, g), t in zip(batches, taus):
        for i, d in enumerate(deltas):
            rt, p = reference_search(model, x, g, d); ref += p
            same &= bool(torch.allclose(rt, t[i], atol=1e-4))
    t_ref = time.time() - t0
    tau_mean = {str(d): torch.cat([t[i] for t in taus]).mean().item() for i, d in enumerate(deltas)}
    return dict(images=n, deltas=deltas, mean_tau=tau_mean, same_tau=same,
                passes_per_image_ours=ours/n, passes_per_image_reference=ref/n, pass_ratio=ref/max(ours, 1),
                seconds_ours=t_ours, seconds_reference=t_ref)

def train_plain(dls, epochs, lr=3e-3, seed=0, **cfg):
    "The P2P run's classifier alone (same architecture, no masks, fastai one-cycle like train's first phase): validation accuracy"
    from fastai.torch_core import set_seed
    from pixelperception.p2p.learner import classifier_learner
    set_seed(seed, reproducible=True)
    cl = classifier_learner(dls, p2p_model(dls.c, size=dls.size, **cfg))
    t0 = time.time()
    with cl.no_bar(): cl.fit_one_cycle(epochs, lr)
    hist = [dict(epoch=i + 1, valid_accuracy=float(v[2])) for i, v in enumerate(cl.recorder.values)]
    return dict(epochs=epochs, seconds=time.time() - t0, valid_accuracy=hist[-1]['valid_accuracy'], history=hist,
                n_params=sum(p.numel() for p in cl.model.parameters()))

def bench_train(dls, cfg, n_steps):
    b = [o.as_subclass(Tensor) for o in dls.one_batch()]
    x, g, y = b
    out = {}
    for name in ('p2p', 'plain'):
        m = p2p_model(dls.c, size=dls.size, **cfg).train()
        net = m if name == 'p2p' else m.classifier
        opt = torch.optim.Adam(net.parameters(), 1e-3)
        step = (lambda: F.cross_entropy(m(x, g, torch.rand(len(x))).logits, y)) if name == 'p2p' else (lambda: F.cross_entropy(net(x), y))
        step().backward()   # warm-up
        t0 = time.time()
        for _ in range(n_steps):
            opt.zero_grad(); l = step(); l.backward(); opt.step()
        out[f'{name}_model_images_per_s'] = n_steps*len(x)/(time.time() - t0)
    t0, n = time.time(), 0
    for i, bb in zip(range(n_steps), dls.train): n += len(bb[0])
    out['data_loader_images_per_s'] = n/(time.time() - t0)
    learn = p2p_learner(dls, seed=0, lr=1e-3, **cfg)
    from fastai.callback.core import CancelFitException, Callback
    class Stop(Callback):
        def after_batch(self):
            if self.iter + 1 >= n_steps: raise CancelFitException()
    t0 = time.time()
    with learn.no_bar(), learn.no_logging(): learn.fit(1, cbs=Stop())
    out['p2p_learner_end_to_end_images_per_s'] = n_steps*dls.bs/(time.time() - t0)
    return out

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--run', help='a run folder written by train(); default: train a small model for --epochs')
    ap.add_argument('--data-path', default='data')
    ap.add_argument('--epochs', type=int, default=4)
    ap.add_argument('--batches', type=int, default=4, help='evaluation batches for the search benchmark')
    ap.add_argument('--steps', type=int, default=10, help='training steps timed')
    ap.add_argument('--deltas', default='0.8,0.9,0.95,0.99')
    ap.add_argument('--plain-epochs', type=int, default=None,
                    help='also train the plain classifier for this many one-cycle epochs (with --run, default: as many as fit in the run\'s training time)')
    ap.add_argument('--threads', type=int, default=None, help='torch threads (1 is much faster on a busy machine)')
    ap.add_argument('--skip-search', action='store_true')
    ap.add_argument('--out', help='also write the results as JSON here (must not exist)')
    a = ap.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    print(machine())
    deltas = [float(d) for d in a.deltas.split(',')]
    cfg = dict(straight_through=True)
    dkw = dict(data_path=a.data_path)
    if a.run:
        model, c = load_run(a.run)
        cfg = {k: c[k] for k in ('straight_through', 'width', 'stem_stride', 'selector_width', 'norm', 'num_dims', 'use_cov', 'tau_prior',
                                 'keep_init', 'num_monte_carlo', 'tau_mode', 'estimator', 'rank_scale') if k in c}
        t = json.loads((Path(a.run)/'metrics.json').read_text())['timing']
        if a.plain_epochs is None and c.get('classifier_epochs'):   # the run's whole training time, at its classifier phase's pace
            a.plain_epochs = max(1, round((t['classifier_s'] + t['train_s']) / (t['classifier_s'] / c['classifier_epochs'])))
            print(f"plain classifier: {a.plain_epochs} epochs ≈ the run's {t['classifier_s'] + t['train_s']:.0f} s of training")
        dkw = dict(dataset=c['dataset'], data_path=c['data_path'], label_kind=c['label_kind'], size=c['size'], n_segments=c['n_segments'],
                   n_train=c['n_train'], n_val=c['n_val'], seed=c['seed'])
    elif not a.skip_search:
        dkw = dict(data_path=a.data_path)
        learn = p2p_learner(get_dls(color_aug=0., **dkw), seed=0, lr=3e-3, **cfg)
        with learn.no_bar(): learn.fit_one_cycle(a.epochs, 3e-3)
        model = learn.model
    res = dict(machine=machine())
    if not a.skip_search:
        res['dynamic_threshold'] = bench_search(model, get_eval_dl(**dkw), deltas, a.batches)
        print(json.dumps(res['dynamic_threshold'], indent=1))
        res['training'] = bench_train(get_dls(color_aug=0., **dkw), cfg, a.steps)
        print(json.dumps(res['training'], indent=1))
    if a.plain_epochs:
        res['plain_classifier'] = train_plain(get_dls(color_aug=0., **dkw), a.plain_epochs, **cfg)
        print(json.dumps({k: v for k, v in res['plain_classifier'].items() if k != 'history'}, indent=1))
    if a.out:
        p = Path(a.out)
        if p.exists(): raise SystemExit(f"{p} exists: refusing to overwrite")
        p.write_text(json.dumps(res, indent=1) + '\n')
