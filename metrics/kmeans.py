"""k-means as faiss.Clustering runs it for the metrics (spec C.2), in torch on the features' device.

Reproduced from faiss (checked against faiss.Clustering in tests/test_metrics_clustering.py), with
the spec's parameters: k clusters, 20 iterations, no subsampling, 1 redo, seed 1234, not spherical.
  * init: the first k rows of faiss.rand_perm(N, seed + 1);
  * iteration: nearest centroid (squared L2, lowest index on ties); centroid = float32 sum of its
    points times 1/count; empty clusters are re-seeded by faiss's split_clusters (a fresh
    mt19937(1234) stream per iteration, the chosen cluster split with a +-1/1024 perturbation);
  * faiss stops once the objective repeats; its centroids then equal those of the previous update.

Speed without changing the result (the reference's 20 full N x k searches dominate the evaluation):
Yinyang bounds (Ding et al., ICML 2015) -- an exact distance to the own centroid and, per group of
GROUP_SIZE centroids, a lower bound on the distance to the others, loosened by the group's largest
drift -- prove for most points that their nearest centroid cannot have changed. The others are
searched only in the groups whose bound allows a nearer centroid, or against all k centroids when
that is more than FULL_SEARCH_SHARE of them. The N_MOVERS centroids that moved most are measured
directly instead of loosening their group's bound. Bounds carry a float tolerance, so near-ties are
always searched with faiss's formula.
Extra memory: the N x k/GROUP_SIZE bounds (42 MB for SOP) plus one chunk of WORKSPACE_BYTES.
"""
import contextlib

import faiss
import numpy as np
import torch

from metrics.search import WORKSPACE_BYTES

N_ITER = 20
SEED = 1234
SPLIT_SEED = 1234
SPLIT_EPS = 1.0 / 1024
N_MOVERS = 256
GROUP_SIZE = 64
FULL_SEARCH_SHARE = 0.3
GEMM_TOLERANCE = 1e-5  # relative error allowed for a squared distance computed as |x|^2 + |c|^2 - 2xc


class KMeansInputError(ValueError):
    pass


def kmeans(x, k, n_iter=N_ITER, seed=SEED):
    """Return (centroids k x D, labels N = index of the nearest final centroid)."""
    n = x.shape[0]
    if n < k:
        raise KMeansInputError('k-means needs at least n_classes = {} samples, the evaluated set has {} '
                               '(needed by nmi/f1/c_nmi/c_f1).'.format(k, n))
    x = x.to(torch.float32).contiguous()
    x_sqnorm = (x * x).sum(1)
    if n == k:
        centroids = x.clone()
        return centroids, _Assignment.search(x, x_sqnorm, centroids).labels
    centroids = x[torch.from_numpy(faiss_permutation(n, seed + 1)[:k]).to(x.device)].clone()
    assignment = _Assignment.search(x, x_sqnorm, centroids)
    previous_objective = None
    for _ in range(n_iter):
        objective = assignment.objective()
        new_centroids, n_split = update_centroids(x, assignment.labels, k)
        drift = (new_centroids - centroids).norm(dim=1)
        centroids, previous_labels = new_centroids, assignment.labels
        assignment = assignment.update(x, x_sqnorm, centroids, drift)
        if objective == previous_objective:
            break  # faiss's early stop, after the update
        if n_split == 0 and torch.equal(assignment.labels, previous_labels):
            break  # a fixed point: every further update reproduces these centroids
        previous_objective = objective
    return centroids, assignment.labels


def faiss_permutation(n, seed):
    perm = np.empty(n, dtype=np.int32)
    faiss.rand_perm(faiss.swig_ptr(perm), n, seed)
    return perm.astype(np.int64)


def update_centroids(x, labels, k):
    """faiss compute_centroids + split_clusters; returns (centroids, number of re-seeded clusters)."""
    counts = torch.bincount(labels, minlength=k).to(torch.float32)
    sums = torch.zeros((k, x.shape[1]), dtype=torch.float32, device=x.device).index_add_(0, labels, x)
    inverse = torch.where(counts > 0, 1.0 / counts.clamp_min(1), torch.zeros_like(counts))
    centroids = sums * inverse[:, None]
    n_split = split_empty_clusters(counts.cpu().numpy(), centroids, x.shape[0])
    return centroids, n_split


