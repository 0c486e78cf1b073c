"""k-means as faiss.Clustering runs it for the metrics, in torch on the features' device.

Reproduced from faiss (checked against faiss.Clustering in tests/test_metrics_clustering.py), with
the reference's parameters: k clusters, 20 iterations, no subsampling, 1 redo, seed 1234, not spherical.
  * init: the first k rows of faiss.rand_perm(N, seed + 1);
  * iteration: nearest centroid (squared L2, lowest index on ties); centroid = float32 sum of its
    points in index order (segments.segment_sum: the same bits on every device) times 1/count; empty
    clusters are re-seeded by faiss's split_clusters (a fresh mt19937(1234) stream per iteration, the
    chosen cluster split with a +-1/1024 perturbation);
  * faiss stops once the objective repeats; its centroids then equal those of the previous update.

Speed without changing the result (the reference's 20 full N x k searches dominate the evaluation):
Yinyang bounds (Ding et al., ICML 2015) -- an exact distance to the own centroid and, per group of
GROUP_SIZE centroids, a lower bound on the distance to the others, loosened by the group's largest
drift -- prove for most points that their nearest centroid cannot have changed. The others are
searched only in the groups whose bound allows a nearer centroid, or against all k centroids when
that is more than FULL_SEARCH_SHARE of them. The N_MOVERS centroids that moved most are measured
directly instead of loosening their group's bound. Bounds carry a float tolerance, so near-ties are
always searched with faiss's formula. The initial centroids are data points, so the first assignment
can also be read off the exact neighbour lists of the evaluation (FirstAssignment), sparing one
full N x k search.
Products run in IEEE float32 even if the training enabled TF32 (the tolerance assumes float32), in
float64 where NVIDIA_TF32_OVERRIDE forces TF32 on cuBLAS (see metrics/precision.py).
Extra memory: the N x k/GROUP_SIZE bounds (42 MB for SOP) plus one chunk of WORKSPACE_BYTES.
"""
import contextlib

import faiss
import numpy as np
import torch

from metrics.precision import forced_tf32, full_float32_matmul
from metrics.search import WORKSPACE_BYTES
from metrics.segments import segment_sum

N_ITER = 20
SEED = 1234
SPLIT_SEED = 1234
SPLIT_EPS = 1.0 / 1024
N_MOVERS = 256
GROUP_SIZE = 64
FULL_SEARCH_SHARE = 0.3
GEMM_TOLERANCE = 1e-5  # relative error allowed for a squared distance computed as |x|^2 + |c|^2 - 2xc
LIST_SETTLES = 20  # neighbour lists hold this many initial centroids on average: the first assignment comes from them


class KMeansInputError(ValueError):
    pass


def kmeans(x, k, n_iter=N_ITER, seed=SEED, first_labels=None):
    """Return (centroids k x D, labels N = index of the nearest final centroid). `first_labels`: the
    nearest initial centroid of every point when already known (FirstAssignment), else searched."""
    n = x.shape[0]
    if n < k:
        raise KMeansInputError('k-means needs at least n_classes = {} samples, the evaluated set has {} '
                               '(needed by nmi/f1/c_nmi/c_f1).'.format(k, n))
    x = x.to(torch.float32).contiguous()
    x_sqnorm = (x * x).sum(1)
    with full_float32_matmul(x.device):
        if n == k:
            centroids = x.clone()
            return centroids, _Assignment.search(x, x_sqnorm, centroids).labels
        centroids = x[initial_points(n, k, seed, x.device)].clone()
        if first_labels is None:
            assignment = _Assignment.search(x, x_sqnorm, centroids)
        else:
            assignment = _Assignment.unbounded(x, centroids, first_labels.to(x.device))
        previous_objective = None
        for _ in range(n_iter):
            objective = assignment.objective(x, centroids)
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


def initial_points(n, k, seed=SEED, device='cpu'):
    """The rows copied into the initial centroids: the first k of faiss.rand_perm(n, seed + 1)."""
    return torch.from_numpy(faiss_permutation(n, seed + 1)[:k]).to(device)


def faiss_permutation(n, seed):
    perm = np.empty(n, dtype=np.int32)
    faiss.rand_perm(faiss.swig_ptr(perm), n, seed)
    return perm.astype(np.int64)


def update_centroids(x, labels, k):
    """faiss compute_centroids + split_clusters; returns (centroids, number of re-seeded clusters)."""
    counts = torch.bincount(labels, minlength=k).to(torch.float32)
    sums = segment_sum(x, labels, k)  # float32, points added in index order, as faiss does
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


