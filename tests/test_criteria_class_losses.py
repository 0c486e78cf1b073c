"""Miner-free losses (proxy, classification, multi-similarity, histogram, Smooth-AP) against per-sample
loops of their formulas, values and gradients, learnable parameters included."""
import math

import numpy as np
import pytest
import torch

import criteria
from criteria.smooth_ap_loss import SmoothAP
from criteria_fixtures import LABELS, StubMiner, assert_same_value_and_grads, make_opt, random_batch
from criteria_reference import (slow_arcface, slow_histogram, slow_multisimilarity, slow_proxynca, slow_smooth_ap,
                                slow_softmax, slow_softtriplet)


# ----- proxy / classification losses -----------------------------------------------------------------


def test_proxynca_matches_formula_including_absent_classes():
    # n_classes 7 > 5 classes in the batch: the LSE runs over every other proxy
    x, labels = random_batch(0, normalize=False)
    criterion = criteria.select('proxynca', make_opt(n_classes=7)).double()
    assert_same_value_and_grads(lambda b, w: criterion(batch=b, labels=labels),
                                lambda b, w: slow_proxynca(b, w, labels), x, criterion.proxies)


def test_softmax_matches_formula():
    x, labels = random_batch(1, normalize=False)
    criterion = criteria.select('softmax', make_opt('--loss_softmax_temperature', '0.3')).double()
    assert_same_value_and_grads(lambda b, w: criterion(batch=b, labels=labels),
                                lambda b, w: slow_softmax(b, w, labels, 0.3), x, criterion.class_map)


@pytest.mark.parametrize('n_centroids', [1, 2, 3])
def test_softtriplet_matches_formula(n_centroids):
    x, labels = random_batch(2)
    opt = make_opt('--loss_softtriplet_n_centroids', str(n_centroids), '--loss_softtriplet_gamma', '0.7')
    criterion = criteria.select('softtriplet', opt).double()
    assert criterion.intra_class_centroids.shape == (8, 5 * n_centroids)
    assert_same_value_and_grads(
        lambda b, w: criterion(batch=b, labels=labels),
        lambda b, w: slow_softtriplet(b, w, labels, 5, n_centroids, gamma=0.7), x, criterion.intra_class_centroids)


def test_arcface_matches_formula_with_clamped_negative_cosines():
    x, labels = random_batch(3)
    criterion = criteria.select('arcface', make_opt('--loss_arcface_angular_margin', '0.3')).double()
    cosines = x.detach() @ torch.nn.functional.normalize(criterion.class_map.detach(), dim=1).T
    assert (cosines < 0).any() and (cosines > 0).any()
    assert_same_value_and_grads(lambda b, w: criterion(batch=b, labels=labels),
                                lambda b, w: slow_arcface(b, w, labels, margin=0.3), x, criterion.class_map)


@pytest.mark.parametrize('loss', ['margin', 'proxynca', 'softmax', 'softtriplet', 'arcface'])
def test_label_outside_class_range_is_a_one_line_error(loss):
    x, _ = random_batch(4)
    miner = StubMiner('distance', [(0, 1, 4)])
    criterion = criteria.select(loss, make_opt(), batchminer=miner)
    with pytest.raises(criteria.CriterionError, match=r'label 5 .*n_classes = 5'):
        criterion(batch=x, labels=torch.tensor(LABELS[:-1] + [5]))


# ----- multisimilarity ---------------------------------------------------------------------------------


def test_multisimilarity_matches_formula_and_skips_rows():
    x, labels = random_batch(5, dim=4)
    _, kept = slow_multisimilarity(x, labels)
    assert 0 < kept < len(LABELS) - 1          # the singleton row and at least one mined-out row skipped
    criterion = criteria.select('multisimilarity', make_opt())
    assert_same_value_and_grads(lambda b: criterion(batch=b, labels=labels),
                                lambda b: slow_multisimilarity(b, labels)[0], x)


def test_multisimilarity_mining_margin_is_strict_and_against_unmined_sets():
    # 3-D rows, 30 samples of 6 classes: many negatives fall just outside the ε band of the hardest positive
    x, labels = random_batch(15, labels=[c for c in range(6) for _ in range(5)], dim=3)
    S = (x @ x.T).detach()
    same = labels[:, None] == labels[None, :]
    hardest_pos = S.masked_fill(~same | torch.eye(30, dtype=torch.bool), 2).amin(1, keepdim=True)
    near_miss = ~same & (S + 0.1 <= hardest_pos) & (S + 0.15 > hardest_pos)
    assert near_miss.sum() >= 5
    # β = 1 so that every kept negative changes the value visibly
    criterion = criteria.select('multisimilarity', make_opt('--loss_multisimilarity_neg_weight', '1'))
    assert_same_value_and_grads(lambda b: criterion(batch=b, labels=labels),
                                lambda b: slow_multisimilarity(b, labels, beta=1.0)[0], x)


