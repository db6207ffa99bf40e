"""What MoXI costs: time and model evaluations against the number of features and the images per batch (pixel mode,
CIFAR ResNet-20), and a full token-mode order at the paper's size (timm ViT-Tiny/16 at 224x224, 196 tokens), in fp32
and bf16, with the agreement of the two precisions' orders.

    python benchmarks/bench_moxi_cost.py                 # the real tables: about 15-25 minutes on 2 idle cores
    python benchmarks/bench_moxi_cost.py --quick         # a smoke test (about a minute), not a timing
    python benchmarks/bench_moxi_cost.py --parts vit profile   # only some parts

Parts, run one after the other in one process (results in a NEW folder under --out: results.json, results.md, cost.png):
  features  pixel mode, CIFAR-10 test images and the real ResNet-20 (../shared; random stand-ins where missing), one
            image per call, both curves: grids 4, 8, 14, 16 (a grid that does not divide 32, e.g. 14, is a GroupMasker
            on cells of 2 or 3 pixels: the cost depends on N, not on the cell size) and SLIC 25/50/100 superpixels
            (N is the image's own superpixel count)
  batch     grid 8, images explained together (one `attribute` call): 1, 2, 4, 8, 16
  vit       token mode, ViT-Tiny/16 at 224 (random weights: timing does not depend on them), the full order of both
            curves, end to end, per precision; fp32 against bf16: identical orders, top-k overlap, first differing step
  profile   torch.profiler over a few greedy steps (ViT and ResNet-20) per precision: where the time goes, and the
            user and system CPU time (getrusage) of every part
  alloc     the system time of allocation churn: one deletion step (ResNet-20 with chunks of 512 and 256, ViT-Tiny),
            each in a fresh process with the default allocator and with THP_MEM_ALLOC_ENABLE=1 (torch reads it at
            import, so only a new process can compare them): wall, user and system time and page faults

Evaluations, counted from the code (`MoXI.attribute`): one forward pass of the full image (`prepare`), then greedy
step t = 0..N-1 scores the N - t candidates not chosen yet. Step 0 (coalitions {i}, or all but {i} for deletion) is
the self-context Shapley value itself, so it costs no extra: 1 + N(N+1)/2 evaluations per image and curve (the script
checks the explainer's counter against it). In token mode a coalition costs its visible tokens plus the class token:
insertion sum_t (N-t)(t+2) = N(N+1)(N+5)/6 token-rows, deletion sum_t (N-t)^2 = N(N+1)(2N+1)/6, about twice as many.
Timings are wall time: run nothing else on the machine (the load average is printed and saved).
"""
import argparse, copy, json, os, resource, time
from pathlib import Path
import numpy as np, torch, torch.nn.functional as F
from _machine import machine

ROOT = Path(__file__).resolve().parents[1]
PARTS = ('features', 'batch', 'vit', 'profile', 'alloc')
TOPK = (0.05, 0.1, 0.25)   # top-k overlap at these shares of N (k = 10, 20, 49 of 196 tokens)

def law(N): return 1 + N * (N + 1) / 2                      # evaluations per image and curve
def token_rows(N, curve):                                    # tokens through the ViT per image and curve
    return N * (N + 1) * (N + 5) / 6 if curve == 'insertion' else N * (N + 1) * (2 * N + 1) / 6

class Clock:
    "Wall time, the process's user and system CPU time, and its minor page faults, of a block"
    def __enter__(self):
        self.w, self.r = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF); return self
    def __exit__(self, *a):
        r = resource.getrusage(resource.RUSAGE_SELF)
        self.wall, self.user, self.sys = time.perf_counter() - self.w, r.ru_utime - self.r.ru_utime, r.ru_stime - self.r.ru_stime
        self.faults = r.ru_minflt - self.r.ru_minflt   # fresh pages the kernel zeroed: the system time of allocation churn

