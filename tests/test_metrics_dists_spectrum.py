"""dists@intra/inter/intra_over_inter and rho_spectrum@k, with worked examples."""
import argparse

import numpy as np
import pytest
from scipy.stats import entropy
from sklearn.decomposition import TruncatedSVD

import metrics
import metrics_bruteforce as oracle
from metrics_bruteforce import single_faiss_thread  # noqa: F401 (autouse fixture)

DISTS = ['dists@intra', 'dists@inter', 'dists@intra_over_inter']
WORKED = np.array([[1, 0], [1, 0.1], [0.9, 0.2], [1, 1], [1.1, 1], [0, 3]], dtype=np.float32)


def options(embed_dim=None):
    return argparse.Namespace(n_classes=2, rho_spectrum_embed_dim=embed_dim, evaluate_on_gpu=False)


@pytest.mark.parametrize('labels', [[0, 0, 0, 1, 1, 2], [1, 1, 1, 2, 2, 0]], ids=['singleton-last', 'singleton-first'])
def test_dists_worked_example(labels):
    """Worked example: the singleton class takes the largest finite class value wherever it sorts."""
    values = metrics.compute_metrics(WORKED, labels, DISTS, options())
    assert values['dists@intra'] == pytest.approx(0.0083434955, abs=1e-9)
    assert values['dists@inter'] == pytest.approx(0.4720622303, abs=1e-8)
    assert values['dists@intra_over_inter'] == pytest.approx(0.0176745670, abs=1e-9)


def test_dists_match_scipy_cosine_loops_with_singletons():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(12), rng.integers(1, 6, size=12))
    x = (rng.standard_normal((12, 6))[labels] + 0.5 * rng.standard_normal((len(labels), 6))).astype(np.float32)
    values = metrics.compute_metrics(x, labels, DISTS, options())
    intra, inter, ratio = oracle.dists(x, labels.tolist())
    assert values['dists@intra'] == pytest.approx(intra, rel=1e-6)
    assert values['dists@inter'] == pytest.approx(inter, rel=1e-6)
    assert values['dists@intra_over_inter'] == pytest.approx(ratio, rel=1e-6)


def test_dists_zero_embedding_and_single_class():
    x = np.array([[0, 0], [1, 0], [1, 0.2], [0, 1], [0.1, 1]], dtype=np.float32)
    values = metrics.compute_metrics(x, [0, 0, 0, 1, 1], DISTS, options())
    class_one = oracle.dists(x[3:], [1, 1])[0]
    assert values['dists@intra'] == pytest.approx(class_one)  # class 0 (zero member) takes the max
    one_class = metrics.compute_metrics(x[1:3], [5, 5], DISTS, options())
    assert np.isnan(one_class['dists@inter']) and one_class['dists@intra'] > 0


def spectrum_matrix():
    """6 x 4, singular values 4, 2, 1, 1 (the worked example)."""
    rotation = np.linalg.qr(np.random.default_rng(1).standard_normal((6, 6)))[0]
    return (rotation[:, :4] @ np.diag([4.0, 2.0, 1.0, 1.0])).astype(np.float32)


def test_rho_spectrum_worked_example():
    names = ['rho_spectrum@0', 'rho_spectrum@-1', 'rho_spectrum@1', 'rho_spectrum@2', 'rho_spectrum@3']
    values = metrics.compute_metrics(spectrum_matrix(), [0] * 6, names, options(embed_dim=4))
    assert isinstance(values['rho_spectrum@0'], np.ndarray)
    np.testing.assert_allclose(values['rho_spectrum@0'], [4 / 7, 2 / 7, 1 / 7], atol=1e-6)
    assert values['rho_spectrum@-1'] == pytest.approx(0.142912383, abs=1e-6)
    assert values['rho_spectrum@1'] == pytest.approx(0.154150660, abs=1e-6)
    assert values['rho_spectrum@2'] == pytest.approx(0.058891503, abs=1e-6)
    assert values['rho_spectrum@3'] == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize('mode', [0, -1, 1, 2, 10])
def test_rho_spectrum_equals_the_references_truncated_svd(mode):
    x = np.random.default_rng(2).standard_normal((80, 16)).astype(np.float32) * np.linspace(3, 0.1, 16)
    value = metrics.compute_metrics(x, [0] * 80, ['rho_spectrum@{}'.format(mode)], options(embed_dim=16))
    s = TruncatedSVD(n_components=15, n_iter=7, random_state=42).fit(x).singular_values_
    s = s[abs(mode) - 1:] if mode else s
    p, uniform = s / s.sum(), np.full(len(s), 1 / len(s))
    expected = p if mode == 0 else entropy(p, uniform) if mode < 0 else entropy(uniform, p)
    np.testing.assert_allclose(value['rho_spectrum@{}'.format(mode)], expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize('seed', range(4))
def test_rho_spectrum_relative_entropy_is_scipys(seed):
    """The KL divergence of the spectrum, written out, against the reference's scipy.stats.entropy(p, q):
    random vectors, zeros on either side (0 and infinite terms) and a NaN."""
    from metrics.rho_spectrum import relative_entropy
    rng = np.random.default_rng(seed)
    p, q = rng.random(40) * rng.integers(0, 2, size=40), rng.random(40) + 0.01
    for a, b in ((p, q), (q, p), (q, q[::-1]), (p, p), (np.append(q, np.nan), np.append(p, 1.0))):
        expected = entropy(a, b)
        assert relative_entropy(a, b) == pytest.approx(expected, rel=1e-13, abs=1e-15, nan_ok=True), (a, b)
