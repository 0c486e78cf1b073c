"""Set-form losses npair, angular and lifted (criteria.md A.4, A.5, A.7) against per-anchor loops."""
import math

import numpy as np
import pytest
import torch

import criteria
from criteria_fixtures import LABELS, StubMiner, assert_same_value_and_grads, make_opt, random_batch


def npair_miner_output(labels, seed):
    """A.6: every anchor with a positive, one random positive, all other-label positions as negatives."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    anchors, positives, negatives = [], [], []
    for i in range(len(labels)):
        same = np.flatnonzero((labels == labels[i]) & (np.arange(len(labels)) != i))
        if len(same):
            anchors.append(i)
            positives.append(int(rng.choice(same)))
            negatives.append(np.flatnonzero(labels != labels[i]))
    return anchors, positives, negatives


def lifted_miner_output(labels):
    """A.8: anchors with a positive; all other same-label positions; all other-label positions."""
    labels = np.asarray(labels)
    anchors = [i for i in range(len(labels)) if (labels == labels[i]).sum() > 1]
    positives = [np.flatnonzero((labels == labels[i]) & (np.arange(len(labels)) != i)) for i in anchors]
    negatives = [np.flatnonzero(labels != labels[i]) for i in anchors]
    return anchors, positives, negatives


NPAIR_OUT = npair_miner_output(LABELS, seed=0)
LIFTED_OUT = lifted_miner_output(LABELS)


def mean_norm(x):
    return sum(torch.sqrt((x[j] ** 2).sum()) for j in range(len(x))) / len(x)


def slow_npair(x, out, l2=0.005):
    anchors, positives, negatives = out
    total = 0
    for a, p, ns in zip(*out):
        inner = sum(torch.exp(x[a] @ x[n] - x[a] @ x[p]) for n in ns)
        total = total + torch.log(1 + inner)
    return total / len(anchors) + l2 * mean_norm(x)


def slow_angular(x, out, alpha=45.0, lam=2.0, l2=0.005):
    anchors = out[0]
    t2 = math.tan(alpha * math.pi / 180) ** 2
    unit = [x[j] / torch.sqrt((x[j] ** 2).sum()) for j in range(len(x))]
    npair, angular = 0, 0
    for a, p, ns in zip(*out):
        npair = npair + torch.log(1 + sum(torch.exp(torch.clamp(x[a] @ x[n] - x[a] @ x[p], -50, 50)) for n in ns))
        angular = angular + torch.log(1 + sum(
            torch.exp(4 * t2 * (unit[a] + unit[p]) @ unit[n] - 2 * (1 + t2) * unit[a] @ unit[p]) for n in ns))
    return npair / len(anchors) + lam * angular / len(anchors) + l2 * mean_norm(x)


def d_eps(u, v):
    return torch.sqrt(((u - v + 1e-6) ** 2).sum())


def slow_lifted(x, out, margin=1.0, l2=0.005):
    anchors = out[0]
    total = 0
    for a, ps, ns in zip(*out):
        pos = torch.log(sum(torch.exp(d_eps(x[a], x[p])) for p in ps))
        neg = torch.log(sum(torch.exp(margin - d_eps(x[a], x[n])) for n in ns)) if len(ns) else -math.inf
        total = total + torch.relu(pos + neg)
    return total / len(anchors) + l2 * mean_norm(x)


def build(loss, output, *argv, miner_name=None):
    miner = StubMiner(miner_name or {'lifted': 'lifted'}.get(loss, 'npair'), output)
    return criteria.select(loss, make_opt(*argv), batchminer=miner), miner


@pytest.mark.parametrize('arch, scale', [('resnet50_frozen_normalize', 1.0), ('bninception_normalize', 0.25)])
def test_npair_matches_formula(arch, scale):
    x, labels = random_batch(0, normalize=False)
    criterion, miner = build('npair', NPAIR_OUT, '--arch', arch)
    assert_same_value_and_grads(lambda b: criterion(batch=b, labels=labels),
                                lambda b: slow_npair(b * scale, NPAIR_OUT), x)
    assert miner.calls == 1


def test_angular_matches_formula_with_ragged_negative_sets():
    # class sizes 4, 3, 2, 2, 1: negative sets of sizes 8, 9, 10 (E-10: ragged sets are masked)
    x, labels = random_batch(1, normalize=False)
    x.data.mul_(3)
    criterion, _ = build('angular', NPAIR_OUT, '--loss_angular_alpha', '36')
    assert len({len(n) for n in NPAIR_OUT[2]}) == 3
    assert_same_value_and_grads(lambda b: criterion(batch=b, labels=labels),
                                lambda b: slow_angular(b, NPAIR_OUT, alpha=36.0), x)


def test_angular_npair_exponent_is_clamped():
    x, labels = random_batch(2, normalize=False)
    x.data.mul_(12)
    criterion, _ = build('angular', NPAIR_OUT)
    assert_same_value_and_grads(lambda b: criterion(batch=b, labels=labels),
                                lambda b: slow_angular(b, NPAIR_OUT), x)


def test_lifted_matches_anchor_to_member_formula():
    x, labels = random_batch(3)
    criterion, _ = build('lifted', LIFTED_OUT, '--loss_lifted_neg_margin', '1.3', '--loss_lifted_l2', '0.01')
    assert_same_value_and_grads(lambda b: criterion(batch=b, labels=labels),
                                lambda b: slow_lifted(b, LIFTED_OUT, margin=1.3, l2=0.01), x)


@pytest.mark.parametrize('loss', ['npair', 'angular', 'lifted'])
def test_set_losses_accept_a_mask_for_the_sets(loss):
    x, labels = random_batch(4)
    out = LIFTED_OUT if loss == 'lifted' else NPAIR_OUT
    masked = list(out)
    for k in (1, 2) if loss == 'lifted' else (2,):
        mask = torch.zeros(len(out[0]), len(labels), dtype=torch.bool)
        for row, members in enumerate(out[k]):
            mask[row, members] = True
        masked[k] = mask
    from_lists, _ = build(loss, out)
    from_mask, _ = build(loss, tuple(masked))
    assert from_lists(batch=x, labels=labels).item() == from_mask(batch=x, labels=labels).item()


def test_single_class_batch_gives_zero_pair_terms():
    # empty negative sets: npair contributes log(1) = 0, lifted's negative LSE is -inf and ℓ = 0
    x, _ = random_batch(5, labels=[0] * 4)
    labels = torch.zeros(4, dtype=torch.int64)
    npair_out = ([0, 1, 2, 3], [1, 0, 3, 2], [np.array([], dtype=np.int64)] * 4)
    lifted_out = lifted_miner_output([0] * 4)
    for loss, out in [('npair', npair_out), ('angular', npair_out), ('lifted', lifted_out)]:
        criterion, _ = build(loss, out)
        value = criterion(batch=x, labels=labels)
        l2 = 0.005 * torch.linalg.vector_norm(x, dim=1).mean()
        torch.testing.assert_close(value, l2, rtol=1e-12, atol=0)
        grad, = torch.autograd.grad(value, x)
        assert torch.isfinite(grad).all()


@pytest.mark.parametrize('loss', ['npair', 'angular', 'lifted'])
def test_no_anchor_gives_graph_zero(loss):
    x, labels = random_batch(6, labels=[0, 1, 2, 3])
    criterion, miner = build(loss, ([], [], []))
    value = criterion(batch=x, labels=labels)
    value.backward()
    assert value.dim() == 0 and value.item() == 0.0
    assert torch.equal(x.grad, torch.zeros_like(x)) and miner.calls == 1
