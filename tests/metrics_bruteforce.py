"""Slow, loop-based implementations of the metric formulas, used as test oracles."""
import math

import faiss
import numpy as np
import pytest
from scipy.spatial import distance


def ranked_neighbours(features, query, inner_product=False):
    """All other samples of `query`, nearest first, ties by ascending index (float64, exact for small ints)."""
    x = np.asarray(features, dtype=np.float64)
    if inner_product:
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        x = np.where(norms > 0, x / np.where(norms > 0, norms, 1), 0)
        keys = [-float(x[query] @ x[j]) for j in range(len(x))]
    else:
        keys = [float(((x[query] - x[j]) ** 2).sum()) for j in range(len(x))]
    others = [j for j in range(len(x)) if j != query]
    return sorted(others, key=lambda j: (keys[j], j))


def neighbour_labels(features, labels, query, window, inner_product=False):
    """Labels of the first `window` neighbours; None for a slot beyond the last sample (never a hit)."""
    ranked = ranked_neighbours(features, query, inner_product)[:window]
    return [labels[j] for j in ranked] + [None] * (window - len(ranked))


def recall_at_k(features, labels, k, inner_product=False):
    found = [labels[i] in neighbour_labels(features, labels, i, k, inner_product) for i in range(len(labels))]
    return sum(found) / len(labels)


def reference_map(features, labels, variant, inner_product=False):
    """The reference's mAP: AP_i = (1/n_{y_i}) sum_{j <= L_i} m_ij h_ij / j, averaged over all queries."""
    n = len(labels)
    sizes = {c: list(labels).count(c) for c in set(labels)}
    window = {'mAP': n, 'mAP_1000': 1000, 'mAP_lim': min(1023, n), 'mAP_c': max(sizes.values())}[variant]
    total = 0.0
    for i in range(n):
        ranked = neighbour_labels(features, labels, i, window, inner_product)
        cutoff = sizes[labels[i]] if variant == 'mAP_c' else window
        hits, ap = 0, 0.0
        for j in range(1, cutoff + 1):
            if ranked[j - 1] == labels[i]:
                hits += 1
                ap += hits / j
        total += ap / sizes[labels[i]]
    return total / n


def map_at_r(features, labels, inner_product=False):
    """(MAP@R, R-Precision) of Musgrave et al.: R = other samples of the class; lone queries skipped."""
    maps, r_precisions = [], []
    for i in range(len(labels)):
        r = list(labels).count(labels[i]) - 1
        if r == 0:
            continue
        ranked = neighbour_labels(features, labels, i, r, inner_product)
        hits, ap = 0, 0.0
        for j in range(1, r + 1):
            if ranked[j - 1] == labels[i]:
                hits += 1
                ap += hits / j
        maps.append(ap / r)
        r_precisions.append(hits / r)
    if not maps:
        return float('nan'), float('nan')
    return float(np.mean(maps)), float(np.mean(r_precisions))


def pair_f1(cluster_labels, labels):
    """Pair counting over every pair i < j."""
    same_class = same_cluster = both = 0
    for i in range(len(labels)):
        for j in range(i + 1, len(labels)):
            c, k = labels[i] == labels[j], cluster_labels[i] == cluster_labels[j]
            same_class += c
            same_cluster += k
            both += c and k
    if both == 0:
        return float('nan')
    precision, recall = both / same_class, both / same_cluster
    return 2 * precision * recall / (precision + recall)


def nmi(cluster_labels, labels):
    """I(U;V) / ((H(U) + H(V)) / 2), natural logarithms."""
    n = len(labels)
    pairs = {}
    for u, v in zip(cluster_labels, labels):
        pairs[(u, v)] = pairs.get((u, v), 0) + 1
    pu = {u: list(cluster_labels).count(u) / n for u in set(cluster_labels)}
    pv = {v: list(labels).count(v) / n for v in set(labels)}
    mutual = sum(c / n * math.log((c / n) / (pu[u] * pv[v])) for (u, v), c in pairs.items())
    hu = -sum(p * math.log(p) for p in pu.values())
    hv = -sum(p * math.log(p) for p in pv.values())
    if hu == 0 and hv == 0:
        return 1.0
    return mutual / ((hu + hv) / 2)


def dists(features, labels):
    """(intra, inter, intra_over_inter) with scipy cosine distances and the project's intra fix (singletons take the largest class value)."""
    x = np.asarray(features, dtype=np.float64)
    classes = sorted(set(labels))
    per_class = []
    for c in classes:
        members = x[[i for i in range(len(labels)) if labels[i] == c]]
        n = len(members)
        with np.errstate(all='ignore'):
            per_class.append(distance.cdist(members, members, 'cosine').sum() / (n * n - n))
    per_class = np.array(per_class)
    finite = np.isfinite(per_class)
    per_class[~finite] = per_class[finite].max()
    intra = per_class.mean()
    means = []
    for c in classes:
        mean = x[[i for i in range(len(labels)) if labels[i] == c]].mean(axis=0)
        means.append(mean / np.linalg.norm(mean))
    means = np.array(means)
    with np.errstate(all='ignore'):
        inter = distance.cdist(means, means, 'cosine').sum() / (len(classes) ** 2 - len(classes))
    return intra, inter, intra / max(inter, 1e-8)


@pytest.fixture(autouse=True)
def single_faiss_thread():
    """Tiny test problems: faiss's OpenMP threads only spin on a shared 2-core machine."""
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(threads)