# ---------------------------------------------------------------- data and models
def cifar(a, n):
    "n CIFAR-10 test images spread over the classes: normalised [n,3,32,32], un-normalised HxWx3 arrays (for SLIC), labels"
    from pixelperception.models.zoo import normalization
    mean, std = (torch.tensor(v)[:, None, None] for v in normalization('resnet20'))
    if Path(a.data).is_dir():
        from torchvision import datasets, transforms
        ds = datasets.ImageFolder(a.data, transforms.ToTensor())
        idx = torch.linspace(0, len(ds) - 1, n).long().tolist()
        raw = torch.stack([ds[i][0] for i in idx])
    else:
        print(f"  (no images at {a.data}: random stand-ins)")
        raw = torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    return (raw - mean) / std, raw.permute(0, 2, 3, 1).numpy()

def resnet(a):
    from pixelperception.models.cifar_resnet import resnet20, load_resnet20
    w = Path(a.weights)
    return (load_resnet20(w) if w.exists() else resnet20()).eval(), w.exists()

def grid_groups(n, H, W, B):
    "A g x g grid as superpixel ids, for grids that do not divide the image (cells of floor/ceil size)"
    r, c = torch.arange(H) * n // H, torch.arange(W) * n // W
    return (r[:, None] * n + c[None]).expand(B, H, W).contiguous()

def explainers(model, masker, a, precisions):
    "One MoXI per precision, each on its own copy of the model (bf16 turns a conv model channels-last)"
    from pixelperception.explain.moxi import MoXI
    return {p: MoXI(copy.deepcopy(model), masker, batch_size=a.batch_size, precision=p) for p in precisions}

def both_curves(e, x, groups=None):
    "Orders of both curves, the wall/CPU time of each, and the evaluations per image of each"
    out = {}
    for c in ('insertion', 'deletion'):
        with Clock() as k: order = e.attribute(x, groups=groups, curve=c).order
        out[c] = dict(order=order, wall=k.wall, user=k.user, sys=k.sys, evals=e.evals_per_image)
    return out

# ---------------------------------------------------------------- parts
def features(a):
    "Pixel mode: cost against the number of features (grids, SLIC superpixels), one image per call"
    from pixelperception.models.maskers import PatchMasker, GroupMasker
    from pixelperception.data.superpixels import slic_groups
    x, raw = cifar(a, a.n)
    model, real = resnet(a)
    print(f"\n[features] ResNet-20 ({'real' if real else 'random'} weights), {len(x)} CIFAR-10 image(s), one per call, both curves")
    settings = [(f'grid {g}', g) for g in a.grids] + [(f'SLIC {s}', s) for s in a.slic]
    rows = []
    print(f"  {'features':10} {'prec':5} {'N':>6} {'evals/img':>10} {'law':>10} {'s/img ins':>10} {'s/img del':>10} {'ms/eval':>8} {'sys %':>6}")
    for name, v in settings:
        if name.startswith('grid'):
            masker = PatchMasker(v) if 32 % v == 0 else GroupMasker()
            groups = None if 32 % v == 0 else grid_groups(v, 32, 32, 1)
            gs = [groups] * len(x)
        else:
            masker = GroupMasker()
            gs = [torch.from_numpy(slic_groups(raw[i], n_segments=v))[None] for i in range(len(x))]
        es = explainers(model, masker, a, a.precisions)
        acc = {p: dict(N=[], evals=[], law=[], ins=0., dele=0., user=0., sys=0., orders=[]) for p in a.precisions}
        for i in range(len(x)):
            for p, e in es.items():   # precisions alternate per image: load drifts hit both alike
                r = both_curves(e, x[i:i + 1], gs[i])
                N = r['insertion']['order'].shape[1]
                for c in ('insertion', 'deletion'):
                    if r[c]['evals'] != law(N): raise AssertionError(f"{name}: {r[c]['evals']} evaluations, law says {law(N)}")
                s = acc[p]
                s['N'].append(N); s['evals'].append(r['insertion']['evals'] + r['deletion']['evals']); s['law'].append(2 * law(N))
                s['ins'] += r['insertion']['wall']; s['dele'] += r['deletion']['wall']
                s['user'] += sum(r[c]['user'] for c in r); s['sys'] += sum(r[c]['sys'] for c in r)
                s['orders'].append({c: r[c]['order'] for c in r})
        for p, s in acc.items():
            n = len(x)
            row = dict(features=name, masker=type(es[p].masker).__name__, precision=p, N=float(np.mean(s['N'])), N_per_image=s['N'],
                       evals_per_image=float(np.mean(s['evals'])), law_per_image=float(np.mean(s['law'])),
                       s_ins=s['ins'] / n, s_del=s['dele'] / n, s_per_image=(s['ins'] + s['dele']) / n,
                       sys_share=s['sys'] / max(s['user'] + s['sys'], 1e-9))
            row['ms_per_eval'] = 1e3 * row['s_per_image'] / row['evals_per_image']
            if p != a.precisions[0]: row.update(agreement(acc[a.precisions[0]]['orders'], s['orders']))
            rows.append(row)
            print(f"  {name:10} {p:5} {row['N']:6.1f} {row['evals_per_image']:10.0f} {row['law_per_image']:10.0f} {row['s_ins']:10.3f} "
                  f"{row['s_del']:10.3f} {row['ms_per_eval']:8.3f} {100 * row['sys_share']:6.1f}")
    return rows

