"""Recall@k, the mAP family and MAP@R / R-Precision against loop-based oracles (and worked examples)."""
import argparse

import numpy as np
import pytest

import metrics
import metrics_bruteforce as oracle
from metrics_bruteforce import single_faiss_thread  # noqa: F401 (autouse fixture)
from metrics.search import FaissEngine, TorchEngine

ENGINES = [FaissEngine(), TorchEngine('cpu')]
RETRIEVAL = ['e_recall@1', 'e_recall@2', 'e_recall@4', 'e_recall@50', 'mAP', 'mAP_1000', 'mAP_lim', 'mAP_c',
             'mAP@R', 'r_precision']
COSINE = ['c_' + name if not name.startswith('e_') else name.replace('e_', 'c_', 1) for name in RETRIEVAL]


def options():
    return argparse.Namespace(n_classes=2, rho_spectrum_embed_dim=None, evaluate_on_gpu=False)


def expected(features, labels, name):
    inner_product = name.startswith('c_')
    base = name[2:] if name[:2] in ('c_', 'e_') else name
    if base.startswith('recall@'):
        return oracle.recall_at_k(features, labels, int(base.split('@')[1]), inner_product)
    if base in ('mAP@R', 'r_precision'):
        return oracle.map_at_r(features, labels, inner_product)[base == 'r_precision']
    return oracle.reference_map(features, labels, base, inner_product)


def tie_heavy_set(seed, cosine, n=40, dim=3, n_classes=6):
    """Many exactly equal distances, exact duplicates and two singleton classes. Euclidean: small
    integer coordinates. Cosine: positive multiples of +-axis vectors and zero rows, whose
    normalised inner products (-1, 0, 1) are exact in float32 too."""
    rng = np.random.default_rng(seed)
    if cosine:
        features = np.zeros((n, dim), dtype=np.float32)
        axis = rng.integers(0, dim, size=n)
        features[np.arange(n), axis] = rng.choice([-3, -1, 1, 2], size=n)
        features[rng.integers(0, n, size=3)] = 0
    else:
        features = rng.integers(-2, 3, size=(n, dim)).astype(np.float32)
    labels = rng.integers(0, n_classes, size=n)
    labels[:2] = [100, 101]
    return features, labels.tolist()


@pytest.mark.parametrize('engine', ENGINES, ids=lambda e: e.name)
@pytest.mark.parametrize('cosine', [False, True], ids=['euclidean', 'cosine'])
@pytest.mark.parametrize('seed', [0, 1, 2])
def test_retrieval_metrics_match_oracle_with_ties_duplicates_and_singletons(engine, cosine, seed):
    features, labels = tie_heavy_set(seed, cosine)
    names = COSINE if cosine else RETRIEVAL
    values = metrics.compute_metrics(features, labels, names, options(), engine=engine)
    for name in names:
        assert values[name] == pytest.approx(expected(features, labels, name), abs=1e-12), name


@pytest.mark.parametrize('engine', ENGINES, ids=lambda e: e.name)
def test_k_larger_than_the_set_pads_with_misses(engine):
    """N <= K: the missing neighbours are never hits, so no value exceeds 1 (the reference read the
    padding index -1 as the last sample's label)."""
    features = np.array([[0, 0], [0, 1], [5, 5], [5, 6], [9, 9]], dtype=np.float32)
    labels = [0, 0, 1, 1, 4]
    values = metrics.compute_metrics(features, labels, ['e_recall@10', 'mAP', 'mAP_1000', 'mAP_lim'],
                                     options(), engine=engine)
    assert values['e_recall@10'] == pytest.approx(4 / 5)
    # each query of a pair finds its partner first: AP = (1/2) * 1/1; the singleton scores 0
    for name in ('mAP', 'mAP_1000', 'mAP_lim'):
        assert values[name] == pytest.approx(4 * 0.5 / 5), name


def test_worked_example():
    features = np.array([[1, 0], [1, 0.1], [0.9, 0.2], [1, 1], [1.1, 1], [0, 3]], dtype=np.float32)
    labels = [0, 0, 0, 1, 1, 2]
    values = metrics.compute_metrics(features, labels, ['e_recall@1', 'e_recall@2', 'e_recall@3', 'c_recall@1',
                                                        'c_recall@2', 'mAP', 'mAP_lim', 'mAP_c', 'mAP_1000',
                                                        'c_mAP'], options())
    for name in ('e_recall@1', 'e_recall@2', 'e_recall@3', 'c_recall@1', 'c_recall@2'):
        assert values[name] == pytest.approx(5 / 6, abs=1e-6)
    assert values['mAP'] == pytest.approx(18 / 36, abs=1e-12)
    assert values['mAP_lim'] == pytest.approx(18 / 36, abs=1e-12)
    assert values['mAP_c'] == pytest.approx(0.5, abs=1e-12)
    assert values['mAP_1000'] == pytest.approx(18 / 36, abs=1e-12)  # reference: 161.998 from padded slots
    assert values['c_mAP'] <= 1


def test_map_c_window_is_the_class_size_including_the_query():
    """Kept quirk of the reference's mAP_c: the window is n_{y_i} (one past the other positives) and a perfect list
    scores (n - 1) / n."""
    features = np.array([[0, 0], [0, 1], [0, 2], [10, 0], [30, 0]], dtype=np.float32)
    labels = [0, 0, 0, 1, 1]
    values = metrics.compute_metrics(features, labels, ['mAP_c'], options())
    # class 0: both partners come first -> (1/1 + 2/2) / 3 each; [10, 0]: its partner is 4th, outside
    # its window of 2 -> 0; [30, 0]: partner first -> (1/1) / 2
    ap = [2 / 3, 2 / 3, 2 / 3, 0.0, 0.5]
    assert values['mAP_c'] == pytest.approx(np.mean(ap))
    assert values['mAP_c'] == pytest.approx(oracle.reference_map(features, labels, 'mAP_c'))


def test_recall_counts_a_hit_anywhere_in_the_first_k():
    features = np.array([[0.0], [1.0], [1.5], [3.0]], dtype=np.float32)
    labels = [0, 1, 2, 0]
    values = metrics.compute_metrics(features, labels, ['e_recall@1', 'e_recall@3'], options())
    assert values['e_recall@1'] == 0.0
    assert values['e_recall@3'] == pytest.approx(2 / 4)


def test_map_at_r_without_any_positive_pair_is_nan():
    values = metrics.compute_metrics(np.eye(3, dtype=np.float32), [0, 1, 2], ['mAP@R', 'r_precision'], options())
    assert np.isnan(values['mAP@R']) and np.isnan(values['r_precision'])


def test_map_at_r_and_r_precision_equal_pytorch_metric_learning():
    pml = pytest.importorskip('pytorch_metric_learning.utils.accuracy_calculator')
    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(30), rng.integers(1, 7, size=30))
    features = (rng.standard_normal((30, 8))[labels] + 0.9 * rng.standard_normal((len(labels), 8))).astype(np.float32)
    ours = metrics.compute_metrics(features, labels, ['mAP@R', 'r_precision'], options())
    import torch
    theirs = pml.AccuracyCalculator(include=('mean_average_precision_at_r', 'r_precision'), k='max_bin_count') \
        .get_accuracy(torch.from_numpy(features), torch.from_numpy(labels))
    assert ours['mAP@R'] == pytest.approx(theirs['mean_average_precision_at_r'], abs=1e-12)
    assert ours['r_precision'] == pytest.approx(theirs['r_precision'], abs=1e-12)
