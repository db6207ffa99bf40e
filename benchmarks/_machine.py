"""What every benchmark prints and records about the machine it ran on (one place for the `benchmarks/` scripts).

`machine()` is a dict for results.json; `machine_line()` the same facts on one line for a script's header."""
import os, platform
import torch

def _cpuinfo(key):
    "The value of the first /proc/cpuinfo line starting with `key` ('' where there is none)"
    try: return next((l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith(key)), '')
    except OSError: return ''

def machine(**extra) -> dict:
    "CPU model, its bfloat16 instructions, cores, torch threads and version, GPU, load average at start; plus `extra`"
    flags = set(_cpuinfo('flags').split())
    try: load = os.getloadavg()[0]
    except OSError: load = float('nan')
    from pixelperception.p2p.run_callbacks import cpu_bf16_native
    return dict(cpu=_cpuinfo('model name') or platform.processor() or '?',
                bf16_isa=','.join(f for f in ('avx512_bf16', 'avx512_vnni', 'amx_bf16') if f in flags) or 'none',
                native_bf16=cpu_bf16_native(), cores=os.cpu_count(), torch_threads=torch.get_num_threads(), torch=torch.__version__,
                gpu=torch.cuda.get_device_name() if torch.cuda.is_available() else None, load_avg_at_start=load, **extra)

def machine_line(m:dict=None) -> str:
    "`machine()` on one line"
    m = m or machine()
    return (f"CPU: {m['cpu']} | bf16 ISA: {m['bf16_isa']} | cores: {m['cores']} | torch threads: {m['torch_threads']} | "
            f"torch {m['torch']} | GPU: {m['gpu'] or 'none'} | load avg {m['load_avg_at_start']:.1f}")

def report(title:str, note:str, rows:list, out=None, m:dict=None) -> str:
    "A benchmark's markdown page (title, machine, a note on how it ran, its table rows), printed and written to `out`, a new file: a results file is never overwritten"
    md = f"# {title}\n\n{machine_line(m)}\n\n{note}\n\n" + '\n'.join(rows) + '\n'
    print(md)
    if out:
        with open(out, 'x') as f: f.write(md)
    return md
