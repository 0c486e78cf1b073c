"""Device-independent reductions, pinned float32 products and the first k-means assignment read off
the neighbour search: each must give exactly what the plain computation gives."""
import argparse

import numpy as np
import pytest
import torch

import metrics
from metrics import dists, kmeans as kmeans_module, map_at_r, mean_average_precision, precision
from metrics.computer import SharedComputations, as_inputs
from metrics.kmeans import FirstAssignment, _Assignment, initial_points
from metrics.neighbours import neighbour_hits
from metrics.search import FaissEngine, TorchEngine
from metrics.segments import ordered_segment_sum, segment_sum
from metrics_bruteforce import single_faiss_thread  # noqa: F401 (autouse fixture)
from test_metrics_clustering import faiss_kmeans, nearest


def wide_range_values(rng, shape, dtype):
    """Values over twelve decades: float sums of these depend on the order of the additions."""
    scale = 10.0 ** rng.uniform(-6, 6, size=shape[0]).reshape((-1,) + (1,) * (len(shape) - 1))
    return torch.from_numpy(rng.standard_normal(shape) * scale).to(dtype)


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('shape', [(700, 5), (700,)], ids=['rows', 'scalars'])
def test_ordered_segment_sum_has_the_bits_of_cpu_index_add(dtype, shape):
    rng = np.random.default_rng(0)
    values = wide_range_values(rng, shape, dtype)
    segments = torch.from_numpy(rng.integers(0, 60, size=shape[0]))
    segments[segments == 7] = 9  # an empty segment, and one twice as large
    expected = torch.zeros((64,) + shape[1:], dtype=dtype).index_add_(0, segments, values)
    assert torch.equal(ordered_segment_sum(values, segments, 64), expected)
    assert torch.equal(segment_sum(values, segments, 64), expected)
    # the test can fail: the same rows added in reverse order give other bits
    reverse = torch.zeros_like(expected).index_add_(0, segments.flip(0), values.flip(0))
    assert not torch.equal(reverse, expected)


def test_ordered_segment_sum_of_nothing():
    assert torch.equal(ordered_segment_sum(torch.zeros((0, 3)), torch.zeros(0, dtype=torch.long), 4),
                       torch.zeros((4, 3)))


def clustered(seed, n_classes=9, dim=6):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_classes), rng.integers(1, 9, size=n_classes))
    x = 3 * rng.standard_normal((n_classes, dim))[labels] + rng.standard_normal((len(labels), dim))
    x[:3] = 0  # zero rows: dists' special cases
    return x.astype(np.float32), labels


@pytest.mark.parametrize('seed', [0, 1])
def test_metrics_with_the_device_independent_sums_are_bit_identical(monkeypatch, seed):
    """What a GPU computes (the ordered sums) equals what the CPU computes (index_add_), bit for bit."""
    x, labels = clustered(seed)
    names = ['nmi', 'f1', 'mAP_1000', 'mAP_c', 'mAP@R', 'r_precision', 'dists@intra', 'dists@inter']
    opt = argparse.Namespace(rho_spectrum_embed_dim=None, evaluate_on_gpu=False)
    cpu = metrics.compute_metrics(x, labels, names, opt, n_classes=9)
    for module in (dists, map_at_r, mean_average_precision, kmeans_module):
        monkeypatch.setattr(module, 'segment_sum', ordered_segment_sum)
    ordered = metrics.compute_metrics(x, labels, names, opt, n_classes=9)
    assert ordered == cpu
    assert not np.isnan(cpu['f1'])


def run_first_assignment(x, k, engine, window):
    x = torch.from_numpy(x)
    first = FirstAssignment(x, k)
    neighbour_hits(x, torch.zeros(len(x), dtype=torch.long), window, engine, on_chunk=first.add_chunk)
    return first


def plain_first_assignment(x, k):
    x = torch.from_numpy(x)
    return _Assignment.search(x, (x * x).sum(1), x[initial_points(len(x), k)].clone()).labels


def integer_points(seed, n=300, dim=3):
    """Small integer coordinates: many exact duplicates and exactly tied initial centroids."""
    return np.random.default_rng(seed).integers(-2, 3, size=(n, dim)).astype(np.float32)


def gaussian_points(seed, n=400, dim=8):
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


