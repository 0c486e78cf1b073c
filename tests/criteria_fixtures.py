"""Shared test inputs for tests/test_criteria_*.py: options, stub miners and small random batches."""
import numpy as np
import torch

import criteria
import parameters

# unequal class sizes, one class with a single sample
LABELS = [0, 0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 4]


def make_opt(*argv, n_classes=5, embed_dim=8, **attributes):
    """The trainer's namespace: parsed flags plus the attributes the reference's trainer sets on it (select
    still reads n_classes from it when none is given)."""
    opt = parameters.read_arguments(list(argv))
    opt.n_classes = n_classes
    opt.embed_dim = embed_dim
    opt.device = torch.device('cpu')
    for key, value in attributes.items():
        setattr(opt, key, value)
    return opt


class StubMiner:
    """A miner that returns fixed output and counts its calls (a loss calls its miner once per forward)."""

    def __init__(self, name, output):
        self.name = name
        self.output = output
        self.calls = 0

    def __call__(self, batch, labels, ref_embeddings=None, ref_labels=None):
        self.calls += 1
        return self.output


def ranking_of(criterion):
    """The ranking module of what select returns: itself for a base key, `.ranking` of an LSD Objective."""
    return criterion.ranking if isinstance(criterion, criteria.Objective) else criterion


def random_batch(seed, labels=LABELS, dim=8, dtype=torch.float64, normalize=True):
    """A leaf embedding batch (unit rows by default) and its label tensor."""
    generator = torch.Generator().manual_seed(seed)
    batch = torch.randn(len(labels), dim, generator=generator, dtype=dtype)
    if normalize:
        batch = torch.nn.functional.normalize(batch, dim=1)
    return batch.requires_grad_(), torch.tensor(labels)


def random_triplets(labels, count, seed, degenerate=2):
    """`count` valid (a, p, n) triplets plus `degenerate` (i, i, n) ones, as a list of tuples."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    triplets = []
    while len(triplets) < count:
        a = int(rng.integers(len(labels)))
        positives = np.flatnonzero((labels == labels[a]) & (np.arange(len(labels)) != a))
        negatives = np.flatnonzero(labels != labels[a])
        if len(positives):
            triplets.append((a, int(rng.choice(positives)), int(rng.choice(negatives))))
    for a in rng.choice(len(labels), degenerate, replace=False):
        triplets.append((int(a), int(a), int(rng.choice(np.flatnonzero(labels != labels[a])))))
    return triplets


def value_and_grads(function, *tensors):
    """function(*tensors) and the gradients of the result with respect to each tensor."""
    value = function(*tensors)
    grads = torch.autograd.grad(value, tensors, allow_unused=True)
    return value.detach(), [torch.zeros_like(t) if g is None else g for t, g in zip(tensors, grads)]


def assert_same_value_and_grads(fast, slow, *tensors, rtol=1e-10, atol=1e-12):
    """The vectorised loss and the slow definition agree in value and in every gradient."""
    fast_value, fast_grads = value_and_grads(fast, *tensors)
    slow_value, slow_grads = value_and_grads(slow, *tensors)
    torch.testing.assert_close(fast_value, slow_value.to(fast_value.dtype), rtol=rtol, atol=atol)
    for fast_grad, slow_grad in zip(fast_grads, slow_grads):
        torch.testing.assert_close(fast_grad, slow_grad.to(fast_grad.dtype), rtol=rtol, atol=atol)
    return fast_value
