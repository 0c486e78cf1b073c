"""k-means (faiss.Clustering semantics), NMI and F1, with worked examples."""
import argparse

import faiss
import numpy as np
import pytest
import torch

import metrics
import metrics_bruteforce as oracle
from metrics_bruteforce import single_faiss_thread  # noqa: F401 (autouse fixture)
from metrics import f1, nmi
from metrics.computer import unit_rows
from metrics.kmeans import KMeansInputError, kmeans


def faiss_kmeans(x, k):
    """The reference's k-means: faiss.Clustering(d, k), 20 iterations, 1..1e9 points per centroid."""
    clustering = faiss.Clustering(x.shape[1], k)
    clustering.niter, clustering.min_points_per_centroid, clustering.max_points_per_centroid = 20, 1, 10 ** 9
    clustering.train(x, faiss.IndexFlatL2(x.shape[1]))
    centroids = faiss.vector_float_to_array(clustering.centroids).reshape(k, -1)
    stats = clustering.iteration_stats
    n_split = sum(stats.at(i).nsplit for i in range(stats.size()))
    return centroids, n_split


def nearest(x, centroids, inner_product=False):
    index = faiss.IndexFlatIP(x.shape[1]) if inner_product else faiss.IndexFlatL2(x.shape[1])
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    return index.search(x, 1)[1][:, 0]


def blobs(seed):
    """Tight groups and k well above their number, so clusters empty out and faiss re-seeds them."""
    rng = np.random.default_rng(seed)
    n_groups, per, dim = int(rng.integers(5, 30)), int(rng.integers(3, 12)), int(rng.integers(2, 6))
    n = n_groups * per
    k = int(rng.integers(n_groups, n // 2))
    centres = 5 * rng.standard_normal((n_groups, dim))
    x = np.repeat(centres, per, axis=0) + rng.uniform(0.05, 1) * rng.standard_normal((n, dim))
    return x.astype(np.float32), k


@pytest.mark.parametrize('movers, group_size', [(256, 64), (2, 4)], ids=['defaults', 'small-groups'])
def test_kmeans_equals_faiss_clustering_including_empty_cluster_splits(monkeypatch, movers, group_size):
    """With small groups and few measured movers, these small problems go through every pruning path."""
    from metrics import kmeans as kmeans_module
    monkeypatch.setattr(kmeans_module, 'N_MOVERS', movers)
    monkeypatch.setattr(kmeans_module, 'GROUP_SIZE', group_size)
    group_searches = []
    search_groups = kmeans_module._Assignment.search_groups
    monkeypatch.setattr(kmeans_module._Assignment, 'search_groups',
                        staticmethod(lambda *args: group_searches.append(1) or search_groups(*args)))
    splits_seen = 0
    for seed in range(30):
        x, k = blobs(seed)
        expected, n_split = faiss_kmeans(x, k)
        centroids, labels = kmeans(torch.from_numpy(x), k)
        np.testing.assert_allclose(centroids.numpy(), expected, rtol=0, atol=1e-5, err_msg='seed {}'.format(seed))
        np.testing.assert_array_equal(labels.numpy(), nearest(x, expected))
        splits_seen += n_split
    assert splits_seen > 0  # the split branch was exercised
    assert group_searches or movers > 100  # and, with small groups, the group-wise search


def test_kmeans_on_as_many_points_as_clusters_returns_the_points():
    x = np.random.default_rng(0).standard_normal((12, 3)).astype(np.float32)
    centroids, labels = kmeans(torch.from_numpy(x), 12)
    np.testing.assert_array_equal(centroids.numpy(), faiss_kmeans(x, 12)[0])
    np.testing.assert_array_equal(labels.numpy(), np.arange(12))


def test_kmeans_with_fewer_points_than_clusters_is_a_clear_error():
    opt = argparse.Namespace(n_classes=10, evaluate_on_gpu=False)
    with pytest.raises(KMeansInputError, match='n_classes = 10'):
        metrics.compute_metrics(np.eye(4, dtype=np.float32), [0, 1, 2, 3], ['nmi'], opt)


def clustered(seed, n_classes=8, dim=5):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_classes), rng.integers(2, 9, size=n_classes))
    x = 3 * rng.standard_normal((n_classes, dim))[labels] + rng.standard_normal((len(labels), dim))
    return x.astype(np.float32), labels


@pytest.mark.parametrize('seed', [0, 1])
def test_nmi_and_f1_use_the_euclidean_kmeans(seed):
    x, labels = clustered(seed)
    opt = argparse.Namespace(n_classes=8, evaluate_on_gpu=False)
    values = metrics.compute_metrics(x, labels, ['nmi', 'f1'], opt)
    clusters = nearest(x, faiss_kmeans(x, 8)[0])
    assert values['nmi'] == pytest.approx(oracle.nmi(clusters.tolist(), labels.tolist()), abs=1e-12)
    assert values['f1'] == pytest.approx(oracle.pair_f1(clusters.tolist(), labels.tolist()), abs=1e-12)


