"""The reference's mAP family over the shared neighbour hits.

AP_i = (1/n_{y_i}) * sum_{j <= L_i} m_ij * h_ij / j, with m_ij = [j-th neighbour shares i's label],
h_ij = sum_{t <= j} m_it, L_i = the window R (n_{y_i} for mAP_c), averaged over all N queries.
Kept quirks: n_{y_i} counts the query itself, so a perfect list scores (n-1)/n; sample average.
Against a gallery (no query is in it), n_{y_i} is the number of gallery images of query i's label, the
windows count gallery images, and queries whose label the gallery lacks are left out (NaN if all are).
"""
import torch

from metrics.segments import segment_sum

VARIANTS = ('mAP', 'mAP_1000', 'mAP_lim', 'mAP_c')


def class_sizes_per_sample(target_labels):
    _, inverse, counts = torch.unique(target_labels, return_inverse=True, return_counts=True)
    return counts[inverse]


def window(variant, n_samples, class_sizes):
    """The window R of each variant: N, 1000, min(1023, N) or the largest class size."""
    return {'mAP': n_samples, 'mAP_1000': 1000, 'mAP_lim': min(1023, n_samples),
            'mAP_c': int(class_sizes.max())}[variant]


class Metric:
    def __init__(self, variant, cosine=False):
        self.variant = variant
        self.name = ('c_' if cosine else '') + variant
        self.requires = ['neighbour_hits_cosine' if cosine else 'neighbour_hits', 'target_labels']

    def neighbours(self, n_samples, class_sizes, query_in_database=True):
        return window(self.variant, n_samples, class_sizes)

    def __call__(self, hits, target_labels):
        sizes = class_sizes_per_sample(target_labels) if hits.relevant is None else hits.relevant
        n = hits.n_queries
        inside = hits.rank <= window(self.variant, hits.n_database, sizes)
        if self.variant == 'mAP_c':
            inside &= hits.rank <= sizes[hits.query]
        query, rank, order = hits.query[inside], hits.rank[inside], hits.order[inside]
        precision_at_hits = segment_sum(order.double() / rank.double(), query, n)
        if hits.relevant is None:
            return float((precision_at_hits / sizes).sum()) / n
        counted = sizes > 0
        if not counted.any():
            return float('nan')
        return float((precision_at_hits[counted] / sizes[counted]).sum()) / int(counted.sum())