def batch(a):
    "Pixel mode, one grid: seconds per image against the images explained together"
    from pixelperception.models.maskers import PatchMasker
    model, real = resnet(a)
    x, _ = cifar(a, max(a.batch_images))
    print(f"\n[batch] ResNet-20, {a.batch_grid}x{a.batch_grid} grid, both curves, images per attribute call: {a.batch_images}")
    print(f"  {'images':>6} {'prec':5} {'s/img':>8} {'evals/img':>10} {'ms/eval':>8} {'sys %':>6}")
    rows, es = [], explainers(model, PatchMasker(a.batch_grid), a, a.precisions)
    for B in a.batch_images:
        for p, e in es.items():
            r = both_curves(e, x[:B])
            ev = r['insertion']['evals'] + r['deletion']['evals']
            wall, cpu = sum(r[c]['wall'] for c in r), sum(r[c]['user'] + r[c]['sys'] for c in r)
            row = dict(images=B, precision=p, N=a.batch_grid ** 2, s_per_image=wall / B, evals_per_image=ev,
                       law_per_image=2 * law(a.batch_grid ** 2), ms_per_eval=1e3 * wall / B / ev,
                       sys_share=sum(r[c]['sys'] for c in r) / max(cpu, 1e-9))
            rows.append(row)
            print(f"  {B:6d} {p:5} {row['s_per_image']:8.3f} {ev:10.0f} {row['ms_per_eval']:8.3f} {100 * row['sys_share']:6.1f}")
    return rows

def overlap(a, b, k): return ((a[:, :k, None] == b[:, None, :k]).any(-1).float().sum(-1) / k)

def agreement(ref, other):
    "fp32 against another precision, per curve, averaged over images (each with its own N): identical orders, top-k overlap (k a share of N), the first step where the orders differ"
    out = {}
    for c in ('insertion', 'deletion'):
        per = []
        for r0, r1 in zip(ref, other):
            o0, o = r0[c], r1[c]
            N, diff = o.shape[1], (o != o0)
            first = torch.where(diff.any(1), diff.float().argmax(1), torch.full((len(o),), N)).float()
            per.append({'identical': (~diff).all(1).float().mean().item(), 'first_diff': first.mean().item(),
                        **{f'top{round(100 * f)}pct': overlap(o, o0, max(1, round(f * N))).mean().item() for f in TOPK}})
        out.update({f'{c}_{k}': float(np.mean([p[k] for p in per])) for k in per[0]})
    return out

