"""Set-form losses npair, angular and lifted against per-anchor loops."""

import numpy as np
import pytest
import torch

import criteria
from criteria_fixtures import LABELS, StubMiner, assert_same_value_and_grads, make_opt, random_batch
from criteria_reference import lifted_miner_output, npair_miner_output, slow_angular, slow_lifted, slow_npair


NPAIR_OUT = npair_miner_output(LABELS, seed=0)
LIFTED_OUT = lifted_miner_output(LABELS)


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
    # class sizes 4, 3, 2, 2, 1: negative sets of sizes 8, 9, 10 (ragged sets are masked, not stacked)
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
