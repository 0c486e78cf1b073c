"""Worker that tests/test_distributed.py launches with torchrun (CPU, gloo), and the shared set-up of the
single-process reference the test computes in its own process.

Usage: python -m torch.distributed.run --standalone --nproc_per_node 2 tests/distributed_worker.py MODE OUT_DIR
MODE: `checks` (first-step losses and gradients, BatchNorm, gathers, storage: one file per rank in OUT_DIR) or
`bench` (per-step time of the collectives against the step, printed by rank 0).
"""
import functools
import os
import random
import sys
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import architectures  # noqa: E402
import batch_mining  # noqa: E402
import criteria  # noqa: E402
import datasampler  # noqa: E402
import parameters  # noqa: E402
from runtime import distributed  # noqa: E402
from runtime.distributed_batchnorm import GlobalBatchNorm  # noqa: E402

# A global batch of 16 (4 classes × 4) drawn from 24 fixed random 16×16 images; 2 ranks get 8 each.
N_IMAGES, IMAGE_SIZE, EMBED_DIM, N_CLASSES = 24, 16, 16, 4
GLOBAL_BATCH = [5, 17, 2, 11, 23, 8, 0, 14, 20, 3, 9, 15, 6, 21, 12, 18]
IMAGE_LABELS = [index % N_CLASSES for index in range(N_IMAGES)]
EPOCH, N_EPOCHS = 1, 4  # the distillation weight (e/N)·α·τ² is non-zero in epoch 1
# float64, so that the comparison shows exact mathematics: in float32 a half batch per rank reorders the sums
# and moves gradients by up to 1e-5 relative (measured), rounding noise that would hide nothing but flake.
DTYPE = torch.float64
# loss key → (backbone, miner, extra flags); β of margin is learned (a parameter of the criterion). resnet18
# once (the real backbone's BatchNorm layout), a small BatchNorm network for the others (CPU time).
CASES = {
    'triplet_lsd': ('resnet18_normalize', 'distance', ['--kd_alpha', '50', '--kd_tau', '1']),
    'margin_lsd': ('tiny', 'distance', ['--kd_alpha', '50', '--kd_tau', '1', '--loss_margin_beta_lr', '0.01']),
    'multisimilarity': ('tiny', None, []),
    'proxynca': ('tiny', None, []),
}


class TinyBackbone(torch.nn.Module):
    """conv-BN-ReLU twice, pooling, a linear head and BatchNorm1d, unit embeddings; (embedding, features) like
    the backbones. No bias before a BatchNorm: its gradient would be zero up to rounding."""

    def __init__(self):
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
            torch.nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False), torch.nn.BatchNorm2d(16), torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
        self.head = torch.nn.Sequential(torch.nn.Linear(16, EMBED_DIM, bias=False), torch.nn.BatchNorm1d(EMBED_DIM))

    def forward(self, images):
        features = self.features(images)
        return torch.nn.functional.normalize(self.head(features), dim=1), features


def backbone(arch, opt):
    return TinyBackbone() if arch == 'tiny' else architectures.select(arch, opt)


def options(loss, flags, batch_size=len(GLOBAL_BATCH)):
    opt = parameters.read_arguments(['--loss', loss, '--arch', 'resnet18_normalize', '--not_pretrained',
                                     '--embed_dim', str(EMBED_DIM), '--bs', str(batch_size),
                                     '--samples_per_class', '4', '--n_epochs', str(N_EPOCHS)] + flags)
    opt.n_classes, opt.device, opt.pretrained = N_CLASSES, torch.device('cpu'), False
    return opt


def build_objective(loss, opt, batchminer):
    """The one adapter to the criteria package: (objective, criterion) with
    objective(embeddings, teacher_embeddings, labels, epoch) -> (total, parts) and `criterion` the module that
    owns the loss's parameters (margin β, proxies)."""
    objective, _ = criteria.build_objective(loss, opt, N_CLASSES, batchminer)

    def call(embeddings, teacher_embeddings, labels, epoch):
        return objective(embeddings, labels, teacher_embeddings=teacher_embeddings, epoch=epoch)
    return call, objective.ranking


