"""The metric registry: names, result keys, errors and the default list."""
import argparse

import numpy as np
import pytest

import metrics
from metrics_bruteforce import single_faiss_thread  # noqa: F401 (autouse fixture)

OPT = argparse.Namespace(n_classes=3, rho_spectrum_embed_dim=4, evaluate_on_gpu=False)
NAMES = {'e_recall@4': 'e_recall@4', 'c_recall@2': 'c_recall@2', 'nmi': 'nmi', 'c_nmi': 'c_nmi', 'f1': 'f1',
         'c_f1': 'c_f1', 'mAP': 'mAP', 'mAP_c': 'mAP_c', 'mAP_lim': 'mAP_lim', 'mAP_1000': 'mAP_1000',
         'c_mAP': 'c_mAP', 'c_mAP_c': 'c_mAP_c', 'c_mAP_lim': 'c_mAP_lim', 'c_mAP_1000': 'c_mAP_1000',
         'mAP@R': 'mAP@R', 'r_precision': 'r_precision', 'c_mAP@R': 'c_mAP@R', 'c_r_precision': 'c_r_precision',
         'dists@intra': 'dists@intra', 'dists@inter': 'dists@inter',
         'dists@intra_over_inter': 'dists@intra_over_inter', 'rho_spectrum@-1': 'rho_spectrum@-1',
         'rho_spectrum@0': 'rho_spectrum@0', 'e_recall@05': 'e_recall@5'}


@pytest.mark.parametrize('name', sorted(NAMES))
def test_every_spec_name_resolves_to_its_result_key(name):
    assert metrics.select(name, OPT).name == NAMES[name]


@pytest.mark.parametrize('name', ['recall@1', 'mAP@1000', 'dists@outer', 'e_recall@x', 'e_recall@0',
                                  'rho_spectrum@two', 'NMI'])
def test_unknown_or_malformed_names_raise_not_implemented_with_the_name(name):
    with pytest.raises(NotImplementedError, match='Metric {} not available!'.format(name)):
        metrics.select(name, OPT)


def test_default_list_is_the_lsd_default():
    assert metrics.DEFAULT_METRICS == [
        'e_recall@1', 'e_recall@5', 'e_recall@10', 'nmi', 'f1', 'mAP_1000', 'mAP_lim', 'mAP_c', 'dists@intra',
        'dists@inter', 'dists@intra_over_inter', 'rho_spectrum@0', 'rho_spectrum@-1', 'rho_spectrum@1',
        'rho_spectrum@2', 'rho_spectrum@10']


@pytest.mark.parametrize('names', [['nmi'], ['c_nmi'], ['c_f1'], ['c_mAP']])
def test_reference_crashes_are_fixed(names):
    """Reference crashes fixed: nmi without f1, c_nmi / c_f1 alone and c_mAP all compute."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((12, 4)).astype(np.float32)
    value = metrics.compute_metrics(x, np.arange(12) % 3, names, OPT)[names[0]]
    assert 0 <= value <= 1


def test_results_follow_the_requested_order():
    x = np.random.default_rng(1).standard_normal((10, 4)).astype(np.float32)
    names = ['mAP_c', 'e_recall@2', 'dists@inter', 'nmi', 'e_recall@1']
    assert list(metrics.compute_metrics(x, np.arange(10) % 3, names, OPT)) == names


@pytest.mark.parametrize('features, labels, message', [
    (np.zeros((3,), np.float32), [0, 1, 2], 'N x D'),
    (np.zeros((3, 2), np.float32), [0, 1], '2 labels for 3'),
    (np.array([[0, 1], [np.nan, 1]], np.float32), [0, 1], 'NaN'),
    (np.zeros((2, 2), np.float32), [0.5, 1.5], 'integers'),
])
def test_bad_inputs_are_one_line_errors(features, labels, message):
    with pytest.raises(metrics.MetricInputError, match=message):
        metrics.compute_metrics(features, labels, ['e_recall@1'], OPT)
