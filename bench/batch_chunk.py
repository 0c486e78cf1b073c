"""Peak memory and images/s of a training step against the batch size, with and without --batch_chunk.

    python bench/batch_chunk.py                        # CPU: resnet18 (frozen BN) at 64 px, bs 32..256, chunk 32
    python bench/batch_chunk.py --arch resnet50_frozen_normalize --size 224 --batches 112 448 1792 --chunk 112
    python bench/batch_chunk.py --activations --chunk 64   # ResNet-50 / ViT-S/16: memory per image, 80 GB estimates
    python bench/batch_chunk.py --overhead 5 --batches 128   # the second pass's extra time, one process
    python bench/batch_chunk.py --loss_memory 1024 2048 4096   # memory of the whole-batch LSD loss
    python bench/batch_chunk.py --figure docs/figures/batch_chunk.png --json out.json

Every configuration runs in a fresh process (`--one`), so one configuration's allocations never count in
another's peak. Each times `engine.train_one_epoch` (the trainer's step: multi-similarity, Adam, random images,
float32) over --steps steps after one warm-up step. Peak memory: on CUDA torch.cuda.max_memory_allocated() of
the timed steps; on the CPU the growth of the process's peak resident set (ru_maxrss) over its resident set
once the network and the images exist, which also counts the gradients and Adam's two moments (three times the
weights: a constant offset, about 130 MiB for resnet18) besides the activations. `--activations` measures the bytes
autograd saves for the backward pass per image (saved-tensor hooks, each storage counted once) at 224 px,
which bounds the batch of an unchunked step.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
RESULT_TAG = 'BATCH_CHUNK_RESULT '
ACTIVATION_ARCHS = {'ResNet-50': 'resnet50_frozen_normalize', 'ViT-S/16': 'timm/vit_small_patch16_224_normalize'}


def resident_bytes():
    with open('/proc/self/statm') as handle:
        return int(handle.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


def options(arch, batch_size, size, embed_dim=128):
    import architectures
    import parameters
    flags = ['--loss', 'multisimilarity', '--arch', arch, '--not_pretrained', '--embed_dim', str(embed_dim),
             '--bs', str(batch_size), '--samples_per_class', '4']
    if architectures.backbone_config(arch)['accepts_recipe_flags']:   # --input_size applies to it
        flags += ['--input_size', str(size)]
    return parameters.read_arguments(flags)


def training_step_parts(arch, batch_size, size):
    """(device, network, multisimilarity objective, Adam) of one benchmarked configuration, seeded."""
    import torch
    import architectures
    import criteria
    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    opt = options(arch, batch_size, size)
    torch.manual_seed(0)
    model = architectures.select(arch, opt).to(device)
    objective, groups = criteria.build_objective('multisimilarity', opt, max(2, batch_size // 4), None)
    objective.to(device)
    optimizer = torch.optim.Adam([{'params': list(model.parameters()), 'lr': 1e-5}] + groups)
    return device, model, objective, optimizer


def one(arch, batch_size, chunk, size, steps):
    """Time `steps` trainer steps (after one warm-up step) in this process; returns the figures."""
    import torch
    from training import engine
    from runtime.precision import Precision
    cuda = torch.cuda.is_available()
    device, model, objective, optimizer = training_step_parts(arch, batch_size, size)
    labels = torch.arange(batch_size) // 4
    batches = [(labels, torch.randn(batch_size, 3, size, size), torch.arange(batch_size)) for _ in range(steps + 1)]
    precision = Precision('off', 'off', device)

    def run(loader):
        return engine.train_one_epoch(model, objective, optimizer, loader, 0, device=device, precision=precision,
                                      normalise=lambda images: images, batch_chunk=chunk)
    before = resident_bytes()   # the network and the images
    run(batches[:1])   # warm-up: allocator, Adam's state, kernels
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    run(batches[1:])
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = (torch.cuda.max_memory_allocated() if cuda
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before)
    return {'arch': arch, 'batch_size': batch_size, 'chunk': chunk, 'size': size, 'steps': steps,
            'device': 'cuda' if cuda else 'cpu', 'peak_bytes': peak, 'seconds': seconds,
            'images_per_s': steps * batch_size / seconds, 'threads': torch.get_num_threads()}


def overhead(arch, batch_size, chunk, size, rounds):
    """Seconds of an unchunked and a chunked step, alternating in one process (so that a busy machine slows
    both alike); the median of `rounds` each after one warm-up step of each."""
    import statistics
    import torch
    from training import engine
    from runtime.precision import Precision
    device, model, objective, optimizer = training_step_parts(arch, batch_size, size)
    batch = [(torch.arange(batch_size) // 4, torch.randn(batch_size, 3, size, size), torch.arange(batch_size))]
    precision = Precision('off', 'off', device)
    seconds = {0: [], chunk: []}
    for round_ in range(rounds + 1):
        for value in (0, chunk):
            if device.type == 'cuda':
                torch.cuda.synchronize()
            start = time.perf_counter()
            engine.train_one_epoch(model, objective, optimizer, batch, 0, device=device, precision=precision,
                                   normalise=lambda images: images, batch_chunk=value)
            if device.type == 'cuda':
                torch.cuda.synchronize()
            if round_:
                seconds[value].append(time.perf_counter() - start)
    plain, chunked = statistics.median(seconds[0]), statistics.median(seconds[chunk])
    return {'arch': arch, 'batch_size': batch_size, 'chunk': chunk, 'size': size, 'rounds': rounds,
            'seconds_unchunked': plain, 'seconds_chunked': chunked, 'extra': chunked / plain - 1}


def activations(arch, size=224, batch_size=2):
    """Bytes autograd saves for the backward of one image (batch of `batch_size`, each storage once), and the
    parameter count."""
    import torch
    import architectures
    opt = options(arch, batch_size, size)
    torch.manual_seed(0)
    model = architectures.select(arch, opt).train()
    storages = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor
    parameters_ = {p.untyped_storage().data_ptr() for p in model.parameters()}
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        output = model(torch.randn(batch_size, 3, size, size))
    output = output[0] if isinstance(output, tuple) else output
    saved = sum(nbytes for pointer, nbytes in storages.items() if pointer not in parameters_)
    output.sum().backward()
    return {'arch': arch, 'size': size, 'batch_size': batch_size, 'saved_bytes_per_image': saved / batch_size,
            'parameters': sum(p.numel() for p in model.parameters())}


def loss_memory(batch_size, loss='margin_lsd', embed_dim=128):
    """Peak bytes of the whole-batch loss of a chunked step (miner, ranking loss and LSD's distillation term,
    forward and backward, float32) on `batch_size` random embeddings: what bounds a chunked step's batch."""
    import torch
    import batch_mining
    import criteria
    opt = options('resnet50_frozen_normalize', batch_size, 224, embed_dim)
    opt.loss, opt.batch_mining = loss, 'distance'
    miner = batch_mining.select('distance', opt, loss=loss)
    objective, _ = criteria.build_objective(loss, opt, batch_size // 4, miner)
    torch.manual_seed(0)
    embeddings = torch.nn.functional.normalize(torch.randn(batch_size, embed_dim), dim=1).requires_grad_()
    teacher = torch.nn.functional.normalize(torch.randn(batch_size, embed_dim), dim=1)
    labels = torch.arange(batch_size) // 4
    before = resident_bytes()
    total, _ = objective(embeddings, labels, teacher_embeddings=teacher, epoch=1)
    total.backward()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    return {'loss': loss, 'batch_size': batch_size, 'peak_bytes': peak, 'bytes_per_pair': peak / batch_size ** 2}


def in_fresh_process(arguments):
    done = subprocess.run([sys.executable, os.path.abspath(__file__)] + [str(a) for a in arguments], cwd=ROOT,
                          capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_TAG)]
    if done.returncode != 0 or not lines:
        raise RuntimeError('{} failed: {}'.format(arguments, done.stderr[-2000:]))
    return json.loads(lines[-1][len(RESULT_TAG):])