@pytest.mark.parametrize('engine', [FaissEngine(), TorchEngine('cpu')], ids=lambda e: e.name)
@pytest.mark.parametrize('points, k, window', [
    (gaussian_points(0), 90, 120),   # most points settled by their lists
    (gaussian_points(1), 90, 3),     # short lists: most points searched
    (integer_points(2), 60, 80),     # exact ties between initial centroids: searched
    (integer_points(3), 40, 400),    # the list holds every point (padded)
], ids=['settled', 'short-lists', 'ties', 'padded'])
def test_first_assignment_from_the_neighbour_lists_equals_the_plain_search(engine, points, k, window):
    first = run_first_assignment(points, k, engine, window)
    np.testing.assert_array_equal(first.labels().numpy(), plain_first_assignment(points, k).numpy())


def test_first_assignment_settles_most_points_from_long_lists():
    points = gaussian_points(4)
    first = run_first_assignment(points, 90, FaissEngine(), 120)
    assert (first.found >= 0).float().mean() > 0.8


def test_first_assignment_does_not_trust_a_near_tie():
    """Two initial centroids at exactly the same distance: the list's order is not the k-means' order
    (lowest centroid index), so the point is left to the exact search."""
    x = np.array([[0, 0], [1, 0], [-1, 0], [5, 5], [6, 5], [5, 6]], dtype=np.float32)
    first = FirstAssignment(torch.from_numpy(x), 3)
    rows = initial_points(6, 3).tolist()
    # a hand-made list for point 0 whose two nearest initial centroids are tied
    a, b = [r for r in rows if r != 0][:2]
    idx = torch.tensor([[a, b, 0, 3, 4, 5]])
    first.add_chunk(0, idx, torch.tensor([[1.0, 1.0, 2.0, 3.0, 4.0, 5.0]]))
    assert first.found[0] == -1
    first.add_chunk(0, idx, torch.tensor([[1.0, 1.5, 2.0, 3.0, 4.0, 5.0]]))
    assert first.found[0] == rows.index(a)


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_kmeans_seeded_by_the_search_equals_faiss_clustering(monkeypatch, seed):
    """nmi/f1 next to long-list retrieval metrics take the shortcut; the clustering stays faiss's."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(30), rng.integers(2, 9, size=30))
    x = (3 * rng.standard_normal((30, 5))[labels] + rng.standard_normal((len(labels), 5))).astype(np.float32)
    taken = []
    labels_of = FirstAssignment.labels
    monkeypatch.setattr(FirstAssignment, 'labels', lambda self: taken.append(1) or labels_of(self))
    features, target_labels = as_inputs(x, labels, 'cpu')
    names = ['e_recall@1', 'mAP_1000', 'nmi', 'f1']
    opt = argparse.Namespace(evaluate_on_gpu=False)
    shared = SharedComputations(features, target_labels, [metrics.select(n, opt) for n in names], FaissEngine(), 30)
    centroids, clusters = shared['kmeans'], shared['kmeans_nearest']
    assert taken == [1]
    expected = faiss_kmeans(x, 30)[0]
    np.testing.assert_allclose(centroids.numpy(), expected, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(clusters.numpy(), nearest(x, expected))
    plain = kmeans_module.kmeans(features, 30)
    assert torch.equal(plain[0], centroids) and torch.equal(plain[1], clusters)


def test_full_float32_matmul_pins_ieee_and_restores_either_api():
    """The flags can be set without a GPU; the block must not leave the training's TF32 choice changed."""
    matmul = torch.backends.cuda.matmul
    original = matmul.fp32_precision
    try:
        for user_setting in ('tf32', 'ieee'):
            matmul.fp32_precision = user_setting
            with precision.full_float32_matmul('cuda'):
                assert matmul.fp32_precision == 'ieee'
            assert matmul.fp32_precision == user_setting
        with precision.full_float32_matmul('cpu'):
            assert matmul.fp32_precision == 'ieee'  # the CPU leaves the flag alone
        matmul.fp32_precision = original
        matmul.allow_tf32 = True  # the legacy flag, as older training code sets it
        with precision.full_float32_matmul('cuda'):
            assert matmul.fp32_precision == 'ieee'
        assert matmul.allow_tf32 is True
        matmul.allow_tf32 = False
    finally:
        matmul.fp32_precision = original