def test_cosine_metrics_use_the_kmeans_of_the_normalised_features():
    """The reference discarded the cosine k-means; fixed: the cosine centroids are the normalised
    centroids of k-means on F^, and each sample takes the centroid of largest inner product."""
    x, labels = clustered(2)
    x[:, 0] += 4  # make Euclidean and cosine geometry differ
    opt = argparse.Namespace(n_classes=8, evaluate_on_gpu=False)
    values = metrics.compute_metrics(x, labels, ['c_nmi', 'c_f1'], opt)
    x_unit = unit_rows(torch.from_numpy(x)).numpy()
    centroids_cosine = unit_rows(torch.from_numpy(faiss_kmeans(x_unit, 8)[0])).numpy()
    clusters = nearest(x_unit, centroids_cosine, inner_product=True)
    assert values['c_nmi'] == pytest.approx(oracle.nmi(clusters.tolist(), labels.tolist()), abs=1e-12)
    assert values['c_f1'] == pytest.approx(oracle.pair_f1(clusters.tolist(), labels.tolist()), abs=1e-12)


def test_worked_example_cluster_scores():
    """Worked example: cluster labels 0,0,1,1,1,2 for labels 0,0,0,1,1,2 -> f1 = 0.5, nmi = 0.6853314789615866."""
    clusters, labels = torch.tensor([0, 0, 1, 1, 1, 2]), torch.tensor([0, 0, 0, 1, 1, 2])
    assert f1.Metric()(clusters, labels) == pytest.approx(0.5, abs=1e-12)
    assert nmi.Metric()(clusters, labels) == pytest.approx(0.6853314789615866, abs=1e-12)


def test_f1_matches_pair_counting_and_is_nan_without_shared_pairs():
    rng = np.random.default_rng(4)
    clusters, labels = rng.integers(0, 5, size=60), rng.integers(0, 7, size=60)
    assert f1.Metric()(torch.from_numpy(clusters), torch.from_numpy(labels)) == \
        pytest.approx(oracle.pair_f1(clusters.tolist(), labels.tolist()), abs=1e-12)
    assert np.isnan(f1.Metric()(torch.tensor([0, 1, 2, 3]), torch.tensor([0, 0, 1, 1])))


def test_nearest_centroid_ties_go_to_the_lowest_index_as_in_faiss():
    """Exact ties (duplicate centroids, spread over several centroid groups): faiss keeps the lowest index."""
    from metrics.kmeans import _Assignment
    rng = np.random.default_rng(5)
    centroids = rng.integers(0, 2, size=(150, 2)).astype(np.float32)
    x = rng.integers(-1, 3, size=(40, 2)).astype(np.float32)
    x_t = torch.from_numpy(x)
    labels = _Assignment.search(x_t, (x_t * x_t).sum(1), torch.from_numpy(centroids)).labels
    np.testing.assert_array_equal(labels.numpy(), nearest(x, centroids))


@pytest.mark.parametrize('clusters,labels', [
    ([0, 0, 0, 0], [1, 1, 1, 1]),           # one group on both sides: 1
    ([0, 1, 2, 3], [0, 0, 0, 0]),           # one class: no information, 0
    ([0, 0, 0, 0], [0, 1, 2, 3]),           # one cluster: 0
    ([5, 5, 9, 9], [1, 1, 0, 0]),           # the same partition, other names: 1
    ([0, 1, 0, 1], [0, 0, 1, 1]),           # independent: 0
    ([3], [7]),
])
def test_nmi_special_cases_are_scikit_learns(clusters, labels):
    from sklearn.metrics import normalized_mutual_info_score
    assert nmi.Metric()(torch.tensor(clusters), torch.tensor(labels)) == normalized_mutual_info_score(clusters, labels)


@pytest.mark.parametrize('seed', range(6))
def test_nmi_is_scikit_learns_number(seed):
    """The reference's call, normalized_mutual_info_score(cluster labels, labels), the same float64 number, on
    random labelings of many sizes."""
    from sklearn.metrics import normalized_mutual_info_score
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 3000))
    labels = rng.integers(0, int(rng.integers(1, 60)), size=n)
    clusters = np.where(rng.random(n) < rng.random(), labels * 7 + 3, rng.integers(0, int(rng.integers(1, 60)), size=n))
    value = nmi.Metric()(torch.from_numpy(clusters), torch.from_numpy(labels))
    assert value == normalized_mutual_info_score(clusters, labels)