def seed_all(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def fixed_images():
    generator = torch.Generator().manual_seed(1234)
    return torch.randn(N_IMAGES, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator)


def first_step(loss, world):
    """One training step of `loss` on GLOBAL_BATCH under `world` (a disabled World: the single-process run).
    Returns the loss, every backbone and criterion gradient (after the reduction) and the gathered indices."""
    arch, miner_name, flags = CASES[loss]
    opt = options(loss, flags)
    seed_all(0)
    model = backbone(arch, opt)
    teacher = None
    if criteria.is_lsd(loss):
        seed_all(1)  # a teacher different from the student, in train mode like the trainer's
        teacher = distributed.convert_batchnorm(backbone(arch, opt).to(DTYPE), world)
    model = distributed.convert_batchnorm(model.to(DTYPE), world)
    seed_all(2)
    miner = batch_mining.select(miner_name, opt) if miner_name else None
    objective, criterion = build_objective(loss, opt, miner)
    criterion.to(DTYPE)
    model.train()

    images, labels = fixed_images().to(DTYPE), torch.tensor(IMAGE_LABELS)
    local = next(iter(distributed.RankSliceBatchSampler([GLOBAL_BATCH], world)))
    local_indices = torch.tensor(local)
    seed_all(3)  # the miners' stream, the same on every rank
    embeddings = distributed.gather_with_grad(model(images[local_indices])[0], world)
    teacher_embeddings = None
    if teacher is not None:
        with torch.no_grad():
            teacher_embeddings = distributed.gather_plain(teacher(images[local_indices])[0], world)
    batch_labels = distributed.gather_plain(labels[local_indices], world)
    indices = distributed.gather_plain(local_indices, world)
    total, _ = objective(embeddings, teacher_embeddings, batch_labels, EPOCH)
    total.backward()
    distributed.all_reduce_gradients(model.parameters(), world)
    grads = {'model.' + name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    grads.update({'criterion.' + name: p.grad.clone() for name, p in criterion.named_parameters()
                  if p.grad is not None})
    if world.enabled:
        # identical on every rank: the reduced backbone gradients and the unreduced criterion gradients
        distributed.assert_in_sync(list(grads.values()), world, '{} gradients'.format(loss))
        optimizer = torch.optim.Adam([{'params': model.parameters(), 'lr': 1e-3},
                                      {'params': criterion.parameters(), 'lr': 1e-2}])
        optimizer.step()
        distributed.assert_in_sync(model, world, '{} backbone after a step'.format(loss))
        distributed.assert_in_sync(criterion, world, '{} criterion after a step'.format(loss))
        distributed.assert_rng_in_sync(world)
    return {'loss': total.detach(), 'grads': grads, 'indices': indices}


# ----------------------------------------------------------------------------------------------- BatchNorm

def batchnorm_inputs():
    generator = torch.Generator().manual_seed(7)
    draw = functools.partial(torch.randn, generator=generator, dtype=DTYPE)
    return {'2d': (draw(12, 5, 3, 3) * 3 + 1, draw(12, 5, 3, 3)), '1d': (draw(12, 6) - 2, draw(12, 6))}


def batchnorm_step(kind, world):
    """Normalise the slice of x, gather, loss Σ(w·y) + 0.1·Σy² on the global batch; returns output, input
    gradient, affine gradients and running statistics (GlobalBatchNorm under a world, BatchNorm otherwise)."""
    x, w = batchnorm_inputs()[kind]
    channels = x.shape[1]
    layer = GlobalBatchNorm(channels, momentum=0.3) if world.enabled else (
        torch.nn.BatchNorm2d if kind == '2d' else torch.nn.BatchNorm1d)(channels, momentum=0.3)
    layer.to(DTYPE)
    with torch.no_grad():
        layer.weight.copy_(torch.linspace(0.5, 1.5, channels))
        layer.bias.copy_(torch.linspace(-1, 1, channels))
    rows = torch.tensor(next(iter(distributed.RankSliceBatchSampler([list(range(len(x)))], world))))
    local = x[rows].clone().requires_grad_()
    output = distributed.gather_with_grad(layer(local), world)
    ((output * w).sum() + 0.1 * (output ** 2).sum()).backward()
    distributed.all_reduce_gradients(layer.parameters(), world)
    return {'output': output.detach(), 'input_grad': distributed.gather_plain(local.grad, world),
            'weight_grad': layer.weight.grad, 'bias_grad': layer.bias.grad,
            'running_mean': layer.running_mean.clone(), 'running_var': layer.running_var.clone()}


# ----------------------------------------------------------------------------------------------- storage

STORAGE_SIZES = [6, 2, 9, 4, 7, 3, 5, 8, 6, 10]  # 60 images


class TinyEmbedder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(12, 8)

    def forward(self, images):
        return torch.nn.functional.normalize(self.linear(images.flatten(1)), dim=1), images


class IndexedImages(torch.utils.data.Dataset):
    """Items (label, image, global index), as the datasets yield them."""

    def __init__(self, labels):
        self.labels = labels
        self.images = torch.randn(len(labels), 3, 2, 2, generator=torch.Generator().manual_seed(0))

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return self.labels[index], self.images[index], index


def storage_run(world):
    """greedy_coreset: storage built (and refreshed with momentum) over `world`, then one epoch's batches."""
    image_dict, image_list = {}, []
    for key, size in enumerate(STORAGE_SIZES):
        image_dict[key] = []
        for _ in range(size):
            image_dict[key].append(['/data/{}/{}.jpg'.format(key, len(image_list)), len(image_list)])
            image_list.append(('/data/{}/{}.jpg'.format(key, len(image_list)), key))
    opt = parameters.read_arguments(['--bs', '8', '--samples_per_class', '2', '--data_batchmatch_bigbs', '24',
                                     '--data_mb_mom', '0.5'])
    sampler = datasampler.select('greedy_coreset', opt, image_dict, image_list)
    loader = torch.utils.data.DataLoader(IndexedImages([label for _, label in image_list]), batch_size=7)
    seed_all(5)
    model = TinyEmbedder()
    sampler.create_storage(loader, model, 'cpu', world)
    first = sampler.storage.clone()
    with torch.no_grad():
        model.linear.weight.add_(0.1)
    sampler.full_storage_update(loader, model, 'cpu', world)
    seed_all(6)
    sampler.precompute_indices()
    return {'storage': first, 'updated': sampler.storage.clone(),
            'batches': torch.tensor(sampler.epoch_indices)}


def gathers(world):
    """gather_rows over uneven shards (n = 7) and the shard of each rank."""
    n = 7
    shard = distributed.shard_range(n, world)
    rows = torch.arange(n * 3, dtype=torch.float32).reshape(n, 3)[shard.start:shard.stop] * 10
    return {'rows': distributed.gather_rows(rows, world, n), 'shard': torch.tensor([shard.start, shard.stop])}


# ----------------------------------------------------------------------------------------------- modes

def detects(check):
    """Whether `check` raised the out-of-sync error (on a state made to differ between ranks)."""
    try:
        check()
    except distributed.DistributedError:
        return True
    return False


def drift_probes(world):
    with distributed.preserved_random_state():
        torch.manual_seed(world.rank)
        random_states = detects(lambda: distributed.assert_rng_in_sync(world))
    return {'tensors': detects(lambda: distributed.assert_in_sync([torch.tensor([1.0, world.rank])], world)),
            'random_states': random_states}


def checks(world, out_dir):
    results = {'drift_probes': drift_probes(world),'first_step': {loss: first_step(loss, world) for loss in CASES},
               'batchnorm': {kind: batchnorm_step(kind, world) for kind in ('2d', '1d')},
               'storage': storage_run(world), 'gathers': gathers(world)}
    distributed.assert_in_sync([results['storage'][key] for key in ('storage', 'updated', 'batches')], world,
                               'storage')
    torch.save(results, os.path.join(out_dir, 'rank{}.pt'.format(world.rank)))


def bench(world, steps=6, batch_size=40):
    """Per-step time of resnet18 (global batch 40, 64×64 images) and of its collectives alone."""
    opt = options('margin', [], batch_size=batch_size)
    seed_all(0)
    model = distributed.convert_batchnorm(architectures.select(opt.arch, opt), world)
    miner = batch_mining.select('distance', opt)
    objective, criterion = build_objective('margin', opt, miner)
    images = torch.randn(batch_size // world.world_size, 3, 64, 64)
    labels = (torch.arange(batch_size // world.world_size) + world.rank * batch_size // world.world_size) % N_CLASSES
    timings = {'step': [], 'gathers': [], 'all_reduce': []}
    for _ in range(steps):
        model.zero_grad()
        start = time.perf_counter()
        local = model(images)[0]
        t0 = time.perf_counter()
        embeddings = distributed.gather_with_grad(local, world)
        batch_labels = distributed.gather_plain(labels, world)
        t1 = time.perf_counter()
        total, _ = objective(embeddings, None, batch_labels, 0)
        total.backward()
        t2 = time.perf_counter()
        distributed.all_reduce_gradients(model.parameters(), world)
        t3 = time.perf_counter()
        timings['step'].append(t3 - start)
        timings['gathers'].append(t1 - t0)
        timings['all_reduce'].append(t3 - t2)
    if world.is_main:
        median = {key: float(np.median(values[1:])) for key, values in timings.items()}
        print('bench world {} threads {}: step {:.3f}s, gathers {:.4f}s, gradient all-reduce {:.4f}s'.format(
            world.world_size, torch.get_num_threads(), median['step'], median['gathers'], median['all_reduce']))


def main(mode, out_dir=None):
    world = distributed.init_from_environment('cpu')
    if mode == 'checks':
        distributed.run_guarded(checks, world, world, out_dir)
    elif mode == 'bench':
        distributed.run_guarded(bench, world, world)
    distributed.shutdown(world)


if __name__ == '__main__':
    main(*sys.argv[1:])