def vit(a):
    "Token mode at the paper's size: full orders of both curves, end to end, per precision"
    import timm
    from pixelperception.models.maskers import TokenMasker
    m = timm.create_model(a.vit_model, pretrained=False, img_size=a.vit_size).eval()
    _, raw = cifar(a, a.vit_images)
    cfg = m.pretrained_cfg
    mean, std = (torch.tensor(cfg.get(k, d))[:, None, None] for k, d in (('mean', (0.485, 0.456, 0.406)), ('std', (0.229, 0.224, 0.225))))
    x = (F.interpolate(torch.from_numpy(raw).permute(0, 3, 1, 2), size=a.vit_size, mode='bilinear', align_corners=False) - mean) / std   # CIFAR upsampled
    es = explainers(m, TokenMasker(m), a, a.precisions)
    N = es[a.precisions[0]].masker.n_features(x, model=m)
    print(f"\n[vit] timm {a.vit_model} (random weights) at {a.vit_size}x{a.vit_size}, N={N} tokens, {len(x)} image(s) one per call, "
          f"both curves, full orders (batch_size={a.batch_size})")
    res = {p: dict(orders=[], ins=0., dele=0., user=0., sys=0., evals=[]) for p in a.precisions}
    for i in range(len(x)):
        for p, e in es.items():
            r = both_curves(e, x[i:i + 1])
            for c in r:
                if r[c]['evals'] != law(N): raise AssertionError(f"ViT {c}: {r[c]['evals']} evaluations, law says {law(N)}")
            s = res[p]
            s['orders'].append({c: r[c]['order'] for c in r}); s['evals'].append(sum(r[c]['evals'] for c in r))
            s['ins'] += r['insertion']['wall']; s['dele'] += r['deletion']['wall']
            s['user'] += sum(r[c]['user'] for c in r); s['sys'] += sum(r[c]['sys'] for c in r)
            print(f"  image {i} {p:5}: insertion {r['insertion']['wall']:.1f} s, deletion {r['deletion']['wall']:.1f} s", flush=True)
    rows = []
    for p, s in res.items():
        n = len(x)
        row = dict(model=a.vit_model, size=a.vit_size, precision=p, N=N, images=n, evals_per_image=float(np.mean(s['evals'])),
                   law_per_image=2 * law(N), token_rows_per_image=token_rows(N, 'insertion') + token_rows(N, 'deletion'),
                   s_ins=s['ins'] / n, s_del=s['dele'] / n, s_per_image=(s['ins'] + s['dele']) / n,
                   sys_share=s['sys'] / max(s['user'] + s['sys'], 1e-9))
        row['speedup'] = (res[a.precisions[0]]['ins'] + res[a.precisions[0]]['dele']) / (s['ins'] + s['dele'])
        if p != a.precisions[0]: row.update(agreement(res[a.precisions[0]]['orders'], s['orders']))
        rows.append(row)
        print(f"  {p:5}: {row['s_per_image']:.1f} s/image (insertion {row['s_ins']:.1f}, deletion {row['s_del']:.1f}), "
              f"{row['evals_per_image']:.0f} evaluations/image (law {row['law_per_image']:.0f}), x{row['speedup']:.2f} vs {a.precisions[0]}, "
              f"sys {100 * row['sys_share']:.0f}% of CPU time"
              + ('' if p == a.precisions[0] else f", identical orders ins/del {row['insertion_identical']:.2f}/{row['deletion_identical']:.2f}"))
    for r in rows:
        if r['precision'] == 'bf16' and r['N'] == 196: print(f"  goal <= 60 s per image in bf16 (both curves): {'met' if r['s_per_image'] <= 60 else 'not met'} "
                                           f"({r['s_per_image']:.1f} s; insertion alone {r['s_ins']:.1f} s)")
    return rows

def profile(a):
    "torch.profiler over a few greedy steps: the ops that take the time, and user/system CPU time"
    import timm
    from torch.profiler import profile as tprofile, ProfilerActivity
    from pixelperception.models.maskers import TokenMasker, PatchMasker
    vm = timm.create_model(a.vit_model, pretrained=False, img_size=a.vit_size).eval()
    cnn, _ = resnet(a)
    g = torch.Generator().manual_seed(0)
    cases = [('vit', vm, TokenMasker(vm), torch.randn(1, 3, a.vit_size, a.vit_size, generator=g)),
             ('resnet20 grid 8', cnn, PatchMasker(8), torch.randn(a.profile_images, 3, 32, 32, generator=g))]
    out = []
    print("\n[profile] a few greedy steps per model and precision (t = 10%, 50%, 90% of N; both curves)")
    for name, model, masker, x in cases:
        for p, e in explainers(model, masker, a, a.precisions).items():
            xp = x.contiguous(memory_format=torch.channels_last) if p != 'fp32' and name.startswith('resnet') else x
            N = masker.n_features(x, model=e.model)
            with torch.inference_mode(): y = e.forward(e.model, xp).argmax(-1)
            def steps(ts):
                for t in ts:
                    chosen = torch.zeros(len(x), N, dtype=torch.bool)
                    chosen[:, torch.randperm(N, generator=g)[:t]] = True
                    for c in ('insertion', 'deletion'): e.step(xp, y, chosen, curve=c)
            ts = [int(f * N) for f in (0.1, 0.5, 0.9)][:a.profile_steps]
            steps(ts[:1])   # warm-up
            with Clock() as k, tprofile(activities=[ProfilerActivity.CPU]) as prof: steps(ts)
            table = prof.key_averages().table(sort_by='self_cpu_time_total', row_limit=12)
            out.append(dict(case=name, precision=p, steps=ts, wall=k.wall, user=k.user, sys=k.sys, faults=k.faults, table=table))
            print(f"\n  {name}, {p}: steps {ts}, {k.wall:.2f} s wall, user {k.user:.2f} s, sys {k.sys:.2f} s, "
                  f"{k.faults} page faults (profiler on)\n{table}")
    return out

