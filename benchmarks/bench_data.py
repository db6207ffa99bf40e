#!/usr/bin/env python
"""Throughput of the superpixel data pipeline: faithful mode (SLIC on every augmented item, every epoch) against
cached mode (SLIC once per image, then the random crop/flip applied to image and map together), side by side.

    python benchmarks/bench_data.py [--n 200] [--workers 0]

Measures training items/s through `SuperpixelDataset` + fastai `TfmdDL` for the built-in data at 64x64 and at
224x224, over one epoch each: cached mode is timed cold (the epoch that fills the cache) and warm (later epochs), warm
both from the disk cache alone (ram_cache_mb=0: each item's image decoded and its map read again) and with the dataset's
memory cache (the default: from the second epoch on, no file is read)."""
import argparse, shutil, tempfile, time
from pathlib import Path
from pixelperception.data.synthetic import build_synthetic
from pixelperception.data.datasets import folder_items, SuperpixelDataset, SuperpixelDL
from pixelperception.data.superpixels import SuperpixelCache
from _machine import machine_line as machine

def epoch(ds, bs, workers):
    dl = SuperpixelDL(ds, bs=bs, shuffle=True, num_workers=workers, device='cpu')
    t = time.perf_counter(); n = 0
    for x, g, y in dl: n += len(y)
    return n / (time.perf_counter() - t)

def main(n=200, workers=0, bs=32):
    tmp = Path(tempfile.mkdtemp())
    print(f"machine: {machine()}\nimages per epoch: {n}, batch size {bs}, data-loader workers {workers}\n")
    print(f"{'size':>8} {'faithful img/s':>15} {'cached cold':>12} {'warm, disk':>11} {'warm, memory':>13} {'memory/disk':>12} {'memory/faithful':>16}")
    try:
        for size in (64, 224):
            root = build_synthetic(tmp/f'syn{size}', n_train=max(1, n//10), n_val=1, size=size, progress=False)
            it = folder_items(root/'data'/'obj'/'train')
            kw = dict(size=size, policy='synthetic', train=True, n_segments=100, compactness=20.)
            faithful = epoch(SuperpixelDataset(it, sp_mode='faithful', **kw), bs, workers)
            cache = SuperpixelCache(tmp/f'cache{size}')
            ds = SuperpixelDataset(it, sp_mode='cached', cache=cache, **kw)
            cold = epoch(ds, bs, workers); mem = epoch(ds, bs, workers)
            disk = epoch(SuperpixelDataset(it, sp_mode='cached', cache=cache, ram_cache_mb=0, **kw), bs, workers)
            print(f"{f'{size}x{size}':>8} {faithful:15.1f} {cold:12.1f} {disk:11.1f} {mem:13.1f} {mem/disk:11.2f}x {mem/faithful:15.1f}x")
    finally: shutil.rmtree(tmp, ignore_errors=True)

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--n', type=int, default=200); ap.add_argument('--workers', type=int, default=0); ap.add_argument('--bs', type=int, default=32)
    a = ap.parse_args(); main(a.n, a.workers, a.bs)
