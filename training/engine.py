"""One training epoch and one evaluation pass, as the paper's algorithm box reads:

student forward -> teacher forward (previous-epoch snapshot, only while the distillation weight is
non-zero) -> ranking loss + (e/N)·α·τ²·KD -> backward -> step.

Baseline and LSD take the same path: a baseline objective never asks for a teacher. Mixed precision
lives in `Precision`, data parallelism in `runtime.distributed`: each is one call here.
"""
import time

import numpy as np
import torch

from runtime import distributed
from training.chunked_step import ChunkedStep
from training.chunked_step import embedding_of as first_output
from training.errors import TrainingDiverged, TrainingInterrupted
from training.grad_stats import StepMetrics, gradient_statistics


def to_device(images, device, normalise):
    """uint8 batches (fast pipeline) are normalised on the device: a quarter of the transfer."""
    return normalise(images.to(device, non_blocking=True))


def train_one_epoch(model, objective, optimizer, loader, epoch, *, device, precision, normalise,
                    teacher=None, sampler=None, world=None, grad_log=None, progress=None, clip_grad=0.0,
                    after_step=None, batch_chunk=0):
    """Train for one epoch; returns ({log key: mean over the epoch's steps}, seconds). `clip_grad` > 0 caps
    the L2 norm of the backbone's (global-batch, unscaled) gradient before the step; the logged gradient
    statistics are those before clipping.

    Loss values and gradient statistics stay on the device until the epoch ends (no per-step host
    stall); they are then logged with the same values as per-step `.item()` calls would give.
    `progress` (utilities.progress.Progress, optional) is told of every step and reads a loss now and then.
    `after_step(iteration)` (optional) runs after every optimizer step: a per-update learning-rate schedule.
    `batch_chunk` > 0 runs each step in two passes of that many images at a time (training.chunked_step):
    the same gradient with the activation memory of one chunk."""
    start = time.time()
    model.train()
    use_teacher = teacher is not None and objective.needs_teacher(epoch)
    step_metrics = StepMetrics()
    update_storage = sampler is not None and sampler.requires_storage and sampler.update_storage
    iteration = -1
    try:
        for iteration, (labels, images, indices) in enumerate(loader):
            images = precision.prepare_images(to_device(images, device, normalise))
            chunks = ChunkedStep(model, images, batch_chunk, precision, world) if batch_chunk > 0 else None
            if chunks is not None:
                embeddings, teacher_embeddings, labels, indices = chunks.forward(
                    labels, indices, teacher=teacher if use_teacher else None)
            else:
                with precision.autocast():
                    embeddings = first_output(model(images))
                teacher_embeddings = None
                if use_teacher:
                    with torch.no_grad(), precision.autocast():
                        teacher_embeddings = first_output(teacher(images))
                labels, indices = torch.as_tensor(labels), torch.as_tensor(indices)
                if world is not None and world.enabled:
                    # the criterion sees the global batch, exactly as a single process would
                    embeddings = distributed.gather_with_grad(embeddings, world)
                    labels = distributed.gather_plain(labels, world)
                    indices = distributed.gather_plain(indices, world)
                    if teacher_embeddings is not None:
                        teacher_embeddings = distributed.gather_plain(teacher_embeddings, world)
            try:
                loss, parts = objective(embeddings, labels, teacher_embeddings=teacher_embeddings, epoch=epoch)
            except Exception as error:
                if not bool(torch.isfinite(embeddings.detach()).all()):
                    raise TrainingDiverged(epoch, iteration, 'the embeddings') from error
                raise

            optimizer.zero_grad()
            if loss.requires_grad:
                if chunks is not None:
                    chunks.backward(loss)
                else:
                    precision.backward(loss)
                if world is not None and world.enabled:
                    distributed.all_reduce_gradients(model.parameters(), world)
                precision.unscale(optimizer)
                if grad_log is not None:
                    rms, largest = gradient_statistics(model.parameters())
                    step_metrics.add('Grad L2', rms)
                    step_metrics.add('Grad Max', largest)
                if clip_grad > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
                precision.step(optimizer)
                if after_step is not None:
                    after_step(iteration)
            for key, value in parts.items():
                step_metrics.add(key, value.detach())
            if update_storage:
                sampler.replace_storage_entries(embeddings.detach().float().cpu(), indices)
            if progress is not None:
                progress.update(iteration, parts)
    except KeyboardInterrupt:
        raise TrainingInterrupted(epoch, iteration + 1) from None
    finally:
        if progress is not None:
            progress.close()

    losses = {key: step_metrics.values(key) for key in step_metrics.names() if key.startswith('loss')}
    for key, values in losses.items():
        bad = np.flatnonzero(~np.isfinite(values))
        if len(bad):
            raise TrainingDiverged(epoch, int(bad[0]), 'the loss')
    if grad_log is not None:
        for name, group in (('Grad L2', 'L2'), ('Grad Max', 'Max')):
            for value in step_metrics.values(name):
                grad_log.log(name, float(value), group=group)
    means = {key: float(np.mean(values)) if len(values) else float('nan') for key, values in losses.items()}
    return means, time.time() - start
