"""Listwise self-distillation: the vectorised KD against the seed's row-by-row form, the LSD identity
total = ranking + (e/N)·α·τ²·KD, the w = 0 guarantee, and the composition with every base loss."""
import pytest
import torch

import criteria
from criteria.listwise_distillation import listwise_kd
from criteria_fixtures import (LABELS, StubMiner, assert_same_value_and_grads, make_opt, random_batch,
                               random_triplets)
from criteria_reference import lifted_miner_output, npair_miner_output, seed_row_kd

TRIPLETS = random_triplets(LABELS, 10, seed=1)


@pytest.mark.parametrize('dtype, rtol, atol', [(torch.float64, 1e-10, 1e-12), (torch.float32, 1e-4, 1e-6)])
@pytest.mark.parametrize('tau, beta', [(1.0, 1.0), (0.4, 1.0), (1.0, 1.7), (0.25, 0.6)])
def test_vectorised_kd_equals_row_definition(dtype, rtol, atol, tau, beta):
    student, labels = random_batch(0, dtype=dtype)
    teacher, _ = random_batch(1, dtype=dtype)
    value = assert_same_value_and_grads(lambda s, t: listwise_kd(s, t, labels, tau, beta),
                                        lambda s, t: seed_row_kd(s, t, labels, tau, beta),
                                        student, teacher, rtol=rtol, atol=atol)
    assert value > 0


def test_kd_gives_the_teacher_no_gradient_and_is_zero_for_identical_batches():
    student, labels = random_batch(2)
    teacher = student.detach().clone().requires_grad_()
    value = listwise_kd(student, teacher, labels, 0.5, 2.0)
    value.backward()
    assert abs(value.item()) < 1e-15 and teacher.grad is None


def test_kd_survives_underflowing_teacher_probabilities():
    # 0·log 0 = 0: teacher rows so peaked that some probabilities underflow to exactly 0
    student, labels = random_batch(3)
    teacher, _ = random_batch(4)
    value = listwise_kd(student, teacher * 40, labels, 0.01, 1.0)
    grad, = torch.autograd.grad(value, student)
    assert torch.isfinite(value) and torch.isfinite(grad).all()


# ----- the LSD objective ----------------------------------------------------------------------------

def lsd(loss='triplet', *argv, miner_name='distance', output=TRIPLETS, **attributes):
    miner = StubMiner(miner_name, output)
    return criteria.select(loss + '_lsd', make_opt(*argv, **attributes), batchminer=miner), miner


def three(objective, *args, **kwargs):
    """(total, ranking, KD) of an LSD objective, the three Train log values."""
    total, parts = objective(*args, **kwargs)
    assert set(parts) == {'loss', 'loss_rank', 'loss_kd'} and parts['loss'] is total
    return total, parts['loss_rank'], parts['loss_kd']


