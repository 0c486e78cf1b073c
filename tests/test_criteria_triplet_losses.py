"""Triplet-list losses (triplet, margin, contrastive, snr, quadruplet) against per-triplet loops of their formulas."""
import numpy as np
import pytest
import torch

import criteria
from criteria_fixtures import (LABELS, StubMiner, assert_same_value_and_grads, make_opt, random_batch,
                               random_triplets)
from criteria_reference import slow_contrastive, slow_margin, slow_quadruplet, slow_snr, slow_triplet

# T = B = 12, as the distance miner gives; two of them degenerate (i, i, n)
TRIPLETS = random_triplets(LABELS, 10, seed=3)


def build(loss, output=TRIPLETS, miner_name='distance', *argv, **attributes):
    miner = StubMiner(miner_name, output)
    return criteria.select(loss, make_opt(*argv, **attributes), batchminer=miner), miner


# ----- slow definitions, one triplet at a time ------------------------------------------------------


# ----- values and gradients --------------------------------------------------------------------------

def test_triplet_matches_per_triplet_formula():
    x, labels = random_batch(0, normalize=False)
    criterion, miner = build('triplet')
    assert_same_value_and_grads(lambda b: criterion(batch=b, labels=labels), lambda b: slow_triplet(b, TRIPLETS), x)
    assert miner.calls == 1


def test_triplet_margin_flag_and_tensor_miner_output():
    x, labels = random_batch(1)
    criterion, _ = build('triplet', torch.tensor(TRIPLETS), 'distance', '--loss_triplet_margin', '0.7')
    assert_same_value_and_grads(lambda b: criterion(batch=b, labels=labels),
                                lambda b: slow_triplet(b, TRIPLETS, margin=0.7), x)


@pytest.mark.parametrize('nu', [0.0, 0.3])
def test_margin_matches_formula_including_beta_gradient(nu):
    x, labels = random_batch(2)
    criterion, _ = build('margin', TRIPLETS, 'distance', '--loss_margin_nu', str(nu))
    criterion.double()
    with torch.no_grad():
        criterion.beta.copy_(torch.linspace(0.9, 1.4, 5))
    beta = criterion.beta
    assert_same_value_and_grads(lambda b, bt: criterion(batch=b, labels=labels),
                                lambda b, bt: slow_margin(b, bt, labels, TRIPLETS, nu=nu), x, beta)


@pytest.mark.parametrize('nu', [0.0, 0.3])
def test_margin_constant_beta(nu):
    x, labels = random_batch(3)
    criterion, _ = build('margin', TRIPLETS, 'distance', '--loss_margin_beta_constant',
                         '--loss_margin_nu', str(nu), '--loss_margin_beta', '1.1')
    assert not list(criterion.parameters()) and criterion.beta == 1.1
    assert_same_value_and_grads(lambda b: criterion(batch=b, labels=labels),
                                lambda b: slow_margin(b, 1.1, labels, TRIPLETS, nu=nu, constant=True), x)


def test_margin_counts_triplets_with_any_active_hinge():
    # the reference's OR count: a triplet with both hinges active counts once (sum over 3 active hinges, divided by 2)
    x = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1])
    criterion, _ = build('margin', [(0, 1, 2), (1, 0, 3)], n_classes=2)
    criterion.double()
    with torch.no_grad():
        criterion.beta.fill_(1.2)
    # (0, 1, 2): D+ = 2 and D- = 1e-4, both active; (1, 0, 3): D+ = 2 active, D- = sqrt(2) inactive
    pos = np.sqrt(4 + 1e-8) - 1.2 + 0.2
    expected = (pos + (1.2 - 1e-4 + 0.2) + pos) / 2
    assert criterion(batch=x, labels=labels).item() == pytest.approx(expected, rel=1e-12)


def test_contrastive_matches_formula():
    x, labels = random_batch(4)
    criterion, _ = build('contrastive', TRIPLETS, 'distance', '--loss_contrastive_pos_margin', '0.1',
                         '--loss_contrastive_neg_margin', '1.2')
    assert_same_value_and_grads(lambda b: criterion(batch=b, labels=labels),
                                lambda b: slow_contrastive(b, TRIPLETS, 0.1, 1.2), x)


def test_degenerate_triplet_offsets():
    # the distances' offsets: d_m(x, x) = 1e-4 and d_eps(x, x) = 1e-6·sqrt(D)
    x, labels = random_batch(5, dim=8)
    contrastive, _ = build('contrastive', [(0, 0, 4)], 'distance', '--loss_contrastive_pos_margin', '0',
                           '--loss_contrastive_neg_margin', '0')
    assert contrastive(batch=x, labels=labels).item() == pytest.approx(1e-6 * np.sqrt(8), rel=1e-6)
    margin, _ = build('margin', [(0, 0, 4)], 'distance', '--loss_margin_beta', '0', '--loss_margin_margin', '0')
    with torch.no_grad():
        margin.beta.zero_()
    assert margin(batch=x, labels=labels).item() == pytest.approx(1e-4, rel=1e-9)