def test_forced_tf32_is_read_from_the_environment(monkeypatch):
    monkeypatch.setenv('NVIDIA_TF32_OVERRIDE', '1')
    assert precision.forced_tf32('cuda') and not precision.forced_tf32('cpu')
    monkeypatch.setenv('NVIDIA_TF32_OVERRIDE', '0')
    assert not precision.forced_tf32('cuda')
    monkeypatch.delenv('NVIDIA_TF32_OVERRIDE')
    assert not precision.forced_tf32('cuda')


def test_the_shortcut_trusts_only_float32_exact_distances(monkeypatch):
    """faiss-gpu's GEMM and a cuBLAS forced to TF32 may be off by more than the shortcut's tolerance."""
    assert FaissEngine().float32_distances() and TorchEngine('cpu').float32_distances()
    assert not FaissEngine(gpu=True).float32_distances()
    monkeypatch.setenv('NVIDIA_TF32_OVERRIDE', '1')
    assert not TorchEngine('cuda').float32_distances() and TorchEngine('cpu').float32_distances()


def test_kmeans_with_float64_products_still_equals_faiss(monkeypatch):
    """Where TF32 is forced the k-means' products run in float64: the clustering must not change."""
    monkeypatch.setattr(kmeans_module, 'forced_tf32', lambda device: True)
    for seed in range(4):
        x, labels = clustered(seed + 10)
        centroids, found = kmeans_module.kmeans(torch.from_numpy(x), 9)
        expected = faiss_kmeans(x, 9)[0]
        np.testing.assert_allclose(centroids.numpy(), expected, rtol=0, atol=1e-5)
        np.testing.assert_array_equal(found.numpy(), nearest(x, expected))


def test_tf32_sized_errors_would_break_the_float32_tolerance():
    """Why the products are pinned: operands cut to TF32's 10 mantissa bits move |x|^2 + |c|^2 - 2xc by
    far more than the pruning tolerance GEMM_TOLERANCE * (|x|^2 + max |c|^2) allows."""
    x = torch.from_numpy(gaussian_points(5, n=200, dim=128))
    c = x[:50].clone() + 0.01
    tf32 = lambda t: (t.view(torch.int32) & ~0x1FFF).view(torch.float32)  # noqa: E731
    exact = torch.cdist(x.double(), c.double()) ** 2
    sq_x, sq_c = (x * x).sum(1), (c * c).sum(1)
    truncated = sq_x[:, None] + sq_c[None, :] - 2 * (tf32(x) @ tf32(c).T)
    float32 = sq_x[:, None] + sq_c[None, :] - 2 * (x @ c.T)
    tolerance = kmeans_module.GEMM_TOLERANCE * (sq_x[:, None] + sq_c.max())
    assert ((float32.double() - exact).abs() <= tolerance).all()
    assert ((truncated.double() - exact).abs() > tolerance).any()


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
def test_cuda_metrics_repeat_bit_for_bit_and_ignore_tf32():
    """On the GPU: two runs give the same bits, TF32 switched on by the training changes nothing, and
    the k-means still equals faiss's."""
    x, labels = clustered(3, n_classes=40, dim=16)
    names = ['nmi', 'f1', 'mAP_1000', 'mAP@R', 'dists@intra', 'dists@inter']
    opt = argparse.Namespace(rho_spectrum_embed_dim=None, evaluate_on_gpu=False)
    engine = TorchEngine('cuda')
    first = metrics.compute_metrics(x, labels, names, opt, engine=engine, n_classes=40)
    matmul = torch.backends.cuda.matmul
    previous = matmul.fp32_precision
    matmul.fp32_precision = 'tf32'
    try:
        again = metrics.compute_metrics(x, labels, names, opt, engine=engine, n_classes=40)
        centroids, found = kmeans_module.kmeans(torch.from_numpy(x).cuda(), 40)
        assert matmul.fp32_precision == 'tf32'
    finally:
        matmul.fp32_precision = previous
    assert again == first
    cpu = metrics.compute_metrics(x, labels, names, opt, engine=FaissEngine(), n_classes=40)
    for name in names:
        assert first[name] == pytest.approx(cpu[name], rel=1e-6, abs=1e-9), name
    expected = faiss_kmeans(x, 40)[0]
    np.testing.assert_allclose(centroids.cpu().numpy(), expected, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(found.cpu().numpy(), nearest(x, expected))