def split_empty_clusters(counts, centroids, n):
    """faiss split_clusters: each empty cluster copies a cluster drawn with probability (size-1)/(n-k)."""
    k = len(counts)
    empty = np.flatnonzero(counts == 0)
    if len(empty) == 0:
        return 0
    stream = np.random.RandomState(SPLIT_SEED)  # MT19937 seeded like std::mt19937(1234): faiss's RandomGenerator
    denominator = np.float64(np.float32(n - k))
    parity = torch.ones(centroids.shape[1], dtype=centroids.dtype, device=centroids.device)
    parity[1::2] = -1
    grow, shrink = 1 + parity * SPLIT_EPS, 1 - parity * SPLIT_EPS
    draws = np.empty(0, dtype=np.float32)
    for ci in empty:
        # faiss scans cj = 0, 1, ... (cyclically) and takes cj when its next rand_float() < p[cj]
        p = ((counts.astype(np.float64) - 1.0) / denominator).astype(np.float32)
        while True:
            if len(draws) < k:
                raw = stream.randint(0, 2 ** 32, size=4 * k, dtype=np.uint32)  # the raw 32-bit outputs
                fresh = raw.astype(np.float32) / np.float32(4294967296.0)
                draws = np.concatenate([draws, fresh])
            accepted = np.flatnonzero(draws[:k] < p)
            if len(accepted):
                cj = accepted[0]
                draws = draws[cj + 1:]
                break
            draws = draws[k:]
        source = centroids[cj].clone()
        centroids[ci] = source * grow
        centroids[cj] = source * shrink
        counts[ci] = counts[cj] / 2
        counts[cj] -= counts[ci]
    return len(empty)


@contextlib.contextmanager
def single_cpu_thread(device):
    """Many small GEMMs: extra CPU threads only wait for each other (badly so on a busy machine)."""
    threads = torch.get_num_threads()
    if device.type == 'cpu':
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def group_min(dist, size):
    """Row-wise minimum over consecutive column blocks of `size` (the last block may be shorter)."""
    rows, k = dist.shape
    whole = k // size * size
    parts = [dist[:, :whole].view(rows, -1, size).amin(dim=2)] if whole else []
    if whole < k:
        parts.append(dist[:, whole:].amin(dim=1, keepdim=True))
    return torch.cat(parts, dim=1)


def lower_from_squared(squared, tolerance):
    """A distance no larger than the true one, given a GEMM-formula squared distance."""
    return (squared - tolerance).clamp_min(0).sqrt()


