"""`--batch_chunk C`: the exact gradient of a batch far larger than the activation memory of one device.

A ranking loss compares every sample of the batch with every other one, so the batch cannot simply be split
into accumulated micro-batches. Instead (Patel et al., CVPR 2022, "Recall@k surrogate loss with large batches"):

1. embed the batch in chunks of C images without gradient (and the LSD teacher likewise); under torchrun each
   rank chunks its own slice and the slices are gathered once, as the unchunked step gathers them;
2. compute the ranking loss, the miner, the cross-batch memory and the distillation term once, on the whole
   (global) batch, with the embeddings as a leaf that requires gradient; back-propagating the loss gives
   dL/d(embeddings) and the criterion's own parameters (proxies, β) their full gradient;
3. run each chunk's forward again, now with gradient, and back-propagate its rows of dL/d(embeddings).

By the chain rule the backbone's gradient is then the unchunked step's, summed chunk by chunk; the loop
reduces it over ranks once, as before. Activations are held for one chunk at a time; the price is a second
forward pass. Random layers (dropout, timm's drop-path, which draws with `bernoulli_` on the default generator
of the tensor's device) see the same random state in both passes: the CPU and CUDA generator states are saved
before each chunk's first pass and restored for its second; after the replay the generators continue from where
the first passes and the loss left them, so the miners' stream is the unchunked run's.

BatchNorm that trains normalises each chunk by the chunk's own statistics (as "ghost batch normalisation",
Hoffer et al., 2017), which differs from the statistics of the whole batch: the run says so at start-up. Its
running statistics are updated once per chunk, by the second pass only (the first pass's updates are undone).
Frozen BatchNorm (the `_frozen` backbones) and LayerNorm (ViTs) have no batch statistics: the gradient is exact.
"""
import contextlib
import sys

import torch
from torch.nn.modules.batchnorm import _BatchNorm

from runtime import distributed


def embedding_of(output):
    """Backbones return (embedding, extras) or a plain embedding tensor (googlenet)."""
    return output[0] if isinstance(output, tuple) else output


def chunk_bounds(n, chunk):
    """[(start, stop), ...] covering 0..n-1 in pieces of `chunk` (the last may be shorter)."""
    return [(start, min(start + chunk, n)) for start in range(0, n, chunk)]


def batch_statistics_layers(model):
    """Names of the BatchNorm layers that normalise by batch statistics in train mode (not the frozen ones)."""
    modes = {name: module.training for name, module in model.named_modules()}
    model.train()
    names = [name for name, module in model.named_modules() if isinstance(module, _BatchNorm) and module.training]
    for name, module in model.named_modules():
        module.training = modes[name]
    return names


def startup_notice(batch_chunk, model):
    """The line printed at start-up when --batch_chunk meets BatchNorm that trains; None otherwise."""
    if batch_chunk <= 0:
        return None
    layers = batch_statistics_layers(model)
    if not layers:
        return None
    return ('Notice: --batch_chunk {}: {} BatchNorm layers of the backbone train, so each normalises every chunk of '
            '{} images by that chunk\'s own statistics (ghost batch normalisation), not by the whole batch\'s; '
            'use a _frozen backbone for the exact whole-batch gradient.'.format(batch_chunk, len(layers), batch_chunk))


def print_startup_notice(batch_chunk, model, file=None):
    line = startup_notice(batch_chunk, model)
    if line:
        print(line, file=file or sys.stderr)


@contextlib.contextmanager
def running_statistics_kept(model):
    """Undo on exit what a forward pass in train mode wrote into BatchNorm's running statistics."""
    saved = [(module, [buffer.clone() for buffer in (module.running_mean, module.running_var,
                                                     module.num_batches_tracked)])
             for module in model.modules()
             if isinstance(module, _BatchNorm) and module.training and module.track_running_stats
             and module.running_mean is not None]
    try:
        yield
    finally:
        with torch.no_grad():
            for module, buffers in saved:
                for buffer, value in zip((module.running_mean, module.running_var, module.num_batches_tracked),
                                         buffers):
                    buffer.copy_(value)


def random_state(device):
    """The generator states a forward pass on `device` draws from: the CPU's, and the device's own on CUDA."""
    return torch.get_rng_state(), (torch.cuda.get_rng_state(device) if device.type == 'cuda' else None)


def set_random_state(state, device):
    cpu, cuda = state
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state(cuda, device)


def embed_without_gradient(network, images, chunk, precision):
    """`network`'s embeddings of `images`, computed `chunk` images at a time without gradient."""
    with torch.no_grad(), precision.autocast():
        return torch.cat([embedding_of(network(images[start:stop]))
                          for start, stop in chunk_bounds(len(images), chunk)])


class ChunkedStep:
    """One training step's two passes over this rank's `images`, `chunk` images at a time.

    `forward` returns what the unchunked step hands the objective (the global batch's embeddings, now a leaf
    that requires gradient, the teacher's embeddings, labels, indices); after the objective, `backward(loss)`
    back-propagates the loss once (scaled under fp16) and then every chunk's slice of the embeddings'
    gradient. The caller reduces the backbone's gradients over ranks once, afterwards."""

    def __init__(self, model, images, chunk, precision, world=None):
        self.model, self.images, self.precision = model, images, precision
        self.world = world if world is not None and world.enabled else None
        self.bounds = chunk_bounds(len(images), chunk)
        self.chunk = chunk
        self.random_states = []
        self.embeddings = None

    def forward(self, labels, indices, teacher=None):
        device = self.images.device
        pieces = []
        with running_statistics_kept(self.model), torch.no_grad(), self.precision.autocast():
            for start, stop in self.bounds:
                self.random_states.append(random_state(device))
                pieces.append(embedding_of(self.model(self.images[start:stop])))
        embeddings = torch.cat(pieces)
        teacher_embeddings = None
        if teacher is not None:
            teacher_embeddings = embed_without_gradient(teacher, self.images, self.chunk, self.precision)
        labels, indices = torch.as_tensor(labels), torch.as_tensor(indices)
        if self.world is not None:
            # the same global batch as the unchunked step's gather, computed once per step
            embeddings = distributed.gather_plain(embeddings, self.world)
            labels = distributed.gather_plain(labels, self.world)
            indices = distributed.gather_plain(indices, self.world)
            if teacher_embeddings is not None:
                teacher_embeddings = distributed.gather_plain(teacher_embeddings, self.world)
        self.embeddings = embeddings.detach().requires_grad_()
        return self.embeddings, teacher_embeddings, labels, indices

    def backward(self, loss):
        """dL/d(embeddings) (and the criterion's parameters' gradient) from one backward of the loss, then the
        backbone's gradient chunk by chunk. Under torchrun this rank back-propagates its own rows only, as the
        backward of `distributed.gather_with_grad` hands each rank its slice, unreduced."""
        self.precision.backward(loss)
        gradient = self.embeddings.grad
        if gradient is None:   # the loss does not depend on the embeddings (e.g. only on proxies)
            return
        offset = self.world.rank * len(self.images) if self.world is not None else 0
        device = self.images.device
        with torch.random.fork_rng(devices=[device] if device.type == 'cuda' else []):
            for (start, stop), state in zip(self.bounds, self.random_states):
                set_random_state(state, device)
                with self.precision.autocast():
                    chunk_embeddings = embedding_of(self.model(self.images[start:stop]))
                chunk_embeddings.backward(gradient[offset + start:offset + stop])
