"""Data parallelism under torchrun that keeps the single-process mathematics of metric learning.

The miner, the ranking loss and the listwise distillation term compare every sample of the batch with every
other one, so each rank embeds its contiguous slice of the global batch, the embeddings are gathered in rank
order, and every rank computes the *same* loss on the *same* global batch. The backward of the gather hands
each rank the gradient of its own slice only; summing the backbone gradients over ranks then gives exactly
the single-process gradient (no division by the world size). The criterion's own parameters (margin β,
proxies) receive the identical full gradient on every rank and are never reduced, so they cannot drift.

Every rank is seeded alike: the sampler draws the same global batch and the miners the same random stream.
A plain `python main.py` gets a disabled `World` and every helper here is then the identity.
"""
import contextlib
import datetime
import functools
import os
import random
import sys
import traceback
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.distributed as dist

# Long enough for rank 0's metric computation on the largest dataset while the others wait; finite, so a
# peer lost without a closed connection (another node) ends the job instead of hanging it.
DEFAULT_TIMEOUT_S = 1800
# Gradient all-reduce bucket: a few collectives per step instead of one per parameter tensor.
BUCKET_BYTES = 25 * 2 ** 20
TORCHRUN_VARIABLES = ('RANK', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT')


class DistributedError(Exception):
    """A wrong launch or a broken invariant of the data-parallel run: one line for the user."""


@dataclass(frozen=True)
class World:
    """Who this process is in the job; `enabled` is False for a single process (world_size 1)."""
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device('cpu'))
    enabled: bool = False

    @property
    def is_main(self):
        """Only the main rank writes files, checkpoints and W&B."""
        return self.rank == 0


def init_from_environment(device_kind, timeout_s=DEFAULT_TIMEOUT_S):
    """The World torchrun describes through its environment (NCCL on CUDA, gloo on the CPU); a single-process
    World when WORLD_SIZE is unset or 1. `device_kind` is 'cuda' or 'cpu'."""
    world_size = int(os.environ.get('WORLD_SIZE', '1'))
    if world_size <= 1:
        return World(device=torch.device(device_kind))
    missing = [name for name in TORCHRUN_VARIABLES if name not in os.environ]
    if missing:
        raise DistributedError('WORLD_SIZE={} but {} not set: launch with torchrun'.format(
            world_size, ', '.join(missing)))
    rank, local_rank = int(os.environ['RANK']), int(os.environ['LOCAL_RANK'])
    timeout = datetime.timedelta(seconds=timeout_s)
    if torch.device(device_kind).type == 'cuda':
        visible = torch.cuda.device_count()
        if local_rank >= visible:
            raise DistributedError('LOCAL_RANK {} has no CUDA device ({} visible): use --nproc_per_node <= {}'
                                   .format(local_rank, visible, visible))
        device = torch.device('cuda', local_rank)
        torch.cuda.set_device(device)
        dist.init_process_group('nccl', timeout=timeout, device_id=device)
    else:
        device = torch.device('cpu')
        dist.init_process_group('gloo', timeout=timeout)
    return World(rank=rank, world_size=world_size, local_rank=local_rank, device=device, enabled=True)


def shutdown(world):
    """Leave the process group at the end of a successful run."""
    if world.enabled and dist.is_initialized():
        dist.destroy_process_group()


def check_batch_size(bs, world):
    """--bs is the global batch: every rank must get a slice of the same size."""
    if bs % world.world_size != 0:
        raise DistributedError('--bs {} is not divisible by the world size {}'.format(bs, world.world_size))


# ----------------------------------------------------------------------------------------------- sampling