ALLOC_CASES = (('resnet20 grid 8, {n} images, chunks of 512', 'resnet', 512), ('resnet20 grid 8, {n} images, chunks of 256', 'resnet', 256),
               ('{vit}, chunks of 256', 'vit', 256))
ALLOC_ENVS = (('default', {}), ('THP_MEM_ALLOC_ENABLE=1', {'THP_MEM_ALLOC_ENABLE': '1'}))

def alloc_worker(a, case, precision, bs):
    "In a fresh process: one warm-up and one timed deletion step at t = 0 (the longest coalitions); prints one JSON line"
    from pixelperception.explain.moxi import MoXI
    from pixelperception.models.maskers import TokenMasker, PatchMasker
    g = torch.Generator().manual_seed(0)
    if case == 'vit':
        import timm
        m = timm.create_model(a.vit_model, pretrained=False, img_size=a.vit_size).eval()
        x, masker = torch.randn(1, 3, a.vit_size, a.vit_size, generator=g), TokenMasker(m)
    else: (m, _), x, masker = resnet(a), torch.randn(a.profile_images, 3, 32, 32, generator=g), PatchMasker(8)
    e = MoXI(m, masker, batch_size=bs, precision=precision)
    if precision != 'fp32' and case != 'vit': x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(): y = e.forward(e.model, x).argmax(-1)
    chosen = torch.zeros(len(x), masker.n_features(x, model=e.model), dtype=torch.bool)
    e.step(x, y, chosen, curve='deletion')
    with Clock() as k: e.step(x, y, chosen, curve='deletion')
    print(json.dumps(dict(wall=k.wall, user=k.user, sys=k.sys, faults=k.faults)))

def alloc(a):
    "Allocation churn: the same step in fresh processes, default allocator against torch's huge-page allocations"
    import subprocess, sys
    print(f"\n[alloc] one deletion step at t = 0 in a fresh process per row: allocator, wall, user, sys, page faults")
    rows = []
    for name, case, bs in ALLOC_CASES[:1] if a.quick else ALLOC_CASES:   # a smoke test starts two processes, not twelve
        for p in a.precisions[:1] if a.quick else a.precisions:
            for env_name, env in ALLOC_ENVS:
                cmd = [sys.executable, __file__, '--alloc-worker', case, p, str(bs), '--threads', str(a.threads), '--weights', a.weights,
                       '--vit-model', a.vit_model, '--vit-size', str(a.vit_size), '--profile-images', str(a.profile_images)]
                base = {k: v for k, v in os.environ.items() if k != 'THP_MEM_ALLOC_ENABLE'}   # 'default' means default
                r = subprocess.run(cmd, env={**base, **env}, capture_output=True, text=True)
                if r.returncode: raise RuntimeError(f"alloc worker failed: {' '.join(cmd)}\n{r.stderr[-2000:]}")
                row = dict(case=name.format(n=a.profile_images, vit=a.vit_model), precision=p, allocator=env_name, **json.loads(r.stdout.strip().splitlines()[-1]))
                rows.append(row)
                print(f"  {row['case']:42} {p:5} {env_name:24} {row['wall']:6.2f} s wall, user {row['user']:6.2f} s, sys {row['sys']:6.2f} s, {row['faults']:8d} faults", flush=True)
    return rows