class _Assignment:
    """Nearest-centroid labels with Yinyang bounds (Ding et al. 2015): `upper` = distance to the own
    centroid, `lower[i, g]` <= distance from i to every other centroid of group g, where group g is
    the centroids g*GROUP_SIZE ... (g+1)*GROUP_SIZE - 1 (random groups: the init is a random draw)."""

    def __init__(self, labels, upper, lower, n_searched):
        self.labels, self.upper, self.lower = labels, upper, lower
        self.n_searched = n_searched

    def objective(self):
        return float((self.upper.double() ** 2).sum())

    @classmethod
    def search(cls, x, x_sqnorm, centroids):
        """Exact search against all centroids (faiss's |x|^2 + |c|^2 - 2xc, lowest index on ties), chunked."""
        n, k = x.shape[0], centroids.shape[0]
        c_sqnorm = (centroids * centroids).sum(1)
        labels = torch.empty(n, dtype=torch.long, device=x.device)
        best = torch.empty(n, dtype=torch.float32, device=x.device)
        lower = torch.empty((n, -(-k // GROUP_SIZE)), dtype=torch.float32, device=x.device)
        rows = max(1, WORKSPACE_BYTES // (4 * k))
        block_columns = torch.arange(GROUP_SIZE, device=x.device)
        for start in range(0, n, rows):
            part = slice(start, min(n, start + rows))
            dist = torch.addmm(c_sqnorm[None, :], x[part], centroids.T, alpha=-2)
            group_lower = group_min(dist, GROUP_SIZE)
            # the first group holding the minimum, then its first minimal column: the lowest index
            nearest_group = group_lower.argmin(dim=1)
            columns = nearest_group[:, None] * GROUP_SIZE + block_columns
            block = dist.gather(1, columns.clamp_max(k - 1)).masked_fill_(columns >= k, float('inf'))
            best[part], offset = block.min(dim=1)
            labels[part] = nearest_group * GROUP_SIZE + offset
            block.scatter_(1, offset[:, None], float('inf'))
            lower[part] = group_lower.scatter_(1, nearest_group[:, None], block.amin(dim=1, keepdim=True))
        tolerance = GEMM_TOLERANCE * (x_sqnorm + c_sqnorm.max())
        upper = (best + x_sqnorm).clamp_min(0).sqrt()
        lower = lower_from_squared(lower + x_sqnorm[:, None], tolerance[:, None])
        return cls(labels, upper, lower, n)

    def update(self, x, x_sqnorm, centroids, drift):
        """Assignment for moved centroids: keep every label the bounds prove, search only the groups
        (or, past FULL_SEARCH_SHARE of them, all centroids) that could hold a nearer centroid."""
        k = centroids.shape[0]
        group = torch.arange(k, device=x.device) // GROUP_SIZE
        labels = self.labels.clone()
        upper = (x - centroids[labels]).norm(dim=1)
        movers = torch.topk(drift, min(N_MOVERS, k)).indices
        settled_drift = drift.clone()
        settled_drift[movers] = 0
        group_drift = torch.zeros(self.lower.shape[1], device=x.device).scatter_reduce_(0, group, settled_drift, 'amax')
        lower = (self.lower - group_drift[None, :]) * (1 - 1e-6)
        # the centroids that moved most are measured instead of loosening their group's bound
        to_movers = self.distances(x, x_sqnorm, centroids[movers])
        to_movers[movers[None, :] == labels[:, None]] = float('inf')
        lower.scatter_reduce_(1, group[movers][None, :].expand(len(x), -1), to_movers, 'amin')
        stale = (lower.amin(dim=1) <= upper).nonzero()[:, 0]
        if len(stale) == 0:
            return _Assignment(labels, upper, lower, 0)
        examined = lower[stale] <= upper[stale, None]
        wide = examined.float().mean(dim=1) > FULL_SEARCH_SHARE
        everything, some = stale[wide], stale[~wide]
        if len(everything):
            fresh = _Assignment.search(x[everything], x_sqnorm[everything], centroids)
            labels[everything], upper[everything], lower[everything] = fresh.labels, fresh.upper, fresh.lower
        n_searched = len(everything)
        if len(some):
            n_searched += self.search_groups(x, x_sqnorm, centroids, some, examined[~wide], labels, upper, lower)
        return _Assignment(labels, upper, lower, n_searched)

    @staticmethod
    def distances(x, x_sqnorm, centroids):
        """Lower bounds on the distances of every x to `centroids` (GEMM formula, tolerance removed)."""
        c_sqnorm = (centroids * centroids).sum(1)
        squared = torch.addmm(c_sqnorm[None, :], x, centroids.T, alpha=-2) + x_sqnorm[:, None]
        return lower_from_squared(squared, GEMM_TOLERANCE * (x_sqnorm[:, None] + c_sqnorm.max()))

    @staticmethod
    def search_groups(x, x_sqnorm, centroids, points, examined, labels, upper, lower):
        """Search `points` among the centroids of their examined groups; update labels and bounds in place.
        Returns the work in full-search equivalents."""
        k = centroids.shape[0]
        c_sqnorm = (centroids * centroids).sum(1)
        pair_point, pair_group = examined.nonzero().T
        order = torch.argsort(pair_group, stable=True)
        pair_point, pair_group = pair_point[order], pair_group[order]
        best = torch.empty(len(order), dtype=torch.float32, device=x.device)
        best_index = torch.empty(len(order), dtype=torch.long, device=x.device)
        second = torch.full((len(order),), float('inf'), dtype=torch.float32, device=x.device)
        groups, counts = torch.unique_consecutive(pair_group, return_counts=True)
        start = 0
        with single_cpu_thread(x.device):
            for g, count in zip(groups.tolist(), counts.tolist()):
                pairs = slice(start, start + count)
                start += count
                rows = points[pair_point[pairs]]
                first, last = g * GROUP_SIZE, min(k, (g + 1) * GROUP_SIZE)
                dist = torch.addmm(c_sqnorm[None, first:last], x[rows], centroids[first:last].T, alpha=-2)
                best[pairs], index = dist.min(dim=1)
                best_index[pairs] = index + first
                if last - first > 1:
                    second[pairs] = dist.scatter_(1, index[:, None], float('inf')).amin(dim=1)
        point_sqnorm = x_sqnorm[points[pair_point]]
        best, second = best + point_sqnorm, second + point_sqnorm
        # nearest over the examined groups and the own centroid; equal distances -> lowest index
        old_labels, old_upper = labels[points], upper[points]
        nearest = (old_upper ** 2).scatter_reduce(0, pair_point, best, 'amin')
        candidates = torch.where(best <= nearest[pair_point], best_index, torch.full_like(best_index, k))
        own = torch.where(old_upper ** 2 <= nearest, old_labels, torch.full_like(old_labels, k))
        new_labels = own.scatter_reduce(0, pair_point, candidates, 'amin')
        labels[points], upper[points] = new_labels, nearest.sqrt()
        # bounds: exact for the examined groups; a left centroid bounds its (unexamined) group by its distance
        tolerance = GEMM_TOLERANCE * (point_sqnorm + c_sqnorm.max())
        group_lower = torch.where(best_index == new_labels[pair_point], second, best)
        lower[points[pair_point], pair_group] = lower_from_squared(group_lower, tolerance)
        moved = (new_labels != old_labels).nonzero()[:, 0]
        if len(moved):
            rows, old_group = points[moved], old_labels[moved] // GROUP_SIZE
            lower[rows, old_group] = torch.minimum(lower[rows, old_group], old_upper[moved] * (1 - 1e-6))
        return len(order) * GROUP_SIZE / k