def minus_two_products(c_sqnorm, x, centroids):
    """|c|^2 - 2xc for every pair, faiss's formula without |x|^2; float64 products where TF32 is forced."""
    if forced_tf32(x.device):
        return torch.addmm(c_sqnorm[None, :].double(), x.double(), centroids.double().T, alpha=-2).float()
    return torch.addmm(c_sqnorm[None, :], x, centroids.T, alpha=-2)


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

    def objective(self, x, centroids):
        """Sum of squared distances to the own centroids, from the labels alone (the same bits whichever
        path found them)."""
        return float(((x - centroids[self.labels]) ** 2).sum(dim=1).double().sum())

    @classmethod
    def unbounded(cls, x, centroids, labels):
        """Known labels without bounds: the next update searches every point against all centroids."""
        upper = (x - centroids[labels]).norm(dim=1)
        return cls(labels, upper, torch.zeros((len(x), -(-len(centroids) // GROUP_SIZE)), device=x.device), len(x))

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
            dist = minus_two_products(c_sqnorm, x[part], centroids)
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
        movers = movers[drift[movers] > 0]  # near convergence most centroids stay put: nothing to measure
        settled_drift = drift.clone()
        settled_drift[movers] = 0
        group_drift = torch.zeros(self.lower.shape[1], device=x.device).scatter_reduce_(0, group, settled_drift, 'amax')
        lower = (self.lower - group_drift[None, :]) * (1 - 1e-6)
        # the centroids that moved most are measured instead of loosening their group's bound
        if len(movers):
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
        squared = minus_two_products(c_sqnorm, x, centroids) + x_sqnorm[:, None]
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
                dist = minus_two_products(c_sqnorm[first:last], x[rows], centroids[first:last])
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


def lists_settle_first_assignment(n, k, n_listed):
    """Whether neighbour lists of `n_listed` entries hold enough initial centroids (LIST_SETTLES on
    average) that the first assignment is worth reading off them."""
    return k < n and n_listed * k >= LIST_SETTLES * n


class FirstAssignment:
    """The nearest initial centroid of every point, read off exact squared-L2 neighbour lists (the
    point itself included) as the search hands them over chunk by chunk.

    The initial centroids are data points, so the first of them in a point's list is its nearest --
    unless another one lies within float error of it (4 tolerances: the list's and the k-means'
    formula may each be off by one, both ways), or past the list's end. Those points, and points
    whose list holds no initial centroid, are searched exactly in `labels`; the result equals
    _Assignment.search against the initial centroids."""

    def __init__(self, x, k, seed=SEED):
        n = x.shape[0]
        self.x, self.k = x, k
        self.points = initial_points(n, k, seed, x.device)
        self.centroid_of_row = torch.full((n,), -1, dtype=torch.long, device=x.device)
        self.centroid_of_row[self.points] = torch.arange(k, device=x.device)
        self.x_sqnorm = (x * x).sum(1)
        self.max_sqnorm = self.x_sqnorm.max()
        self.found = torch.full((n,), -1, dtype=torch.long, device=x.device)

    def add_chunk(self, start, idx, dist):
        """`idx`, `dist`: the ranked list (rows start ... start + len - 1; -1 = padding) and its distances."""
        n_rows, n_listed = idx.shape
        centroid = torch.where(idx >= 0, self.centroid_of_row[idx.clamp_min(0)], -1)
        is_centroid = centroid >= 0
        columns = torch.arange(n_listed, device=idx.device)
        first = torch.where(is_centroid, columns, n_listed).amin(dim=1)
        later = is_centroid & (columns[None, :] > first[:, None])
        second = torch.where(later, columns, n_listed).amin(dim=1)
        padded = torch.cat([dist, torch.full((n_rows, 1), float('inf'), device=dist.device)], dim=1)
        if n_listed < len(self.x):  # rows beyond the list are no nearer than its last entry
            padded[:, -1] = dist[:, -1]
        rows = torch.arange(n_rows, device=idx.device)
        gap = padded[rows, second] - padded[rows, first]
        tolerance = GEMM_TOLERANCE * (self.x_sqnorm[start:start + n_rows] + self.max_sqnorm)
        settled = (first < n_listed) & (gap > 4 * tolerance)
        chosen = centroid[rows, first.clamp_max(n_listed - 1)]
        self.found[start:start + n_rows] = torch.where(settled, chosen, -1)

    def labels(self):
        """Every point's nearest initial centroid (lowest index on ties); unsettled points searched."""
        labels = self.found.clone()
        pending = (labels < 0).nonzero()[:, 0]
        if len(pending):
            x = self.x[pending]
            with full_float32_matmul(x.device):
                labels[pending] = _Assignment.search(x, self.x_sqnorm[pending], self.x[self.points]).labels
        return labels
