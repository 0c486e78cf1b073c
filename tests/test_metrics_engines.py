"""Search engines and paths: faiss and torch agree on the CPU."""
import argparse

import numpy as np
import pytest
import torch

import metrics
from metrics.neighbours import neighbour_hits
from metrics.search import FaissEngine, TorchEngine, select_engine, smallest_k_index_ordered
from metrics_bruteforce import single_faiss_thread  # noqa: F401 (autouse fixture)


def test_smallest_k_ranks_and_cuts_ties_by_index():
    rng = np.random.default_rng(0)
    dist = torch.from_numpy(rng.integers(0, 4, size=(50, 30)).astype(np.float32))
    for k in (1, 5, 17, 30):
        expected = np.argsort(dist.numpy(), axis=1, kind='stable')[:, :k]
        np.testing.assert_array_equal(smallest_k_index_ordered(dist, k).numpy(), expected)


def oracle_lists(x, k, inner_product):
    """Per query: every sample (itself included) nearest first, ties by ascending index, -1 padded."""
    x = x.astype(np.float64)
    if inner_product:
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        x = x / np.where(norms > 0, norms, 1)
    lists = []
    for query in x:
        keys = -(x @ query) if inner_product else ((x - query) ** 2).sum(axis=1)
        ranked = sorted(range(len(x)), key=lambda j: (keys[j], j))[:k]
        lists.append(ranked + [-1] * (k - len(ranked)))
    return np.array(lists)


@pytest.mark.parametrize('inner_product', [False, True], ids=['l2', 'ip'])
@pytest.mark.parametrize('k', [1, 2, 7, 120, 160])
def test_engines_rank_ties_by_index_and_pad_with_minus_one(inner_product, k):
    """faiss switches selection code paths at k = 100; k = 160 > N checks the padding."""
    rng = np.random.default_rng(1)
    if inner_product:  # +-axis multiples and zero rows: normalised inner products are exact
        x = np.zeros((150, 3), dtype=np.float32)
        x[np.arange(150), rng.integers(0, 3, size=150)] = rng.choice([-2, 1, 3], size=150)
        x[[5, 6]] = 0
    else:
        x = rng.integers(-2, 3, size=(150, 3)).astype(np.float32)
    features = torch.from_numpy(x)
    if inner_product:
        features = features / features.norm(dim=1, keepdim=True).clamp_min(1e-30)
    expected = oracle_lists(x, k, inner_product)
    for engine in (FaissEngine(), TorchEngine('cpu')):
        found = engine.prepare(features, inner_product)(features, k).numpy()
        np.testing.assert_array_equal(found, expected, err_msg=engine.name)


def test_own_index_is_removed_even_behind_exact_duplicates():
    """With many exact duplicates the query need not be its own first hit; its own index is
    removed, never a duplicate's."""
    x = torch.zeros((6, 2))
    labels = torch.tensor([0, 1, 1, 1, 1, 1])
    found = neighbour_hits(x, labels, 2, FaissEngine())
    hits = torch.zeros((6, 2), dtype=torch.bool)
    hits[found.query, found.rank - 1] = True
    # all six are at distance 0, listed 0, 1, 2: query 1 keeps [0, 2] (the reference's positional drop
    # would keep [1, 2], itself included); queries 3-5 are not among the 3 results and keep [0, 1]
    expected = [[False, False]] + [[False, True]] * 5
    assert hits.tolist() == expected


def test_faiss_and_torch_paths_give_the_same_metrics():
    rng = np.random.default_rng(2)
    labels = np.repeat(np.arange(15), rng.integers(1, 8, size=15))
    x = (rng.standard_normal((15, 8))[labels] + rng.standard_normal((len(labels), 8))).astype(np.float32)
    opt = argparse.Namespace(n_classes=15, rho_spectrum_embed_dim=8, evaluate_on_gpu=False)
    names = metrics.DEFAULT_METRICS + ['c_recall@3', 'c_nmi', 'c_f1', 'mAP', 'c_mAP', 'c_mAP_c', 'mAP@R',
                                       'c_r_precision']
    faiss_values = metrics.compute_metrics(x, labels, names, opt, engine=FaissEngine())
    torch_values = metrics.compute_metrics(torch.from_numpy(x), torch.from_numpy(labels), names, opt,
                                           engine=TorchEngine('cpu'))
    for name in names:
        np.testing.assert_allclose(torch_values[name], faiss_values[name], rtol=1e-6, atol=1e-9, err_msg=name)


def test_one_search_per_feature_type_with_the_largest_window(monkeypatch):
    calls = []

    class CountingEngine(FaissEngine):
        def prepare(self, base, inner_product=False):
            search = super().prepare(base, inner_product)

            def counted(queries, k):
                calls.append((inner_product, k))
                return search(queries, k)
            return counted

    x = np.random.default_rng(3).standard_normal((50, 4)).astype(np.float32)
    opt = argparse.Namespace(n_classes=5, rho_spectrum_embed_dim=4, evaluate_on_gpu=False)
    metrics.compute_metrics(x, np.arange(50) % 5, ['e_recall@1', 'e_recall@10', 'mAP_1000', 'mAP_lim', 'mAP_c',
                                                   'c_recall@2', 'c_mAP_c', 'mAP@R'], opt, engine=CountingEngine())
    assert sorted(set(calls)) == [(False, 1001), (True, 11)]  # 1000 + self; cosine: max class size 10 + self


def test_evaluate_on_gpu_without_cuda_prints_a_notice_and_uses_faiss_on_the_cpu(capsys):
    if torch.cuda.is_available():
        pytest.skip('a CUDA device is present')
    engine = select_engine(argparse.Namespace(evaluate_on_gpu=True))
    assert isinstance(engine, FaissEngine) and engine.device.type == 'cpu'
    assert capsys.readouterr().err.count('\n') == 1