# ---------------------------------------------------------------- report
def md_table(rows, cols):
    head = '| ' + ' | '.join(h for h, _ in cols) + ' |\n|' + '---|' * len(cols) + '\n'
    return head + ''.join('| ' + ' | '.join(f(r) for _, f in cols) + ' |\n' for r in rows)

def f3(k): return lambda r: '' if r.get(k) is None else f"{r[k]:.3f}"
def f0(k): return lambda r: '' if r.get(k) is None else f"{r[k]:.0f}"

def write_md(res, d):
    m = res['machine']
    s = [f"# MoXI cost ({res['command']})\n",
         f"Machine: {m['cpu']} | bf16 ISA {m['bf16_isa']} | {m['cores']} cores | {m['torch_threads']} torch threads | torch {m['torch']} | "
         f"GPU {m['gpu']} | load avg at start {m['load_avg_at_start']:.2f} | allocator env {m['allocator_env'] or 'none'}. Wall time {res['wall_s']:.0f} s.\n",
         "Evaluations per image and curve: 1 + N(N+1)/2 (the full image, then N - t candidates at greedy step t; step 0 is "
         "the self-context Shapley value). Tables give both curves together: 2 + N(N+1).\n"]
    agree = [(f"{c[:3]} {m_}", (lambda k: lambda r: '' if k not in r else f"{r[k]:.2f}")(f'{c}_{m_}'))
             for c in ('insertion', 'deletion') for m_ in ('identical', 'first_diff', 'top10pct')]
    if res.get('features'):
        s += ["## Cost against the number of features (pixel mode, ResNet-20, 32x32, one image per call)\n",
              md_table(res['features'], [('features', lambda r: r['features']), ('masker', lambda r: r['masker']), ('precision', lambda r: r['precision']),
                                         ('N', lambda r: f"{r['N']:.1f}"), ('evals/image', f0('evals_per_image')), ('law 2+N(N+1)', f0('law_per_image')),
                                         ('s/image ins', f3('s_ins')), ('s/image del', f3('s_del')), ('s/image', f3('s_per_image')),
                                         ('ms/eval', f3('ms_per_eval')), ('sys share', lambda r: f"{100 * r['sys_share']:.0f}%")] + agree)]
    if res.get('batch'):
        s += ["\n## Cost against the images per batch (pixel mode, one `attribute` call)\n",
              md_table(res['batch'], [('images', lambda r: str(r['images'])), ('precision', lambda r: r['precision']), ('N', lambda r: str(r['N'])),
                                      ('evals/image', f0('evals_per_image')), ('s/image', f3('s_per_image')), ('ms/eval', f3('ms_per_eval')),
                                      ('sys share', lambda r: f"{100 * r['sys_share']:.0f}%")])]
    if res.get('vit'):
        v = res['vit']
        ks = [k for k in v[-1] if k.startswith('insertion_top')] + [k for k in v[-1] if k.startswith('deletion_top')]
        s += [f"\n## Token mode end to end: {v[0]['model']} at {v[0]['size']}x{v[0]['size']}, N = {v[0]['N']} tokens, full orders of both curves\n",
              md_table(v, [('precision', lambda r: r['precision']), ('images', lambda r: str(r['images'])), ('s/image', lambda r: f"{r['s_per_image']:.1f}"),
                           ('ins s', lambda r: f"{r['s_ins']:.1f}"), ('del s', lambda r: f"{r['s_del']:.1f}"), ('speed-up', lambda r: f"{r['speedup']:.2f}"),
                           ('evals/image', f0('evals_per_image')), ('law', f0('law_per_image')), ('token-rows/image', f0('token_rows_per_image')),
                           ('sys share', lambda r: f"{100 * r['sys_share']:.0f}%")] + [c for c in agree if 'top' not in c[0]]
                     + [(k.replace('insertion_', 'ins ').replace('deletion_', 'del ').replace('top', 'top-').replace('pct', '%'), (lambda k: lambda r: '' if k not in r else f"{r[k]:.2f}")(k)) for k in ks]),
              "".join(f"\nGoal (issue 16): at most 60 s per image in bf16 for both curves: {'met' if r['s_per_image'] <= 60 else 'not met'} "
                      f"({r['s_per_image']:.1f} s; insertion alone {r['s_ins']:.1f} s, deletion {r['s_del']:.1f} s).\n" for r in v if r['precision'] == 'bf16' and r['N'] == 196),   # the paper's size only
              "\nfirst_diff: mean index of the first greedy step where the precisions' orders differ (N = identical); top-p%: overlap of "
              "the first k = p% of N features with fp32's (k = 10, 20, 49 of 196). "
              "Random ViT weights: the agreement of trained weights may differ.\n"]
    if res.get('alloc'):
        s += ["\n## System time and the allocator (one deletion step at t = 0, each in a fresh process)\n",
              md_table(res['alloc'], [('step', lambda r: r['case']), ('precision', lambda r: r['precision']), ('allocator', lambda r: r['allocator']),
                                      ('wall s', f3('wall')), ('user s', f3('user')), ('sys s', f3('sys')),
                                      ('sys share', lambda r: f"{100 * r['sys'] / max(r['user'] + r['sys'], 1e-9):.0f}%"), ('page faults', f0('faults'))]),
              "\nglibc serves buffers above 32 MB with a fresh mmap and unmaps them after each forward pass, so the kernel zeroes "
              "their pages again at every chunk; THP_MEM_ALLOC_ENABLE=1 makes torch back large tensors with 2 MB pages.\n"]
    if res.get('profile'):
        s += ["\n## Profile (torch.profiler, a few greedy steps; the profiler's overhead is in these times)\n"]
        for r in res['profile']:
            s += [f"\n### {r['case']}, {r['precision']}: steps {r['steps']}, {r['wall']:.2f} s wall, user {r['user']:.2f} s, sys {r['sys']:.2f} s, {r['faults']} page faults\n",
                  "```\n" + r['table'] + "\n```\n"]
    return '\n'.join(s)

