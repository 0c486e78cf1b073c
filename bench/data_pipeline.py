"""Images per second of the training and the evaluation data pipelines, fast vs reference.

Generates (in a temporary folder) a CUB-layout tree of photograph-like JPEGs (smooth random content plus
mild noise, about 500×375, quality 90), then times, in this one run:
  * training: one epoch through a DataLoader (random batches, --bs), after a warm-up epoch with the same
    persistent workers, in process (0 workers: the cost per core), with 1 worker and with N workers
    (N = os.cpu_count());
  * evaluation: an uncached pass (decode + Resize(256) + CenterCrop, as every pass without a cache and
    the first pass with one), timed after a warm-up pass, and, for the fast pipeline, a later pass from
    the --eval_cache cpu cache;
  * decode only, in this process: the floor both pipelines share.
The fast pipeline's normalisation (done on the device by the loop) is counted here, on the CPU, in the
main process. Each figure is the best of --repeats runs (the machine may be shared); ratios are fast over
reference.

    python3 bench/data_pipeline.py [--per_class 20 --classes 8 --bs 32 --repeats 3 --workers N] [--quick]
"""
import argparse
import os
import shutil
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

import datasets  # noqa: E402
import parameters  # noqa: E402
from datasets.decoding import decode_rgb  # noqa: E402


def photo_like(width, height, rng):
    low = Image.fromarray((rng.rand(6, 8, 3) * 255).astype(np.uint8)).resize((width, height), Image.BICUBIC)
    pixels = np.asarray(low).astype(np.float64) + rng.normal(0, 6, (height, width, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def make_tree(root, classes, per_class, size):
    """`<root>/cub200/images/NNN.Bird_k/<k>_<n>.jpg`; one image in four is portrait."""
    rng = np.random.RandomState(0)
    width, height = size
    for c in range(classes):
        folder = os.path.join(root, 'cub200', 'images', '{:03d}.Bird_{}'.format(c + 1, c))
        os.makedirs(folder)
        for s in range(per_class):
            w, h = (height, width) if s % 4 == 3 else (width, height)
            photo_like(w, h, rng).save(os.path.join(folder, '{}_{}.jpg'.format(c, s)), quality=90)
    return os.path.join(root, 'cub200')


def build(folder, pipeline, kernels):
    opt = parameters.read_arguments(['--data_pipeline', pipeline, '--kernels', str(kernels)])
    return opt, datasets.select('cub200', opt, folder)


def consume(loader, normalise):
    count = 0
    for batch in loader:
        count += normalise(batch[1]).shape[0]
    return count


def training_rate(folder, pipeline, workers, bs):
    """Images/s of one training epoch after a warm-up epoch (persistent workers, prefetching)."""
    opt, data = build(folder, pipeline, workers)
    training = data['training']
    order = torch.randperm(len(training), generator=torch.Generator().manual_seed(0)).tolist()
    sampler = datasets.EpochTaggedBatchSampler([order[i:i + bs] for i in range(0, len(order), bs)])
    loader = torch.utils.data.DataLoader(training, batch_sampler=sampler, **datasets.loader_options(opt, 'cpu'))
    normalise = datasets.device_normaliser(opt)
    consume(loader, normalise)
    sampler.set_epoch(1)
    start = time.perf_counter()
    count = consume(loader, normalise)
    return count / (time.perf_counter() - start)


def evaluation_rates(folder, pipeline, workers, bs):
    """(uncached pass, cached pass) images/s of the testing loader, the uncached one timed after a warm-up
    pass (persistent workers already started); cached only for the fast pipeline, timed after the pass
    that fills the cache."""
    opt, data = build(folder, pipeline, workers)
    loader = torch.utils.data.DataLoader(data['testing'], batch_size=bs, shuffle=False,
                                         **datasets.loader_options(opt, 'cpu'))
    normalise = datasets.device_normaliser(opt)
    consume(loader, normalise)
    start = time.perf_counter()
    count = consume(loader, normalise)
    first = count / (time.perf_counter() - start)
    if pipeline != 'fast':
        return first, None
    cache = datasets.CachedLoader(loader, 'cpu', 'cpu')
    consume(cache, normalise)
    start = time.perf_counter()
    count = consume(cache, normalise)
    return first, count / (time.perf_counter() - start)


def decode_rate(folder, n):
    paths = sorted(os.path.join(d, f) for d, _, files in os.walk(folder) for f in files)[:n]
    start = time.perf_counter()
    for path in paths:
        decode_rgb(path)
    return len(paths) / (time.perf_counter() - start)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--classes', type=int, default=8)
    parser.add_argument('--per_class', type=int, default=20)
    parser.add_argument('--width', type=int, default=500)
    parser.add_argument('--height', type=int, default=375)
    parser.add_argument('--bs', type=int, default=32)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--workers', type=int, default=os.cpu_count() or 1, help='N of the N-worker figures.')
    parser.add_argument('--quick', action='store_true',
                        help='A tiny run (for the test): 4×4 images of 160×120, in process only.')
    args = parser.parse_args(argv)
    if args.quick:
        args.classes, args.per_class, args.width, args.height, args.bs, args.repeats = 4, 4, 160, 120, 4, 1
        args.workers = 0
    torch.set_num_threads(1)
    root = tempfile.mkdtemp(prefix='bench_data_pipeline.')
    try:
        folder = make_tree(root, args.classes, args.per_class, (args.width, args.height))
        print('{} JPEGs of {}x{} (quality 90), bs {}, best of {} runs, N = {}'.format(
            args.classes * args.per_class, args.width, args.height, args.bs, args.repeats, args.workers))
        worker_counts = [0] if args.quick else sorted({0, 1, args.workers})
        rates = {}
        for _ in range(args.repeats):
            for workers in worker_counts:
                for pipeline in ('reference', 'fast'):
                    key = ('training', workers, pipeline)
                    rates[key] = max(rates.get(key, 0), training_rate(folder, pipeline, workers, args.bs))
                    first, again = evaluation_rates(folder, pipeline, workers, args.bs)
                    key = ('evaluation', workers, pipeline)
                    rates[key] = max(rates.get(key, 0), first)
                    if again is not None:
                        key = ('cached', workers, pipeline)
                        rates[key] = max(rates.get(key, 0), again)
            rates['decode'] = max(rates.get('decode', 0), decode_rate(folder, 64))
        print('{:<50}{:>12}{:>12}{:>9}'.format('images/s', 'reference', 'fast', 'ratio'))
        for workers in worker_counts:
            for kind, label in (('training', 'training, {} worker(s)'),
                                ('evaluation', 'evaluation uncached pass, {} worker(s)')):
                label = label.format(workers).replace('0 worker(s)', 'in process (per core)')
                ref, fast = rates[(kind, workers, 'reference')], rates[(kind, workers, 'fast')]
                print('{:<50}{:>12.1f}{:>12.1f}{:>8.2f}x'.format(label, ref, fast, fast / ref))
            ref, fast = rates[('evaluation', workers, 'reference')], rates[('cached', workers, 'fast')]
            label = ('evaluation cached pass vs reference, {} w.'.format(workers) if workers
                     else 'evaluation cached vs reference, in process')
            print('{:<50}{:>12.1f}{:>12.1f}{:>8.1f}x'.format(label, ref, fast, fast / ref))
        print('{:<50}{:>24.1f}'.format('decode only (1 core, in process)', rates['decode']))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == '__main__':
    main()
