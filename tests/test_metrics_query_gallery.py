"""Query-against-gallery evaluation (In-Shop's protocol) against loop-based brute force.

Each query ranks the gallery only (ties: ascending gallery position); recall@k counts a query whose
label the gallery lacks as a miss; MAP@R / R-Precision / the mAP family take the number of same-label
gallery images as R_i and n_{y_i}, and leave such a query out. Clustering, dists and rho_spectrum read
the whole split (queries and gallery together).
"""
import argparse

import numpy as np
import pytest
import torch

import metrics
from metrics_bruteforce import single_faiss_thread  # noqa: F401 (autouse fixture)
from datasets.query_gallery import QueryGallery
from metrics.neighbours import query_gallery_hits
from metrics.search import FaissEngine, TorchEngine
from query_gallery_bruteforce import brute_force

ENGINES = [FaissEngine(), TorchEngine('cpu')]
RECALL_KS = (1, 2, 4, 10, 16, 20, 30, 32, 40)
RETRIEVAL = ['e_recall@{}'.format(k) for k in RECALL_KS] + ['mAP', 'mAP_1000', 'mAP_lim', 'mAP_c', 'mAP@R',
                                                             'r_precision']
COSINE = ['c_recall@1', 'c_recall@4', 'c_mAP@R', 'c_r_precision', 'c_mAP_c', 'c_mAP']


def options():
    return argparse.Namespace(n_classes=3, rho_spectrum_embed_dim=None, evaluate_on_gpu=False)


def tie_heavy_split(seed, cosine, n=60, dim=3):
    """Small integer (or +-axis) embeddings with many exact ties; 5 classes seen by queries and gallery,
    class 7 with a single gallery image, class 8 only among the queries (no gallery image at all)."""
    rng = np.random.default_rng(seed)
    if cosine:
        features = np.zeros((n, dim), dtype=np.float32)
        features[np.arange(n), rng.integers(0, dim, size=n)] = rng.choice([-3, -1, 1, 2], size=n)
    else:
        features = rng.integers(-2, 3, size=(n, dim)).astype(np.float32)
    labels = rng.integers(0, 5, size=n)
    is_query = rng.random(n) < 0.4
    labels[[0, 1, 2]], is_query[[0, 1, 2]] = [7, 7, 7], [True, True, False]   # one gallery image of class 7
    labels[[3, 4]], is_query[[3, 4]] = [8, 8], [True, True]                   # class 8: queries only
    return features, labels.tolist(), QueryGallery(is_query, ~is_query)


@pytest.mark.parametrize('engine', ENGINES, ids=lambda e: e.name)
@pytest.mark.parametrize('cosine', [False, True], ids=['euclidean', 'cosine'])
@pytest.mark.parametrize('seed', [0, 1])
def test_query_gallery_metrics_match_brute_force(engine, cosine, seed):
    features, labels, roles = tie_heavy_split(seed, cosine)
    names = COSINE if cosine else RETRIEVAL
    values = metrics.compute_metrics(features, labels, names, options(), engine=engine, query_gallery=roles)
    queries, gallery = roles.query_indices.tolist(), roles.gallery_indices.tolist()
    for name in names:
        assert values[name] == pytest.approx(brute_force(features, labels, queries, gallery, name), abs=1e-12), name
    # the protocol matters: ranking the whole split instead gives other values
    one_set = metrics.compute_metrics(features, labels, names, options(), engine=engine)
    assert any(one_set[name] != values[name] for name in names)


def test_single_gallery_image_and_ties_worked_example():
    """Queries q0 (class 0) and q1 (class 1) against gallery g0..g3 at distances computed by hand: q0's
    class has one gallery image, tied with another class's image at the same distance and placed after it
    (ties rank by gallery position); q1's class has no gallery image."""
    features = np.array([[0, 0], [5, 5],              # q0 (class 0), q1 (class 1)
                         [1, 0], [0, 1], [3, 0], [0, 2]], dtype=np.float32)  # g0 cls 2, g1 cls 0, g2 cls 2, g3 cls 2
    labels = [0, 1, 2, 0, 2, 2]
    roles = QueryGallery([1, 1, 0, 0, 0, 0], [0, 0, 1, 1, 1, 1])
    names = ['e_recall@1', 'e_recall@2', 'mAP@R', 'r_precision', 'mAP_c', 'mAP']
    values = metrics.compute_metrics(features, labels, names, options(), query_gallery=roles)
    # q0 ranks g0 (d=1), g1 (d=1, tie: later position), g3, g2: its one relevant image at rank 2
    assert values['e_recall@1'] == 0.0
    assert values['e_recall@2'] == 0.5           # q1 is a miss: class 1 is not in the gallery
    assert values['mAP@R'] == 0.0 and values['r_precision'] == 0.0 and values['mAP_c'] == 0.0  # R = 1: rank 1 only
    assert values['mAP'] == 0.5                   # precision 1/2 at rank 2, over R = 1; q1 left out


def test_search_is_chunked_against_one_gallery_index(monkeypatch):
    """Queries are searched in chunks of the engine's workspace; the result equals one whole search."""
    rng = np.random.default_rng(3)
    q, g = torch.from_numpy(rng.normal(size=(50, 4)).astype(np.float32)), torch.from_numpy(
        rng.normal(size=(70, 4)).astype(np.float32))
    ql, gl = torch.from_numpy(rng.integers(0, 6, 50)), torch.from_numpy(rng.integers(0, 6, 70))
    whole = query_gallery_hits(q, ql, g, gl, 9, FaissEngine())
    engine = FaissEngine()
    monkeypatch.setattr(engine, 'rows_per_chunk', lambda n_base, k: 7)
    chunked = query_gallery_hits(q, ql, g, gl, 9, engine)
    assert torch.equal(whole.query, chunked.query) and torch.equal(whole.rank, chunked.rank)
    assert torch.equal(whole.relevant, chunked.relevant)


def test_embedding_space_metrics_read_the_whole_split():
    """k-means/NMI, dists and rho_spectrum are those of all rows, whatever the roles."""
    features, labels, roles = tie_heavy_split(0, False)
    features = features + np.random.default_rng(0).normal(scale=0.1, size=features.shape).astype(np.float32)
    names = ['nmi', 'f1', 'dists@intra', 'dists@inter', 'rho_spectrum@1']
    with_roles = metrics.compute_metrics(features, labels, names, options(), query_gallery=roles)
    one_set = metrics.compute_metrics(features, labels, names, options())
    assert with_roles == one_set


@pytest.mark.parametrize('k', [10, 16, 20, 30, 32, 40])
def test_recall_flags_accept_any_k(k):
    import parameters
    opt = parameters.read_arguments(['--evaluation_metrics', 'e_recall@{}'.format(k), 'c_recall@{}'.format(k)])
    assert [metrics.select(name, opt).k for name in opt.evaluation_metrics] == [k, k]