class RankSliceBatchSampler:
    """Yields this rank's contiguous slice of each global batch of `batch_sampler` (elements of any type).

    Every rank holds an identically seeded sampler, so they all draw the same global batches; the length is
    the number of global batches, unchanged. Other attributes (requires_storage, set_epoch, ...) are those of
    the wrapped sampler."""

    def __init__(self, batch_sampler, world):
        self.batch_sampler = batch_sampler
        self.world = world

    def __iter__(self):
        rank, size = self.world.rank, self.world.world_size
        for batch in self.batch_sampler:
            batch = list(batch)
            if len(batch) % size:
                raise DistributedError('a batch of {} samples cannot be split over the world size {}'.format(
                    len(batch), size))
            width = len(batch) // size
            yield batch[rank * width:(rank + 1) * width]

    def __len__(self):
        return len(self.batch_sampler)

    def set_epoch(self, epoch):
        if hasattr(self.batch_sampler, 'set_epoch'):
            self.batch_sampler.set_epoch(epoch)

    def __getattr__(self, name):
        if name == 'batch_sampler':
            raise AttributeError(name)
        return getattr(self.batch_sampler, name)


# ----------------------------------------------------------------------------------------------- gathers

class _GatherWithGrad(torch.autograd.Function):
    """all_gather in rank order; backward returns this rank's slice of the incoming gradient, unreduced,
    because every rank back-propagates the same loss (an all_reduce here would scale it by the world size)."""

    @staticmethod
    def forward(ctx, tensor, rank, world_size):
        parts = [torch.empty_like(tensor) for _ in range(world_size)]
        dist.all_gather(parts, tensor.contiguous())
        ctx.rank, ctx.rows = rank, tensor.shape[0]
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad):
        return grad[ctx.rank * ctx.rows:(ctx.rank + 1) * ctx.rows], None, None


def gather_with_grad(tensor, world):
    """The global batch of student embeddings (same slice size on every rank), differentiable."""
    if not world.enabled:
        return tensor
    return _GatherWithGrad.apply(tensor, world.rank, world.world_size)


def gather_plain(tensor, world):
    """All ranks' equal-sized slices in rank order, without gradient (labels, indices, teacher embeddings);
    returned on the tensor's own device."""
    if not world.enabled:
        return tensor
    tensor = torch.as_tensor(tensor)
    local = tensor.detach().to(world.device).contiguous()
    parts = [torch.empty_like(local) for _ in range(world.world_size)]
    dist.all_gather(parts, local)
    return torch.cat(parts).to(tensor.device)


def shard_range(n, world):
    """This rank's contiguous, disjoint share of 0..n-1 (sizes differ by at most one; nothing padded)."""
    base, extra = divmod(n, world.world_size)
    start = world.rank * base + min(world.rank, extra)
    return range(start, start + base + (world.rank < extra))


def gather_rows(local_rows, world, n):
    """The n rows of all shards (`shard_range`) in dataset order, on every rank and on local_rows' device."""
    if not world.enabled:
        return local_rows
    local_rows = torch.as_tensor(local_rows)
    sizes = [len(shard_range(n, World(rank, world.world_size))) for rank in range(world.world_size)]
    if local_rows.shape[0] != sizes[world.rank]:
        raise DistributedError('rank {} holds {} rows, its shard of {} has {}'.format(
            world.rank, local_rows.shape[0], n, sizes[world.rank]))
    padded = local_rows.new_zeros((max(sizes),) + tuple(local_rows.shape[1:]), device=world.device)
    padded[:sizes[world.rank]] = local_rows.detach().to(world.device)
    parts = [torch.empty_like(padded) for _ in range(world.world_size)]
    dist.all_gather(parts, padded)
    return torch.cat([part[:size] for part, size in zip(parts, sizes)]).to(local_rows.device)


def shard_loader(loader, world):
    """A loader over this rank's `shard_range` of `loader`'s dataset, with the same batch size, workers and
    collation; `loader` itself when single-process. Items keep their dataset index, order is preserved."""
    if not world.enabled:
        return loader
    if loader.batch_size is None:
        raise DistributedError('shard_loader needs a loader built with batch_size (not a batch_sampler)')
    subset = torch.utils.data.Subset(loader.dataset, shard_range(len(loader.dataset), world))
    return torch.utils.data.DataLoader(subset, batch_size=loader.batch_size, shuffle=False,
                                       num_workers=loader.num_workers, collate_fn=loader.collate_fn,
                                       pin_memory=loader.pin_memory, drop_last=False)


# ----------------------------------------------------------------------------------------------- gradients

