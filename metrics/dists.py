"""Cosine-distance statistics of the embedding space (the reference's dists@ metrics), in float64.

intra: mean over classes of the mean pairwise cosine distance within the class (diagonal included in
the sum, divided by n^2 - n); a singleton class or one with a zero embedding has no finite value and
takes the largest finite class value (the reference let its NaN poison the mean).
inter: mean pairwise cosine distance between the L2-normalised class means (diagonal included,
divided by C^2 - C); a zero class mean makes it NaN, as scipy's cosine distance does.
Both sums use sum_{a,b} (1 - u_a.u_b) = n^2 - |sum_a u_a|^2 for unit vectors: O(N*D), no pair loop.
"""
import torch

from metrics.segments import segment_sum

MODES = ('intra', 'inter', 'intra_over_inter')


def unit_rows(x):
    """Rows scaled to unit norm (zero rows stay zero), and which rows were zero."""
    norms = x.norm(dim=1, keepdim=True)
    zero = norms[:, 0] == 0
    return x / torch.where(zero[:, None], torch.ones_like(norms), norms), zero


def pairwise_cosine_distance_sum(unit_sums, counts):
    counts = counts.double()
    return counts ** 2 - (unit_sums ** 2).sum(dim=1)


class Metric:
    def __init__(self, mode):
        self.mode = mode
        self.name = 'dists@{}'.format(mode)
        self.requires = ['features', 'target_labels']

    def __call__(self, features, target_labels):
        x = features.double()
        _, inverse, counts = torch.unique(target_labels, return_inverse=True, return_counts=True)
        if self.mode == 'intra':
            return self.intra(x, inverse, counts)
        if self.mode == 'inter':
            return self.inter(x, inverse, counts)
        return self.intra(x, inverse, counts) / max(self.inter(x, inverse, counts), 1e-8)

    @staticmethod
    def intra(x, inverse, counts):
        units, is_zero = unit_rows(x)
        sums = segment_sum(units, inverse, len(counts))
        per_class = pairwise_cosine_distance_sum(sums, counts) / (counts.double() ** 2 - counts.double())
        has_zero = torch.bincount(inverse[is_zero], minlength=len(counts))
        per_class[(counts < 2) | (has_zero > 0)] = float('nan')
        finite = torch.isfinite(per_class)
        if not finite.any():
            return float('nan')
        per_class[~finite] = per_class[finite].max()
        return float(per_class.mean())

    @staticmethod
    def inter(x, inverse, counts):
        sums = segment_sum(x, inverse, len(counts))
        units, is_zero = unit_rows(sums / counts.double()[:, None])
        n_classes = len(counts)
        if is_zero.any() or n_classes < 2:
            return float('nan')
        total = n_classes ** 2 - float((units.sum(dim=0) ** 2).sum())
        return total / (n_classes ** 2 - n_classes)