def figure(res, path):
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    panels = [k for k in ('features', 'batch') if res.get(k)]
    if not panels: return None
    fig, axs = plt.subplots(1, len(panels) + (1 if res.get('features') else 0), figsize=(5 * (len(panels) + 1), 4), squeeze=False)
    axs, i = axs[0], 0
    if res.get('features'):
        rows = res['features']
        Ns = np.linspace(min(r['N'] for r in rows), max(r['N'] for r in rows), 100)
        ax = axs[0]
        ax.plot(Ns, 2 + Ns * (Ns + 1), 'k-', lw=1, label='law 2 + N(N+1)')
        grid = [r for r in rows if r['precision'] == rows[0]['precision']]
        for kind, col in (('grid', 'C0'), ('SLIC', 'C1')):
            pts = [r for r in grid if r['features'].startswith(kind)]
            if pts: ax.scatter([r['N'] for r in pts], [r['evals_per_image'] for r in pts], c=col, zorder=3, label=f'ResNet-20, {kind}')
        for r in res.get('vit') or []:
            ax.scatter([r['N']], [r['evals_per_image']], marker='s', c='C3', zorder=3, label='ViT-Tiny tokens' if r is res['vit'][0] else None)
        ax.set(xscale='log', yscale='log', xlabel='features N', ylabel='evaluations per image (both curves)', title='Evaluations: measured = law')
        ax.legend()
        ax = axs[1]
        for j, p in enumerate(dict.fromkeys(r['precision'] for r in rows)):
            pr = [r for r in rows if r['precision'] == p]
            c = np.sum([r['s_per_image'] * r['law_per_image'] for r in pr]) / np.sum([r['law_per_image'] ** 2 for r in pr])   # least squares t = c * law
            ax.scatter([r['N'] for r in pr], [r['s_per_image'] for r in pr], c=f'C{j}', label=f'{p} (grids, SLIC)', zorder=3)
            ax.plot(Ns, c * (2 + Ns * (Ns + 1)), f'C{j}-', lw=1, label=f'{p}: {1e3 * c:.2f} ms x law')
        ax.set(xscale='log', yscale='log', xlabel='features N', ylabel='seconds per image (both curves)', title='Time against N(N+1)')
        ax.legend(fontsize=8)
        i = 2
    if res.get('batch'):
        ax, rows = axs[i], res['batch']
        for j, p in enumerate(dict.fromkeys(r['precision'] for r in rows)):
            pr = [r for r in rows if r['precision'] == p]
            ax.plot([r['images'] for r in pr], [r['s_per_image'] for r in pr], f'C{j}o-', label=p)
        ax.set(xscale='log', xlabel='images per attribute call', ylabel='seconds per image (both curves)', ylim=(0, None),
               title=f"Batching images (N = {rows[0]['N']})")
        ax.set_xticks([r['images'] for r in rows if r['precision'] == rows[0]['precision']])
        ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.legend()
    fig.tight_layout()
    from pixelperception.files import atomic_write
    atomic_write(path, lambda t: fig.savefig(t, dpi=110, format='png'))
    plt.close(fig)
    return path

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--parts', nargs='+', default=list(PARTS), choices=PARTS)
    ap.add_argument('--precisions', nargs='+', default=['fp32', 'bf16'], help='the first is the reference of the agreement columns')
    ap.add_argument('--data', default=str(ROOT.parent / 'shared/data/cifar10/test'))
    ap.add_argument('--weights', default=str(ROOT.parent / 'shared/weights/resnet20-cifar10.th'))
    ap.add_argument('--n', type=int, default=2, help='images of the features part (one per call)')
    ap.add_argument('--grids', type=int, nargs='+', default=[4, 8, 14, 16])
    ap.add_argument('--slic', type=int, nargs='+', default=[25, 50, 100], help='SLIC n_segments (the counts each image gets are reported)')
    ap.add_argument('--batch-grid', type=int, default=8)
    ap.add_argument('--batch-images', type=int, nargs='+', default=[1, 2, 4, 8, 16])
    ap.add_argument('--vit-model', default='vit_tiny_patch16_224')
    ap.add_argument('--vit-size', type=int, default=224)
    ap.add_argument('--vit-images', type=int, default=1)
    ap.add_argument('--profile-steps', type=int, default=3)
    ap.add_argument('--profile-images', type=int, default=8, help='images per ResNet-20 step profiled')
    ap.add_argument('--batch-size', type=int, default=256, help='forward passes per chunk (the explainers\' default)')
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--out', default=str(ROOT / 'benchmarks/results/moxi_cost'))
    ap.add_argument('--alloc-worker', nargs=3, metavar=('CASE', 'PRECISION', 'BATCH_SIZE'), help=argparse.SUPPRESS)
    ap.add_argument('--quick', action='store_true', help='tiny sizes (grids 2 and 3, ViT at 32x32: 4 tokens): a smoke test, not a timing')
    a = ap.parse_args()
    if a.quick:
        a.n, a.grids, a.slic, a.batch_grid, a.batch_images, a.vit_size, a.profile_steps, a.profile_images = 1, [2, 3], [8], 2, [1, 2], 32, 1, 1
    from pixelperception.files import new_run_dir, atomic_write, removed_on_error
    torch.set_num_threads(a.threads)
    if a.alloc_worker: return alloc_worker(a, a.alloc_worker[0], a.alloc_worker[1], int(a.alloc_worker[2]))
    torch.manual_seed(0)
    res = dict(command='python benchmarks/bench_moxi_cost.py ' + ' '.join(os.sys.argv[1:]), machine=machine(allocator_env={k: v for k, v in os.environ.items() if k.startswith(('MALLOC_', 'THP_MEM_ALLOC')) or k == 'LD_PRELOAD'}), args=vars(a))
    print(' | '.join(f'{k}: {v}' for k, v in res['machine'].items()))
    d = new_run_dir(a.out, 'quick' if a.quick else 'cost')
    with removed_on_error(d):   # an interrupted run leaves no half-written folder
        with Clock() as k:
            for part in PARTS:
                if part in a.parts: res[part] = globals()[part](a)
        res['wall_s'] = k.wall
        atomic_write(d / 'results.json', lambda t: Path(t).write_text(json.dumps(res, indent=1)))
        atomic_write(d / 'results.md', lambda t: Path(t).write_text(write_md(res, d)))
        png = figure(res, d / 'cost.png')
    print(f"\nwrote {d}/results.json, results.md" + (', cost.png' if png else '') + f" in {k.wall:.0f} s")

if __name__ == '__main__': main()