@pytest.mark.parametrize('miner_name, reg_lambda', [('semihard', 0.005), ('distance', 0.0)])
def test_snr_matches_formula(miner_name, reg_lambda):
    x, labels = random_batch(6, normalize=False)
    criterion, _ = build('snr', TRIPLETS, miner_name)
    assert criterion.reg_lambda == reg_lambda
    assert_same_value_and_grads(lambda b: criterion(batch=b, labels=labels),
                                lambda b: slow_snr(b, TRIPLETS, reg_lambda=reg_lambda), x)


def test_snr_without_active_triplet_is_the_regulariser_alone():
    x, labels = random_batch(7, normalize=False)
    criterion, _ = build('snr', TRIPLETS, 'semihard', '--loss_snr_margin', '-100')
    value = criterion(batch=x, labels=labels)
    assert torch.isfinite(value)
    torch.testing.assert_close(value, slow_snr(x, TRIPLETS, margin=-100), rtol=1e-12, atol=0)


class FixedFourth(criteria.quadruplet.Criterion):
    fourth = None

    def draw_fourth(self, negatives):
        return torch.as_tensor(self.fourth)


def test_quadruplet_matches_formula_with_injected_fourth():
    x, labels = random_batch(8)
    triplets = TRIPLETS
    criterion = FixedFourth(make_opt(), StubMiner('distance', triplets))
    criterion.fourth = [3, 0, 7, 7, 11, 2, 5, 1, 0, 9, 4, 6]
    assert_same_value_and_grads(lambda b: criterion(batch=b, labels=labels),
                                lambda b: slow_quadruplet(b, triplets, criterion.fourth), x)


def test_quadruplet_fourth_sample_rule():
    criterion, _ = build('quadruplet')
    negatives = torch.tensor([4, 4, 7, 2, 4])
    torch.manual_seed(0)
    draws = torch.stack([criterion.draw_fourth(negatives) for _ in range(300)])
    for t in range(5):
        allowed = set(np.flatnonzero(negatives.numpy() != negatives[t].item()).tolist())
        assert set(draws[:, t].tolist()) == allowed
    # every triplet has the same negative (the reference crashes) -> uniform over all triplet indices
    same = torch.stack([criterion.draw_fourth(torch.tensor([3, 3, 3])) for _ in range(100)])
    assert set(same.flatten().tolist()) == {0, 1, 2}


def test_quadruplet_refuses_more_triplets_than_rows():
    x, labels = random_batch(9)
    criterion, _ = build('quadruplet', TRIPLETS + TRIPLETS[:1])
    with pytest.raises(criteria.CriterionError, match='quadruplet'):
        criterion(batch=x, labels=labels)


def test_quadruplet_runs_with_fewer_triplets_than_rows():
    x, labels = random_batch(9)
    criterion, _ = build('quadruplet', TRIPLETS[:5])
    value = criterion(batch=x, labels=labels)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(x.grad).all()


# ----- degenerate batches ------------------------------------------------------------------------------

@pytest.mark.parametrize('loss', ['triplet', 'margin', 'contrastive', 'snr', 'quadruplet'])
@pytest.mark.parametrize('empty', [[], torch.zeros(0, 3, dtype=torch.int64)])
def test_no_triplet_gives_graph_zero(loss, empty):
    x, labels = random_batch(10)
    criterion, miner = build(loss, empty)
    value = criterion(batch=x, labels=labels)
    assert value.dim() == 0 and value.item() == 0.0 and value.dtype == x.dtype
    value.backward()
    assert miner.calls == 1 and torch.equal(x.grad, torch.zeros_like(x))


def test_margin_with_no_active_hinge_is_graph_zero():
    x, labels = random_batch(11)
    criterion, _ = build('margin', TRIPLETS, 'distance', '--loss_margin_margin', '-10')
    value = criterion(batch=x, labels=labels)
    value.backward()
    assert value.item() == 0.0 and torch.equal(x.grad, torch.zeros_like(x))


@pytest.mark.parametrize('loss', ['triplet', 'margin', 'contrastive', 'snr', 'quadruplet'])
def test_float32_and_label_forms(loss):
    x, labels = random_batch(12, dtype=torch.float32)
    criterion, _ = build(loss)
    values = [criterion(batch=x, labels=form) for form in (labels, labels.numpy(), labels.tolist())]
    assert all(v.dtype == torch.float32 for v in values)
    if loss != 'quadruplet':
        assert values[0].item() == values[1].item() == values[2].item()


@pytest.mark.parametrize('loss, argv', [
    ('triplet', ('--loss_triplet_margin', '-10')),
    ('margin', ('--loss_margin_margin', '-10')),
    ('contrastive', ('--loss_contrastive_pos_margin', '10', '--loss_contrastive_neg_margin', '-1')),
    ('quadruplet', ('--loss_quadruplet_margin_alpha_1', '-10', '--loss_quadruplet_margin_alpha_2', '-10')),
])
def test_all_hinges_inactive_is_an_exact_zero_with_zero_gradients(loss, argv):
    x, labels = random_batch(13)
    criterion, _ = build(loss, TRIPLETS, 'distance', *argv)
    value = criterion(batch=x, labels=labels)
    value.backward()
    assert value.item() == 0.0 and torch.equal(x.grad, torch.zeros_like(x))
