"""One epoch of the baseline trainer in reference mode and in fast mode, on a generated CUB-size tree.

    python bench/gpu_epoch.py            # CUDA machine: ResNet50, bs 112, 100 classes x 30 JPEGs 500x375
    python bench/gpu_epoch.py --tiny     # any machine, < 1 minute: ResNet18, 8 classes x 4 images of 64x64
    python bench/gpu_epoch.py --arch timm/vit_small_patch16_224_normalize --modes fast   # ViT-S/16, bf16 (CUDA)
    python bench/gpu_epoch.py --tiny --arch timm/test_vit_normalize --input_size 64  # a tiny ViT on the CPU
    python bench/gpu_epoch.py --modes fast --per_class 120 --bs 1792 --batch_chunk 112  # chunks of 112 (CUDA)

reference: --amp off --channels_last off --data_pipeline reference --eval_cache none (fp32, PIL pipeline)
fast:      --amp bf16 --channels_last on --data_pipeline fast --eval_cache gpu (without CUDA: --amp off and
           --eval_cache cpu, see --fast_amp; bf16 autocast on a CPU without bf16 units is emulated, measured 10x
           slower than float32 on a 2-core EPYC: that times the CPU's emulation, not the pipeline)

Each mode is a fresh process running main_original.py, so start-up, worker pools and CUDA memory are its
own. Per phase it prints wall seconds and images/s: training (the 'time' the trainer logs in
CSV_Logs/Data_Train_time.csv), and the Test and Train evaluation passes (timed around each pass,
training.loop.TrainingRun.evaluate_split: embedding, metrics and what the trainer does with them, with the
GPU synchronised before and after). Peak GPU memory is
torch.cuda.max_memory_allocated() of the trainer process, read in that process after the run.
"""
import argparse
import csv
import glob
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULT_TAG = 'GPU_EPOCH_RESULT '
MODES = {
    'reference': ['--amp', 'off', '--channels_last', 'off', '--data_pipeline', 'reference', '--eval_cache', 'none'],
    'fast': ['--amp', 'bf16', '--channels_last', 'on', '--data_pipeline', 'fast', '--eval_cache', 'gpu'],
}
GOAL = 0.5  # the fast epoch should take at most this share of the reference epoch


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--tiny', action='store_true', help='A CPU-sized run (ResNet18, 8 x 4 images, 64 px).')
    parser.add_argument('--classes', type=int, default=None, help='Classes in the tree (100; tiny 8).')
    parser.add_argument('--per_class', type=int, default=None, help='JPEGs per class (30; tiny 4).')
    parser.add_argument('--image_size', type=int, nargs=2, default=None, metavar=('WIDTH', 'HEIGHT'),
                        help='Generated image size (500 375, the CUB median; tiny 64 64).')
    parser.add_argument('--arch', default=None, help='--arch of the trainer (resnet50_frozen_normalize; '
                                                     'tiny resnet18_frozen_normalize; any timm/<model name>).')
    parser.add_argument('--input_size', type=int, default=None,
                        help="--input_size of the trainer (timm backbones; default: the model's own).")
    parser.add_argument('--bs', type=int, default=None, help='Batch size (112; tiny 8).')
    parser.add_argument('--kernels', type=int, default=None, help='Data workers (cpu count; tiny 0).')
    parser.add_argument('--epochs', type=int, default=1, help='Epochs per mode (1).')
    parser.add_argument('--modes', nargs='+', default=['reference', 'fast'], choices=sorted(MODES))
    parser.add_argument('--fast_amp', default='auto', choices=['auto', 'bf16', 'fp16', 'off'],
                        help='--amp of the fast mode (auto: bf16 with CUDA, off without).')
    parser.add_argument('--workdir', default=None, help='Keep the tree and the run folders here.')
    parser.add_argument('--json', default=None, help='Also write the figures to this JSON file.')
    parser.add_argument('--batch_chunk', type=int, default=0,
                        help='--batch_chunk of the trainer in every mode (0 = off): with --bs in the thousands, '
                             'the peak GPU memory is that of one chunk (docs/large_batches.md).')
    return parser