@pytest.mark.parametrize('labels', [[0, 1, 2, 3], [0, 0, 0, 0]])
def test_multisimilarity_without_usable_row_is_graph_zero(labels):
    x, labels = random_batch(6, labels=labels)
    value = criteria.select('multisimilarity', make_opt())(batch=x, labels=labels)
    value.backward()
    assert value.item() == 0.0 and torch.equal(x.grad, torch.zeros_like(x))


# ----- histogram --------------------------------------------------------------------------------------


@pytest.mark.parametrize('nbins', [65, 21, 50])
def test_histogram_matches_triangular_kernel_for_any_bin_count(nbins):
    x, labels = random_batch(7, labels=LABELS[:9], dim=3)
    criterion = criteria.select('histogram', make_opt('--loss_histogram_nbins', str(nbins)))
    assert_same_value_and_grads(lambda b: criterion(batch=b, labels=labels),
                                lambda b: slow_histogram(b, labels, nbins), x)


def test_histogram_hand_computed_split_between_bins():
    # K = 5, grid -1, -0.5, 0, 0.5, 1. Positive pair at s = 0.28: bins 2, 3 get 0.44, 0.56; both negative
    # pairs at s = 0.3: 0.4, 0.6. L = 0.4 * 0.44 + 0.6 * (0.44 + 0.56) = 0.776
    x = torch.tensor([[0.8, 0.6, 0.0], [0.8, -0.6, 0.0], [0.375, 0.0, math.sqrt(1 - 0.375 ** 2)]],
                     dtype=torch.float64)
    value = criteria.select('histogram', make_opt('--loss_histogram_nbins', '5'))(batch=x, labels=[0, 0, 1])
    assert value.item() == pytest.approx(0.776, rel=1e-12)


@pytest.mark.parametrize('labels', [[0, 1, 2, 3], [0, 0, 0, 0]])
def test_histogram_without_positive_or_negative_pairs_is_graph_zero(labels):
    x, labels = random_batch(8, labels=labels)
    value = criteria.select('histogram', make_opt())(batch=x, labels=labels)
    value.backward()
    assert value.item() == 0.0 and torch.equal(x.grad, torch.zeros_like(x))


# ----- Smooth-AP --------------------------------------------------------------------------------------


@pytest.mark.parametrize('tau', [0.01, 0.5])
def test_smooth_ap_matches_formula_for_any_grouping(tau):
    x, labels = random_batch(9)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    labels = labels[order]                      # not in consecutive groups
    module = SmoothAP(tau, 64, 4, 8)            # batch_size and num_id do not matter (the seed sized masks by them)
    value = assert_same_value_and_grads(lambda b: module(b, labels), lambda b: slow_smooth_ap(b, labels, tau), x)
    assert value.dim() == 0


def test_ap_loss_never_calls_its_miner():
    x, labels = random_batch(10)
    miner = StubMiner('semihard', None)
    criterion = criteria.select('ap_loss', make_opt('--loss_triplet_margin', '0.3'), batchminer=miner)
    assert criterion.name == 'aploss' and criterion.margin == 0.3 and criterion.batchminer is miner
    value = criterion(batch=x, labels=labels, teacher_batch=None, epoch=0)
    torch.testing.assert_close(value, slow_smooth_ap(x, labels, 0.01), rtol=1e-10, atol=1e-12)
    assert miner.calls == 0


# ----- every miner-free loss: dtype and device follow the batch -----------------------------------------

@pytest.mark.parametrize('loss', ['proxynca', 'multisimilarity', 'histogram', 'softmax', 'softtriplet', 'arcface'])
def test_float32_batch_and_label_forms(loss):
    x, labels = random_batch(11, dtype=torch.float32)
    criterion = criteria.select(loss, make_opt())
    values = [criterion(batch=x, labels=form) for form in (labels, labels.numpy(), labels.tolist())]
    assert all(v.dtype == torch.float32 and v.dim() == 0 for v in values)
    assert values[0].item() == values[1].item() == values[2].item()
    values[0].backward()
    assert torch.isfinite(x.grad).all()


def test_float64_batch_with_float32_parameters_keeps_parameter_gradients():
    x, labels = random_batch(12)
    criterion = criteria.select('proxynca', make_opt())
    value = criterion(batch=x, labels=labels)
    value.backward()
    assert value.dtype == torch.float64 and criterion.proxies.grad.dtype == torch.float32
    assert np.isfinite(criterion.proxies.grad.numpy()).all() and criterion.proxies.grad.abs().sum() > 0
