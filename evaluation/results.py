"""One evaluation pass as a value: embed a loader, compute every metric per embedding type, return them.

Nothing is printed, logged or written here; the trainers and evaluate.py hand the returned
`EvaluationResult` to the consumers they want (evaluation.reporting, evaluation.checkpoint_saver,
evaluation.recall_plot).
"""
import contextlib
import dataclasses
import typing

import numpy as np
import torch


@dataclasses.dataclass
class EvaluationResult:
    """`metrics`: {evaltype: {name: scalar}} and `histograms`: {evaltype: {name: array}} (rho_spectrum@0),
    both in the metric computer's order; `labels` (N) and `features` ({evaltype: float32 N x D CPU tensor})
    in dataset order, with the split's `image_paths` ((path, label) per row, or None)."""
    metrics: dict
    histograms: dict
    labels: torch.Tensor
    features: dict
    image_paths: typing.Optional[list] = None


def evaluate(loader, *, embedder, metric_computer, evaltypes, n_threads):
    """Embed `loader` with `embedder` (evaluation.Embedder) and compute `metric_computer`'s metrics of every
    evaltype, `n_threads` faiss threads. A split with query/gallery roles ranks its queries against its
    gallery. Under data parallelism every process embeds its shard and the main process alone computes:
    the others get None."""
    labels, features, _ = embedder(loader, evaltypes)
    world = embedder.world
    if world is not None and world.enabled and not world.is_main:
        return None
    dataset = getattr(loader.dataset, 'dataset', loader.dataset)  # the whole split under torchrun's shards
    roles = getattr(dataset, 'query_gallery', None)
    with main_process_alone(world):
        computed = metric_computer.compute_of_embeddings(labels, features, evaltypes, n_threads=n_threads,
                                                         query_gallery=roles)
    metrics, histograms = split_metrics(computed)
    return EvaluationResult(metrics=metrics, histograms=histograms, labels=labels, features=features,
                            image_paths=getattr(dataset, 'image_paths', None))


def main_process_alone(world):
    """Work the main process does alone must not advance its random streams past the other processes'."""
    if world is None or not world.enabled:
        return contextlib.nullcontext()
    from runtime.distributed import preserved_random_state
    return preserved_random_state()


def split_metrics(computed_metrics):
    """Array-valued results (rho_spectrum@0) are histograms, everything else a numeric metric."""
    numeric, histogram = {}, {}
    for evaltype, values in computed_metrics.items():
        for name, value in values.items():
            target = histogram if isinstance(value, np.ndarray) else numeric
            target.setdefault(evaltype, {})[name] = value
    return numeric, histogram