def all_reduce_gradients(parameters, world, bucket_bytes=BUCKET_BYTES):
    """Sum the gradients of `parameters` (the backbone's) over ranks, in flat buckets: each rank holds the
    gradient of its own slice, the single-process gradient is their sum. Never pass the criterion's
    parameters: their gradient is already the full one on every rank."""
    if not world.enabled:
        return
    grads = [p.grad for p in parameters if p.grad is not None]
    buckets, current, current_bytes = [], [], 0
    for grad in grads:
        if grad.is_sparse:
            raise DistributedError('all_reduce_gradients: sparse gradients are not supported')
        if current and (grad.dtype != current[0].dtype or grad.device != current[0].device
                        or current_bytes + grad.numel() * grad.element_size() > bucket_bytes):
            buckets.append(current)
            current, current_bytes = [], 0
        current.append(grad)
        current_bytes += grad.numel() * grad.element_size()
    if current:
        buckets.append(current)
    for bucket in buckets:
        flat = torch.cat([grad.reshape(-1) for grad in bucket]).to(world.device)
        dist.all_reduce(flat)
        flat = flat.to(bucket[0].device)
        for grad, piece in zip(bucket, flat.split([grad.numel() for grad in bucket])):
            grad.copy_(piece.view_as(grad))


def _tensors_of(items):
    """(name, tensor) pairs of a module's (or objective's) state_dict, or of a list of tensors."""
    if hasattr(items, 'state_dict'):
        return list(items.state_dict().items())
    return [(str(position), tensor) for position, tensor in enumerate(items)]


def assert_in_sync(items, world, what='parameters'):
    """Raise when a module's state (or a list of tensors) differs bitwise between rank 0 and any rank."""
    if not world.enabled:
        return
    named = _tensors_of(items)
    local = [tensor.detach().reshape(-1).to(world.device, torch.float64) for _, tensor in named]
    flat = torch.cat(local) if local else torch.zeros(0, dtype=torch.float64, device=world.device)
    size = torch.tensor([flat.numel()], device=world.device)
    sizes = [torch.empty_like(size) for _ in range(world.world_size)]
    dist.all_gather(sizes, size)
    if len({int(s) for s in sizes}) != 1:
        raise DistributedError('{} differ in size across ranks: {}'.format(what, [int(s) for s in sizes]))
    reference = flat.clone()
    dist.broadcast(reference, 0)
    differs = torch.zeros(len(local) + 1, device=world.device)
    offset = 0
    for position, tensor in enumerate(local):
        differs[position] = float(not torch.equal(flat[offset:offset + tensor.numel()],
                                                  reference[offset:offset + tensor.numel()]))
        offset += tensor.numel()
    dist.all_reduce(differs, op=dist.ReduceOp.MAX)
    names = [named[position][0] for position in range(len(local)) if differs[position] > 0]
    if names:
        raise DistributedError('{} out of sync across ranks: {}'.format(what, ', '.join(names[:5])))


def assert_rng_in_sync(world):
    """Raise when the torch (CPU and this rank's CUDA), numpy or Python random state differs between ranks:
    the sampler and the miners must draw the same stream everywhere."""
    def weighted(state):
        state = state.double()
        return (state * torch.arange(1, len(state) + 1, dtype=torch.float64)).sum()
    cuda = weighted(torch.cuda.get_rng_state()) if torch.cuda.is_initialized() else torch.zeros((), dtype=torch.float64)
    fingerprint = torch.stack([weighted(torch.get_rng_state()), cuda,
                               torch.tensor(np.random.get_state()[1].astype(np.float64).sum(), dtype=torch.float64),
                               torch.tensor(float(sum(random.getstate()[1])), dtype=torch.float64)])
    assert_in_sync([fingerprint], world, 'random states')


