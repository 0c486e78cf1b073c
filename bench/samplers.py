"""Cost of each batch sampler.

Part 1 trains `main_original.py`'s loop on a synthetic CUB tree (tests/synthetic_data.py) with every sampler and
prints the time per epoch (index precomputation + training pass) relative to class_random, measured in this one run,
plus the one-off storage creation time.
Part 2 times one epoch of `precompute_indices` on a random SOP-size storage (default 60 000 × 128, bs 112, bigbs 512)
in a fresh process per sampler and reports that process's peak memory above the storage itself.

    python3 bench/samplers.py [--classes 8 --per_class 8 --bs 16 --epochs 2] [--storage_size 60000] [--skip_training]
"""
import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, 'tests')]

SAMPLERS = ['class_random', 'full_random', 'greedy_coreset', 'd2_coreset', 'disthist_batchmatch', 'fid_batchmatch']


def memory_mib(key):
    """VmRSS (current) or VmHWM (peak) of this process, from /proc."""
    with open('/proc/self/status') as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith(key)) / 1024


def training_epochs(args):
    """Seconds per epoch (precompute_indices + train_one_epoch) and storage creation, per sampler."""
    import torch

    import synthetic_data
    from training import loop
    root = tempfile.mkdtemp(prefix='bench_samplers_')
    synthetic_data.make_cub200(root, n_classes=args.classes, per_class=args.per_class)
    results = {}
    for name in SAMPLERS:
        argv = ['--dataset', 'cub200', '--source_path', root, '--save_path', os.path.join(root, 'runs'),
                '--savename', name, '--arch', 'resnet18_normalize', '--not_pretrained', '--bs', str(args.bs),
                '--samples_per_class', '2', '--kernels', '0', '--embed_dim', '32', '--loss', 'triplet',
                '--n_epochs', str(args.epochs), '--no_train_metrics', '--data_sampler', name,
                '--data_batchmatch_bigbs', str(args.bigbs)]
        opt = loop.parameters.read_arguments(argv)
        start = time.perf_counter()
        run = loop.TrainingRun(opt, lsd_trainer=False)
        setup_seconds = time.perf_counter() - start
        epoch_seconds = []
        for epoch in range(args.epochs):
            start = time.perf_counter()
            opt.epoch = epoch
            if run.sampler.requires_storage:
                run.sampler.precompute_indices()
            run.train_one_epoch(epoch)
            epoch_seconds.append(time.perf_counter() - start)
        storage = 'storage' if run.sampler.requires_storage else ''
        results[name] = (sum(epoch_seconds) / len(epoch_seconds), setup_seconds, storage)
    base = results['class_random'][0]
    print(f'\nSynthetic CUB: {args.classes} classes × {args.per_class} images (training half), bs {args.bs}, '
          f'resnet18 (random init), {args.epochs} epochs, {torch.get_num_threads()} threads')
    print(f'{"sampler":22s}{"s/epoch":>10s}{"× class_random":>16s}{"run set-up s":>14s}')
    for name, (seconds, setup_seconds, storage) in results.items():
        print(f'{name:22s}{seconds:10.2f}{seconds / base:16.2f}{setup_seconds:14.2f}  {storage}')


def one_precompute(name, size, dim):
    """Runs in its own process: peak memory of one precompute_indices epoch over a random storage."""
    import torch

    import datasampler
    import parameters
    from test_datasampler import make_index
    torch.manual_seed(0)
    per_class = 5
    image_dict, image_list = make_index([per_class] * (size // per_class))
    opt = parameters.read_arguments(['--data_sampler', name])
    sampler = datasampler.select(name, opt, image_dict, image_list)
    sampler.storage = torch.nn.functional.normalize(torch.randn(len(image_list), dim), dim=1)
    epoch_length, sampler.sampler_length = sampler.sampler_length, 1
    sampler.precompute_indices()  # warm-up: first-call kernel and LAPACK initialisation
    sampler.sampler_length = epoch_length
    gc.collect()
    before = memory_mib('VmRSS:')
    start = time.perf_counter()
    sampler.precompute_indices()
    seconds = time.perf_counter() - start
    print(json.dumps({'seconds': seconds, 'batches': len(sampler), 'peak_above_mib': memory_mib('VmHWM:') - before}))


def precompute_costs(args):
    print(f'\nprecompute_indices, one epoch, storage {args.storage_size} × {args.dim} (bs 112, spc 2, bigbs 512, '
          f'ncomps 10), fresh process each, after a one-batch warm-up; peak = VmHWM − VmRSS before the epoch, '
          f'glibc mmap threshold pinned at 64 KiB (with the default dynamic threshold, heap fragmentation can keep '
          f'RSS a few hundred MiB higher)')
    print(f'{"sampler":22s}{"batches":>9s}{"seconds":>10s}{"ms/batch":>10s}{"peak MiB":>10s}')
    for name in SAMPLERS[2:]:
        output = subprocess.run([sys.executable, __file__, '--one', name, '--storage_size', str(args.storage_size),
                                 '--dim', str(args.dim)], capture_output=True, text=True, check=True,
                                env=dict(os.environ, MALLOC_MMAP_THRESHOLD_='65536')).stdout
        result = json.loads(output.strip().splitlines()[-1])
        print(f'{name:22s}{result["batches"]:9d}{result["seconds"]:10.2f}'
              f'{1000 * result["seconds"] / result["batches"]:10.1f}{result["peak_above_mib"]:10.0f}')


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--classes', type=int, default=8, help='synthetic CUB classes (half are training classes)')
    parser.add_argument('--per_class', type=int, default=8)
    parser.add_argument('--bs', type=int, default=16)
    parser.add_argument('--bigbs', type=int, default=32, help='--data_batchmatch_bigbs of the training part')
    parser.add_argument('--epochs', type=int, default=2)
    parser.add_argument('--storage_size', type=int, default=60000)
    parser.add_argument('--dim', type=int, default=128)
    parser.add_argument('--skip_training', action='store_true')
    parser.add_argument('--skip_storage', action='store_true')
    parser.add_argument('--one', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        one_precompute(args.one, args.storage_size, args.dim)
        return
    if not args.skip_training:
        training_epochs(args)
    if not args.skip_storage:
        precompute_costs(args)


if __name__ == '__main__':
    main()