def estimate_largest_batch(per_image_bytes, n_parameters, budget=80e9, context=3e9):
    """Images of one unchunked float32 step that fit into `budget` bytes: what is left after the weights,
    their gradients and Adam's two moments (16 bytes a parameter) and `context` bytes of CUDA context,
    cuDNN workspace and allocator slack (an assumption), divided by the saved activations of one image."""
    return int((budget - 16 * n_parameters - context) // per_image_bytes)


def estimate_largest_chunked_batch(bytes_per_pair, chunk_bytes, n_parameters, size=224, budget=80e9, context=3e9):
    """Images of one chunked float32 step that fit into `budget` bytes: the whole-batch loss grows with the
    square of the batch (`bytes_per_pair`, measured by --loss_memory), the normalised float32 images of the
    batch (3·size²·4 bytes each) stay on the device, one chunk's activations (`chunk_bytes`) and the fixed part
    of `estimate_largest_batch` come on top. Solves a·B² + b·B = left for B."""
    left = budget - 16 * n_parameters - context - chunk_bytes
    per_image = 3 * size * size * 4
    return int((-per_image + (per_image ** 2 + 4 * bytes_per_pair * left) ** 0.5) / (2 * bytes_per_pair))


def draw(rows, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    figure, (memory, speed) = plt.subplots(1, 2, figsize=(9, 3.4))
    for chunked, style in ((False, 'o-'), (True, 's--')):
        picked = sorted((row for row in rows if bool(row['chunk']) == chunked), key=lambda row: row['batch_size'])
        if not picked:
            continue
        label = 'chunks of {}'.format(picked[0]['chunk']) if chunked else 'no chunks'
        sizes = [row['batch_size'] for row in picked]
        memory.plot(sizes, [row['peak_bytes'] / 2 ** 20 for row in picked], style, label=label)
        speed.plot(sizes, [row['images_per_s'] for row in picked], style, label=label)
    first = rows[0]
    for axis, title in ((memory, 'peak memory of the steps (MiB)'), (speed, 'images / s')):
        axis.set_xscale('log', base=2)
        axis.set_xlabel('batch size')
        axis.set_title(title, fontsize=10)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.suptitle('{} at {} px, one training step ({})'.format(first['arch'], first['size'], first['device']),
                    fontsize=10)
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=110)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--arch', default='resnet18_frozen_normalize')
    parser.add_argument('--size', type=int, default=64, help='Image side in pixels.')
    parser.add_argument('--batches', type=int, nargs='+', default=[32, 64, 128, 256])
    parser.add_argument('--chunk', type=int, default=32)
    parser.add_argument('--steps', type=int, default=2)
    parser.add_argument('--activations', action='store_true', help='Per-image activation memory at 224 px.')
    parser.add_argument('--figure', default=None, help='Draw the table into this PNG.')
    parser.add_argument('--json', default=None, help='Also write the figures to this JSON file.')
    parser.add_argument('--one', type=int, nargs=2, metavar=('BATCH', 'CHUNK'), help=argparse.SUPPRESS)
    parser.add_argument('--one_activation', default=None, help=argparse.SUPPRESS)
    parser.add_argument('--loss_memory', type=int, nargs='*', default=None, metavar='BATCH',
                        help='Peak memory of the whole-batch LSD loss (margin_lsd + distance miner) at these '
                             'batch sizes (default 1024 2048).')
    parser.add_argument('--one_loss', type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument('--overhead', type=int, default=0, metavar='ROUNDS',
                        help='Extra time of the second pass: unchunked and chunked steps of the first --batches '
                             'size alternating in one process, median of ROUNDS each.')
    args = parser.parse_args(argv)
    if args.one:
        print(RESULT_TAG + json.dumps(one(args.arch, args.one[0], args.one[1], args.size, args.steps)))
        return
    if args.one_activation:
        print(RESULT_TAG + json.dumps(activations(args.one_activation)))
        return
    if args.one_loss:
        print(RESULT_TAG + json.dumps(loss_memory(args.one_loss)))
        return
    if args.overhead:
        rows = [overhead(args.arch, args.batches[0], args.chunk, args.size, args.overhead)]
        print('{arch} at {size} px, batch {batch_size}: unchunked step {seconds_unchunked:.3f} s, chunks of {chunk} '
              '{seconds_chunked:.3f} s: the second pass costs {extra:+.0%} (median of {rounds})'.format(**rows[0]))
    elif args.loss_memory is not None:
        rows = []
        print('| batch | peak memory of the loss step (MiB) | bytes per pair |')
        print('|---|---|---|')
        for batch_size in args.loss_memory or [1024, 2048]:
            row = in_fresh_process(['--one_loss', batch_size])
            rows.append(row)
            print('| {} | {:.0f} | {:.1f} |'.format(batch_size, row['peak_bytes'] / 2 ** 20, row['bytes_per_pair']))
    elif args.activations:
        rows = []
        pair = in_fresh_process(['--one_loss', 4096])
        print('whole-batch loss (margin_lsd, distance miner, LSD term) at batch 4096: {:.0f} MiB, {:.1f} bytes per '
              'pair'.format(pair['peak_bytes'] / 2 ** 20, pair['bytes_per_pair']))
        print('| backbone | parameters | saved activations per image (MiB, float32, 224 px) | '
              'estimated largest batch in 80 GB without chunks | with --batch_chunk {} |'.format(args.chunk))
        print('|---|---|---|---|---|')
        for name, arch in ACTIVATION_ARCHS.items():
            row = in_fresh_process(['--one_activation', arch])
            row['estimated_largest_batch_80GB'] = estimate_largest_batch(row['saved_bytes_per_image'],
                                                                         row['parameters'])
            row['estimated_largest_chunked_batch_80GB'] = estimate_largest_chunked_batch(
                pair['bytes_per_pair'], args.chunk * row['saved_bytes_per_image'], row['parameters'])
            rows.append(dict(row, name=name, loss_bytes_per_pair=pair['bytes_per_pair'], chunk=args.chunk))
            print('| {} | {:.1f} M | {:.1f} | ~{} (estimate) | ~{} (estimate) |'.format(
                name, row['parameters'] / 1e6, row['saved_bytes_per_image'] / 2 ** 20,
                row['estimated_largest_batch_80GB'], row['estimated_largest_chunked_batch_80GB']))
    else:
        rows = []
        print('| batch | chunk | peak memory (MiB) | images/s | seconds |')
        print('|---|---|---|---|---|')
        for batch_size in args.batches:
            for chunk in (0, args.chunk):
                if chunk >= batch_size:
                    continue
                row = in_fresh_process(['--one', batch_size, chunk, '--arch', args.arch, '--size', args.size,
                                        '--steps', args.steps])
                rows.append(row)
                print('| {} | {} | {:.0f} | {:.1f} | {:.2f} |'.format(batch_size, chunk or '-',
                                                                     row['peak_bytes'] / 2 ** 20,
                                                                     row['images_per_s'], row['seconds']),
                      flush=True)
        if args.figure:
            draw(rows, args.figure)
    if args.json:
        with open(args.json, 'w') as handle:
            json.dump(rows, handle, indent=1)


if __name__ == '__main__':
    main()