@contextlib.contextmanager
def preserved_random_state():
    """Work done on the main rank only (metrics, plots) must not advance its random streams, or its sampler
    and miners would draw differently from the other ranks' afterwards: restores torch (CPU and CUDA), numpy
    and Python random states on exit."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    devices = [torch.cuda.current_device()] if torch.cuda.is_initialized() else []  # this rank's GPU only
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


# ----------------------------------------------------------------------------------------------- failures

def run_guarded(function, world, *args, **kwargs):
    """Run `function`; when it fails on a rank, print `error: rank R failed: ...` and exit that process at
    once (os._exit: no interpreter shutdown that could wait on peers). torchrun's agent then terminates the
    other ranks; a peer blocked in a collective also ends by its closed connection or the process-group
    timeout. DML_TRACEBACK=1 prints the traceback too. Single-process: plain call."""
    if not world.enabled:
        return function(*args, **kwargs)
    try:
        return function(*args, **kwargs)
    except SystemExit as exit_request:
        code = exit_request.code
        if code in (None, 0):
            raise
        _flush()
        os._exit(code if isinstance(code, int) else 1)
    except BaseException as error:  # noqa: B902 — any failure must end this rank, with one line
        if os.environ.get('DML_TRACEBACK') == '1':
            traceback.print_exc()
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        if _lost_peer(error, message):  # the usual echo of a peer that died first
            print('error: rank {} stopped: a collective failed, another rank is gone ({})'.format(
                world.rank, message[:160]), file=sys.stderr)
        else:
            print('error: rank {} failed: {}'.format(world.rank, message), file=sys.stderr)
        _flush()
        os._exit(1)


def _lost_peer(error, message):
    """A collective that failed because another rank went away (NCCL/gloo errors, closed connections)."""
    return isinstance(error, dist.DistError) or ('by peer' in message and 'onnection' in message)


def guarded(world):
    """Decorator form of `run_guarded`."""
    def wrap(function):
        @functools.wraps(function)
        def run(*args, **kwargs):
            return run_guarded(function, world, *args, **kwargs)
        return run
    return wrap


def _flush():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass


# ----------------------------------------------------------------------------------------------- BatchNorm

def batchnorm_is_frozen(module):
    """Frozen BatchNorm (the `_frozen` backbones) keeps eval mode through an instance-level train() no-op."""
    return 'train' in vars(module)


def convert_batchnorm(model, world):
    """Every BatchNorm that trains normalises with the statistics of the global batch: SyncBatchNorm on CUDA,
    `GlobalBatchNorm` (gloo) on the CPU. Frozen BatchNorm is left alone. The new layers reuse the old
    Parameter and buffer objects, so optimiser groups built before stay valid. Returns the model."""
    if not world.enabled:
        return model
    from runtime.distributed_batchnorm import GlobalBatchNorm
    replacement = torch.nn.SyncBatchNorm if world.device.type == 'cuda' else GlobalBatchNorm
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, torch.nn.modules.batchnorm._BatchNorm) and not isinstance(
                    child, (torch.nn.SyncBatchNorm, GlobalBatchNorm)) and not batchnorm_is_frozen(child):
                setattr(parent, name, _converted(child, replacement))
    return model


def _converted(batchnorm, replacement):
    norm_act = hasattr(batchnorm, 'act') and hasattr(batchnorm, 'drop')
    if norm_act:  # timm's BatchNormAct2d: normalisation, dropout and activation in one module
        if replacement is not torch.nn.SyncBatchNorm:
            raise DistributedError('{} (a timm BatchNorm + activation layer) cannot be synchronised over gloo on '
                                   'the CPU: freeze it with the _frozen token, or train on GPUs'
                                   .format(type(batchnorm).__name__))
        from timm.layers.norm_act import SyncBatchNormAct
        replacement = SyncBatchNormAct
    new = replacement(batchnorm.num_features, eps=batchnorm.eps, momentum=batchnorm.momentum,
                      affine=batchnorm.affine, track_running_stats=batchnorm.track_running_stats)
    if norm_act:
        new.act, new.drop = batchnorm.act, batchnorm.drop
    for name in ('weight', 'bias'):
        setattr(new, name, getattr(batchnorm, name))
    for name in ('running_mean', 'running_var', 'num_batches_tracked'):
        setattr(new, name, getattr(batchnorm, name))
    new.train(batchnorm.training)
    return new
