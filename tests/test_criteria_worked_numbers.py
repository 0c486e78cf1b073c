"""Worked numbers computed by hand from the formulas (float64): B = 4 unit vectors in 2-D, labels (0, 0, 1, 1)."""
import math

import numpy as np
import pytest
import torch

import criteria
from criteria.smooth_ap_loss import smooth_ap
from criteria_fixtures import StubMiner, make_opt

TOL = dict(rel=1e-12, abs=1e-14)


def unit_rows(degrees):
    return torch.tensor([[math.cos(math.radians(d)), math.sin(math.radians(d))] for d in degrees],
                        dtype=torch.float64)


X = unit_rows([0, 100, 45, 150])
TEACHER = unit_rows([10, 80, 60, 170])
LABELS = torch.tensor([0, 0, 1, 1])
TRIPLETS = [(0, 1, 2), (1, 0, 3), (2, 3, 0), (3, 2, 1)]
SETS = [np.array([2, 3]), np.array([2, 3]), np.array([0, 1]), np.array([0, 1])]
MINERS = {
    'triplet': StubMiner('distance', TRIPLETS),
    'npair': StubMiner('npair', ([0, 1, 2, 3], [1, 0, 3, 2], SETS)),
    'lifted': StubMiner('lifted', ([0, 1, 2, 3], [np.array([1]), np.array([0]), np.array([3]), np.array([2])], SETS)),
}


def opt(*argv):
    return make_opt(*argv, n_classes=2, embed_dim=2)


@pytest.mark.parametrize('loss, miner, expected', [
    ('triplet', 'triplet', 1.9823616136425382),
    ('margin', 'triplet', 1.1540960862876142),
    ('contrastive', 'triplet', 1.7540960893042892),
    ('multisimilarity', None, 0.9989554423158102),
    ('npair', 'npair', 1.5583940333319857),
    ('angular', 'npair', 13.288649541641139),
    ('lifted', 'lifted', 2.2175518117043715),
])
def test_base_loss_values(loss, miner, expected):
    criterion = criteria.select(loss, opt(), batchminer=MINERS.get(miner))
    assert criterion(batch=X, labels=LABELS).item() == pytest.approx(expected, **TOL)


def test_triplet_hinges():
    hinges = [((X[a] - X[p]) ** 2).sum() - ((X[a] - X[n]) ** 2).sum() + 0.2 for a, p, n in TRIPLETS]
    assert [round(h.item(), 5) for h in hinges] == [1.96151, 1.83287, 2.13185, 2.00321]


@pytest.mark.parametrize('tau, expected', [(0.01, 0.208333333333381), (0.5, 0.3627657296363328)])
def test_smooth_ap(tau, expected):
    assert smooth_ap(X, LABELS, tau).item() == pytest.approx(expected, **TOL)


def test_ap_loss_uses_temperature_001():
    criterion = criteria.select('ap_loss', opt(), batchminer=StubMiner('distance', TRIPLETS))
    assert criterion(batch=X, labels=LABELS).item() == pytest.approx(0.208333333333381, **TOL)


@pytest.mark.parametrize('tau, beta, expected', [(1.0, 1.0, 0.03717429982014806),
                                                 (0.5, 1.0, 0.10842933374949171),
                                                 (1.0, 2.0, 0.12726589818071996)])
def test_kd(tau, beta, expected):
    assert criteria.listwise_kd(X, TEACHER, LABELS, tau, beta).item() == pytest.approx(expected, **TOL)


@pytest.mark.parametrize('argv, expected', [(('--kd_tau', '1', '--kd_beta', '1'), 4.212819602851418),
                                            (('--kd_tau', '0.5', '--kd_beta', '1'), 3.6088016198849155),
                                            (('--kd_tau', '1', '--kd_beta', '2'), 9.618315504485736)])
def test_triplet_lsd_total_at_epoch_3_of_10(argv, expected):
    criterion = criteria.select('triplet_lsd', opt('--n_epochs', '10', '--kd_alpha', '200', *argv),
                                batchminer=MINERS['triplet'])
    total, parts = criterion(X, LABELS, teacher_embeddings=TEACHER, epoch=3)
    ranking = parts['loss_rank']
    assert ranking.item() == pytest.approx(1.9823616136425382, **TOL)
    assert total.item() == pytest.approx(expected, **TOL)