def resolve(args):
    """Fill the defaults of the full or the tiny run."""
    full = dict(classes=100, per_class=30, image_size=[500, 375], arch='resnet50_frozen_normalize', bs=112,
                kernels=os.cpu_count() or 1)
    tiny = dict(classes=8, per_class=4, image_size=[64, 64], arch='resnet18_frozen_normalize', bs=8, kernels=0)
    for key, value in (tiny if args.tiny else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.classes < 2 or args.per_class < 2:
        raise SystemExit('error: --classes and --per_class must be at least 2 (half the classes are test classes).')
    if args.bs % 2:
        raise SystemExit('error: --bs must be even (2 samples per class).')
    return args


# ----- the image tree ----------------------------------------------------------------------------------

def class_image(class_index, sample_index, width, height):
    """Class-coloured stripes with per-image noise: JPEG sizes and decode cost of photos, not of flat images."""
    rng = np.random.RandomState(1000 * class_index + sample_index)
    hue = (class_index * 0.618033988749895) % 1.0
    colour = 0.5 + 0.4 * np.cos(2 * np.pi * (hue + np.array([0, 1 / 3, 2 / 3])))
    angle = np.pi * (class_index % 7) / 7 + rng.uniform(-0.2, 0.2)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32) / max(width, height)
    stripes = 0.5 + 0.5 * np.sin(2 * np.pi * (3 + class_index % 5) * (xx * np.cos(angle) + yy * np.sin(angle))
                                 + rng.uniform(0, 2 * np.pi))
    image = colour[None, None, :] * (0.35 + 0.65 * stripes[..., None]) * 255
    image = image + rng.normal(0, 14, size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def write_class(task):
    from PIL import Image
    root, class_index, per_class, width, height = task
    name = 'Bird_{:03d}'.format(class_index + 1)
    folder = os.path.join(root, 'cub200', 'images', '{:03d}.{}'.format(class_index + 1, name))
    os.makedirs(folder, exist_ok=True)
    for sample in range(per_class):
        path = os.path.join(folder, '{}_{:04d}_{}.jpg'.format(name, sample + 1, 796000 + 97 * class_index + sample))
        Image.fromarray(class_image(class_index, sample, width, height)).save(path, quality=90)


def make_tree(root, classes, per_class, width, height):
    """`<root>/cub200/images/NNN.Bird_NNN/*.jpg`, the CUB200 layout; returns the number of bytes written."""
    tasks = [(root, c, per_class, width, height) for c in range(classes)]
    workers = min(len(tasks), os.cpu_count() or 1)
    if workers > 1:
        with multiprocessing.get_context('spawn').Pool(workers) as pool:
            pool.map(write_class, tasks)
    else:
        for task in tasks:
            write_class(task)
    return sum(os.path.getsize(p) for p in glob.glob(os.path.join(root, 'cub200', 'images', '*', '*.jpg')))


# ----- one trainer process -----------------------------------------------------------------------------

def child(trainer_argv):
    """Inside the trainer process: time the evaluation passes, run main_original.py, report one JSON line."""
    sys.path.insert(0, ROOT)
    import runpy

    import torch

    from training.loop import TrainingRun
    cuda = torch.cuda.is_available()
    passes = []
    evaluate_split = TrainingRun.evaluate_split

    def timed_evaluate_split(run, *args, **kwargs):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        try:
            return evaluate_split(run, *args, **kwargs)
        finally:
            if cuda:
                torch.cuda.synchronize()
            passes.append((kwargs['log_key'], time.perf_counter() - start))

    TrainingRun.evaluate_split = timed_evaluate_split  # the class main_original.py's run is made of
    sys.argv = [os.path.join(ROOT, 'main_original.py')] + list(trainer_argv)
    start = time.perf_counter()
    status = 0
    try:
        runpy.run_path(sys.argv[0], run_name='__main__')
    except SystemExit as stop:
        status = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    result = {'status': status, 'wall': time.perf_counter() - start, 'passes': passes, 'cuda': cuda,
              'peak_allocated': torch.cuda.max_memory_allocated() if cuda else None,
              'peak_reserved': torch.cuda.max_memory_reserved() if cuda else None,
              'device': torch.cuda.get_device_name() if cuda else 'cpu'}
    print(RESULT_TAG + json.dumps(result), flush=True)
    return status


def read_column(folder, name):
    """Every value of one column of the trainer's CSV logs (empty when the file is missing)."""
    for path in glob.glob(os.path.join(folder, 'CSV_Logs', '*.csv')):
        with open(path, newline='') as handle:
            rows = list(csv.reader(handle))
        if rows and name in rows[0] and ('Train' in os.path.basename(path) or name != 'time'):
            column = rows[0].index(name)
            return [float(row[column]) for row in rows[1:] if len(row) > column and row[column] != '']
    return []


def run_mode(mode, args, source, save, cuda):
    flags = list(MODES[mode])
    if mode == 'fast' and not cuda:
        flags[flags.index('--eval_cache') + 1] = 'cpu'  # no GPU memory to cache in
    if mode == 'fast':
        flags[flags.index('--amp') + 1] = args.fast_amp if args.fast_amp != 'auto' else 'bf16' if cuda else 'off'
    trainer_argv = ['--dataset', 'cub200', '--source_path', source, '--save_path', save, '--savename', mode,
                    '--arch', args.arch, '--not_pretrained', '--bs', str(args.bs), '--samples_per_class', '2',
                    '--loss', 'margin', '--batch_mining', 'distance', '--n_epochs', str(args.epochs),
                    '--kernels', str(args.kernels), '--seed', '0', '--embed_dim', '128'] + flags
    if args.input_size:
        trainer_argv += ['--input_size', str(args.input_size)]
    if args.batch_chunk:
        trainer_argv += ['--batch_chunk', str(args.batch_chunk)]
    if cuda:
        trainer_argv.append('--evaluate_on_gpu')
    print('\n=== {} mode: main_original.py {}'.format(mode, ' '.join(trainer_argv)), flush=True)
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    process = subprocess.run([sys.executable, os.path.abspath(__file__), '--_child', json.dumps(trainer_argv)],
                             cwd=ROOT, env=env, capture_output=True, text=True)
    result = None
    for line in process.stdout.splitlines():
        if line.startswith(RESULT_TAG):
            result = json.loads(line[len(RESULT_TAG):])
    if process.returncode != 0 or result is None or result['status'] != 0:
        sys.stdout.write(process.stdout[-4000:])
        sys.stderr.write(process.stderr[-4000:])
        raise SystemExit('error: the {} run failed (exit {}).'.format(mode, process.returncode))
    folder = os.path.join(save, 'cub200', mode)
    result['training'] = sum(read_column(folder, 'time')) or None
    result['steps'] = len(read_column(folder, 'Grad L2'))
    return result


def phase_table(mode, result, args):
    """[(phase, seconds, images)] of one mode."""
    n_train = (args.classes // 2) * args.per_class
    n_test = (args.classes - args.classes // 2) * args.per_class
    steps = result['steps'] or args.epochs * (n_train // args.bs)
    rows = [('training', result['training'], steps * args.bs)]
    for key, images in (('Test', n_test), ('Train', n_train)):
        seconds = [s for log_key, s in result['passes'] if log_key == key]
        rows.append(('{} pass'.format(key), sum(seconds) if seconds else None, images * len(seconds)))
    known = [seconds for _, seconds, _ in rows if seconds is not None]
    rows.append(('epoch', sum(known) if len(known) == len(rows) else None, None))
    return rows


def report(results, args):
    print('\n=== images/s per phase ({} epoch(s), {} classes x {} images of {}x{}, {}, bs {}, {} workers)'.format(
        args.epochs, args.classes, args.per_class, args.image_size[0], args.image_size[1], args.arch,
        '{} in chunks of {}'.format(args.bs, args.batch_chunk) if args.batch_chunk else args.bs, args.kernels))
    tables = {mode: phase_table(mode, result, args) for mode, result in results.items()}
    print('{:<12}'.format('phase') + ''.join('{:>26}'.format(mode) for mode in tables) +
          ('{:>18}'.format('fast/reference') if len(tables) == 2 else ''))
    summary = {}
    for index, (phase, _, _) in enumerate(next(iter(tables.values()))):
        line = '{:<12}'.format(phase)
        for mode, rows in tables.items():
            _, seconds, images = rows[index]
            if seconds is None:
                cell = 'n/a'
            elif images:
                cell = '{:8.2f} s {:8.1f} img/s'.format(seconds, images / seconds)
            else:
                cell = '{:8.2f} s'.format(seconds)
            line += '{:>26}'.format(cell)
            summary.setdefault(mode, {})[phase] = seconds
        if set(tables) == {'reference', 'fast'}:
            ref, fast = tables['reference'][index][1], tables['fast'][index][1]
            ratio = fast / ref if ref and fast is not None else None
            line += '{:>18}'.format('n/a' if ratio is None else '{:.3f}'.format(ratio))
            summary.setdefault('ratio', {})[phase] = ratio
        print(line)
    for mode, result in results.items():
        if result['peak_allocated'] is not None:
            print('peak GPU memory ({}, {}): {:.2f} GiB allocated, {:.2f} GiB reserved (max_memory_allocated/'
                  'reserved of the trainer process)'.format(mode, result['device'], result['peak_allocated'] / 2 ** 30,
                                                            result['peak_reserved'] / 2 ** 30))
        else:
            print('peak GPU memory ({}): n/a, no CUDA'.format(mode))
        print('{} process wall time, start-up included: {:.1f} s'.format(mode, result['wall']))
    ratio = summary.get('ratio', {}).get('epoch')
    if ratio is not None:
        print('goal fast epoch <= {:.1f} x reference epoch: {} (ratio {:.3f})'.format(
            GOAL, 'MET' if ratio <= GOAL else 'NOT MET', ratio))
    return {'args': vars(args), 'results': results, 'seconds': summary}


def main(argv=None):
    args = resolve(build_parser().parse_args(argv))
    import torch
    cuda = torch.cuda.is_available()
    workdir = args.workdir or tempfile.mkdtemp(prefix='gpu_epoch_')
    os.makedirs(workdir, exist_ok=True)
    source, save = os.path.join(workdir, 'data'), os.path.join(workdir, 'runs')
    try:
        start = time.perf_counter()
        if not os.path.isdir(os.path.join(source, 'cub200', 'images')):
            size = make_tree(source, args.classes, args.per_class, *args.image_size)
            print('generated {} JPEGs ({:.1f} MB) in {:.1f} s under {}'.format(
                args.classes * args.per_class, size / 1e6, time.perf_counter() - start, source))
        results = {mode: run_mode(mode, args, source, save, cuda) for mode in args.modes}
        summary = report(results, args)
        if args.json:
            with open(args.json, 'w') as handle:
                json.dump(summary, handle, indent=1)
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == '__main__':
    if len(sys.argv) == 3 and sys.argv[1] == '--_child':
        sys.exit(child(json.loads(sys.argv[2])))
    sys.exit(main())