@pytest.mark.parametrize('epoch, n_epochs, alpha, tau, beta', [(3, 10, 200.0, 1.0, 1.0), (7, 12, 50.0, 0.5, 1.5)])
def test_total_is_ranking_plus_weighted_kd(epoch, n_epochs, alpha, tau, beta):
    x, labels = random_batch(5)
    teacher, _ = random_batch(6)
    criterion, miner = lsd('triplet', '--n_epochs', str(n_epochs), '--kd_alpha', str(alpha),
                           '--kd_tau', str(tau), '--kd_beta', str(beta))
    total, ranking, kd = three(criterion, x, labels, teacher_embeddings=teacher, epoch=epoch)
    weight = epoch / n_epochs * alpha * tau ** 2
    assert criterion.distillation_weight(epoch) == pytest.approx(weight, rel=1e-15)
    base = criteria.select('triplet', make_opt(), batchminer=StubMiner('distance', TRIPLETS))
    torch.testing.assert_close(ranking, base(batch=x, labels=labels), rtol=0, atol=0)
    torch.testing.assert_close(kd, listwise_kd(x, teacher, labels, tau, beta), rtol=0, atol=0)
    torch.testing.assert_close(total, ranking + weight * kd, rtol=1e-15, atol=0)
    assert miner.calls == 1
    grad, = torch.autograd.grad(total, x)
    composed = base(batch=x, labels=labels) + weight * listwise_kd(x, teacher, labels, tau, beta)
    expected, = torch.autograd.grad(composed, x)
    torch.testing.assert_close(grad, expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize('argv, epoch', [((), 0), (('--kd_alpha', '0'), 5)])
def test_zero_weight_total_is_ranking_bit_for_bit(argv, epoch):
    x, labels = random_batch(7)
    teacher, _ = random_batch(8)
    criterion, _ = lsd('margin', *argv)
    base = criteria.select('margin', make_opt(), batchminer=StubMiner('distance', TRIPLETS))
    base.load_state_dict(criterion.ranking.state_dict())
    total, ranking, kd = three(criterion, x, labels, teacher_embeddings=teacher, epoch=epoch)
    assert total is ranking
    assert kd.item() == pytest.approx(listwise_kd(x, teacher, labels).item(), rel=1e-12) and kd.item() > 0
    assert not kd.requires_grad
    reference = base(batch=x, labels=labels)
    assert torch.equal(total, reference)
    got = torch.autograd.grad(total, [x, criterion.ranking.beta])
    want = torch.autograd.grad(reference, [x, base.beta])
    assert all(torch.equal(g, w) for g, w in zip(got, want))


def test_skipped_teacher_returns_ranking_and_zero_kd():
    x, labels = random_batch(9)
    criterion, _ = lsd('contrastive')
    assert not criterion.needs_teacher(0) and criterion.needs_teacher(1)
    total, ranking, kd = three(criterion, x, labels, teacher_embeddings=None, epoch=0)
    assert total is ranking and kd.item() == 0.0 and kd.dim() == 0 and kd.dtype == x.dtype
    with pytest.raises(criteria.CriterionError, match='teacher_embeddings is None'):
        criterion(x, labels, teacher_embeddings=None, epoch=1)


@pytest.mark.parametrize('kwargs, message', [({'epoch': 1}, 'teacher_embeddings is None at epoch 1'),
                                             ({'teacher_embeddings': None, 'epoch': 3}, 'teacher_embeddings is None'),
                                             ({'epoch': None}, 'triplet_lsd is an LSD loss')])
def test_lsd_loss_without_teacher_or_epoch_is_a_one_line_error(kwargs, message):
    x, labels = random_batch(10)
    criterion, _ = lsd('triplet')
    with pytest.raises(criteria.CriterionError, match=message) as error:
        criterion(x, labels, **kwargs)
    assert '\n' not in str(error.value)


def test_kd_hyper_parameters_and_standard_flag():
    criterion, _ = lsd('margin', '--kd_beta', '3', '--kd_tau', '0.5', '--kd_alpha', '7', '--n_epochs', '20')
    assert (criterion.distillation.beta, criterion.distillation.tau) == (3.0, 0.5)
    assert (criterion.schedule.alpha, criterion.schedule.tau, criterion.schedule.n_epochs) == (7.0, 0.5, 20)
    assert criterion.distillation_weight(0) == 0 and criterion.distillation_weight(19) == 19 / 20 * 7 * 0.25
    # the margin loss's own class boundary stays `beta`, the KD factor is `kd_beta`
    assert isinstance(criterion.ranking.beta, torch.nn.Parameter) and criterion.ranking.beta.shape == (5,)
    standard, _ = lsd('margin', '--kd_beta', '3', '--f_distillation_standard')
    assert standard.distillation.beta == 1.0


def test_miner_injection_goes_through_the_ranking_loss():
    criterion, miner = lsd('triplet')
    assert criterion.ranking.batchminer is miner and criterion.ranking.margin == 0.2
    assert criterion.ranking.name == 'triplet' and criterion.name == 'triplet_lsd'
    injected = StubMiner('distance', [(0, 1, 4)])
    criterion.ranking.batchminer = injected
    x, labels = random_batch(11)
    teacher, _ = random_batch(12)
    _, ranking, _ = three(criterion, x, labels, teacher_embeddings=teacher, epoch=2)
    expected = torch.relu(((x[0] - x[1]) ** 2).sum() - ((x[0] - x[4]) ** 2).sum() + 0.2)
    torch.testing.assert_close(ranking, expected, rtol=1e-14, atol=0)
    assert injected.calls == 1 and miner.calls == 0
    assert criterion.ranking.ALLOWED_MINING_OPS == criteria.triplet.ALLOWED_MINING_OPS
    with pytest.raises(AttributeError):
        criterion.no_such_attribute


@pytest.mark.parametrize('loss, attribute', [('proxynca', 'proxies'), ('softmax', 'class_map'),
                                             ('arcface', 'class_map'), ('softtriplet', 'intra_class_centroids'),
                                             ('margin', 'beta')])
def test_parameters_state_dict_and_groups_are_the_base_ones(loss, attribute):
    miner = StubMiner('distance', TRIPLETS)
    groups = []
    criterion, groups = criteria.select(loss + '_lsd', make_opt(), groups, batchminer=miner)
    parameter = getattr(criterion.ranking, attribute)
    assert [id(p) for p in criterion.parameters()] == [id(parameter)]
    grouped = [p for group in groups for p in
               (group['params'] if isinstance(group['params'], list) else [group['params']])]
    assert [id(p) for p in grouped] == [id(parameter)]
    # the state_dict has the reference's keys under `ranking.`, and loads a base criterion's state_dict
    assert list(criterion.state_dict()) == ['ranking.' + attribute]
    base = criteria.select(loss, make_opt(), batchminer=miner)
    criterion.load_state_dict(base.state_dict())
    assert torch.equal(getattr(criterion.ranking, attribute), getattr(base, attribute))
    holder = torch.nn.Module()
    holder.criterion = criterion.ranking
    assert list(holder.state_dict()) == ['criterion.' + attribute]
    holder.load_state_dict({'criterion.' + attribute: torch.zeros_like(parameter)})
    assert getattr(criterion.ranking, attribute).abs().sum() == 0


MINER_FOR = {'npair': 'npair', 'angular': 'npair', 'lifted': 'lifted'}


def miner_output(loss, labels):
    if loss == 'lifted':
        return lifted_miner_output(labels)
    if loss in ('npair', 'angular'):
        return npair_miner_output(labels, seed=0)
    return random_triplets(labels, 10, seed=2)


@pytest.mark.parametrize('loss', criteria.BASE_LOSS_NAMES)
def test_every_base_loss_has_an_lsd_composition(loss):
    x, labels = random_batch(13)
    teacher, _ = random_batch(14)
    output = miner_output(loss, LABELS)
    miner = StubMiner(MINER_FOR.get(loss, 'distance'), output)
    criterion = criteria.select(loss + '_lsd', make_opt('--n_epochs', '4'), batchminer=miner)
    assert criteria.is_lsd(loss + '_lsd') and criteria.is_lsd(criterion)
    base = criteria.select(loss, make_opt(), batchminer=StubMiner(miner.name, output))
    assert not criteria.is_lsd(loss) and not criteria.is_lsd(base)
    base.load_state_dict(criterion.ranking.state_dict())
    if loss == 'quadruplet':
        torch.manual_seed(0)
    total, ranking, kd = three(criterion, x, labels, teacher_embeddings=teacher, epoch=1)
    if loss == 'quadruplet':
        torch.manual_seed(0)
    torch.testing.assert_close(ranking, base(batch=x, labels=labels), rtol=0, atol=0)
    torch.testing.assert_close(total, ranking + 0.25 * 200 * kd, rtol=1e-14, atol=0)
    calls_miner = criteria.requires_miner(loss) and loss != 'ap_loss'
    assert miner.calls == int(calls_miner)
    total.backward()
    assert torch.isfinite(x.grad).all() and teacher.grad is None
