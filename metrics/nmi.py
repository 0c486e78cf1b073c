"""NMI of the k-means cluster labels against the classes: I(C;Y) / ((H(C) + H(Y)) / 2), natural logarithms.

The reference calls scikit-learn's normalized_mutual_info_score(cluster_labels, labels) (arithmetic
normalisation). This is that computation, operation for operation in the same order, so the value is the same
float64 number (tests/test_metrics_clustering.py compares them with ==): the contingency counts are taken on
the labels' device, the float64 arithmetic on their non-empty cells in NumPy, as scikit-learn does it.
Written here rather than called because importing scikit-learn (with SciPy) added ~1.3 s to the start of every
run that evaluates NMI, the default.
"""
import math

import numpy as np
import torch


def entropy(group_sizes):
    """H of a partition from its group sizes (scikit-learn's _entropy)."""
    if group_sizes.size <= 1:
        return 0.0
    total = np.sum(group_sizes)
    return float(-np.sum((group_sizes / total) * (np.log(group_sizes) - math.log(total))))


def mutual_information(row_of_cell, column_of_cell, cell_sizes, row_sizes, column_sizes):
    """I over the non-empty cells of the contingency table, in row-major order (scikit-learn's
    mutual_info_score): terms below float64's eps are zero and the sum is clipped at 0."""
    if row_sizes.size == 1 or column_sizes.size == 1:
        return 0.0
    total = cell_sizes.sum()
    share = cell_sizes / total
    outer = row_sizes.take(row_of_cell).astype(np.int64) * column_sizes.take(column_of_cell).astype(np.int64)
    log_outer = -np.log(outer) + math.log(row_sizes.sum()) + math.log(column_sizes.sum())
    terms = share * (np.log(cell_sizes) - math.log(total)) + share * log_outer
    terms = np.where(np.abs(terms) < np.finfo(terms.dtype).eps, 0.0, terms)
    return float(np.clip(terms.sum(), 0.0, None))


class Metric:
    def __init__(self, cosine=False):
        self.name = 'c_nmi' if cosine else 'nmi'
        self.requires = ['kmeans_nearest_cosine' if cosine else 'kmeans_nearest', 'target_labels']

    def __call__(self, cluster_labels, target_labels):
        # rows: clusters, columns: classes (the reference passes the cluster labels first)
        _, rows, row_sizes = torch.unique(cluster_labels, return_inverse=True, return_counts=True)
        _, columns, column_sizes = torch.unique(target_labels, return_inverse=True, return_counts=True)
        if len(row_sizes) == len(column_sizes) <= 1:   # both put every sample (or none) in one group
            return 1.0
        n_columns = len(column_sizes)
        cells, cell_sizes = torch.unique(rows * n_columns + columns, return_counts=True)
        cells = cells.cpu().numpy()
        row_sizes, column_sizes, cell_sizes = (sizes.cpu().numpy().astype(np.float64)
                                               for sizes in (row_sizes, column_sizes, cell_sizes))
        information = mutual_information(cells // n_columns, cells % n_columns, cell_sizes, row_sizes, column_sizes)
        if information == 0:
            return 0.0
        return information / float(np.mean([entropy(row_sizes), entropy(column_sizes)]))
