"""`parametric` miner: negatives drawn from a fixed histogram over the
anchor-negative distance. K = --miner_parametric_n_support support points s_0..s_{K-1} span
--miner_parametric_support_lim [lo, hi]; a pair at Dist-eps distance d falls in bin b = #{k in
1..K-2 : s_k < d} and weighs w_b, a function of s_b set by --miner_parametric_mode:
uniform 1; hards [s_b <= 0.5]; veryhards [s_b <= 0.3]; semihards [0.3 <= s_b <= 0.7]; then
clipped into [1e-15, 1]. For each anchor with a positive: positive uniform over P(i), negative
Categorical over N(i) with these weights.

The reference cannot build this miner (it reads three flags nobody defines and has no defaults);
the project's flags default to
uniform / 30 / [0.1, 1.4]. Where the reference is broken its evident intent is implemented:
no leftover interactive breakpoint; semihards sets the out-of-band bins to 0 before the clip (the
reference's zeroing test, s < 0.3 and s > 0.7 at once, can never hold);
pairs with d < lo or d > hi get weight 0, the OR the reference wrote as an always-false AND;
an unknown mode is a one-line error. Consequence of the OR: an anchor whose negatives all lie
outside [lo, hi] has nothing to draw from and is skipped. With reference rows the positives and negatives
come from batch ∪ reference (the batch's rows are the anchors).
"""
import numpy as np
import torch

from batch_mining.common import (MiningError, anchor_masks, as_triplets, candidate_distances, candidate_labels,
                                 draw_categorical, draw_uniform, read_option)

MODES = ('uniform', 'hards', 'semihards', 'veryhards')


def bin_weights(mode, support):
    """w_b for the K-1 bins from the lower support point s_b of each, clipped into [1e-15, 1] and
    normalised (the scale is irrelevant: weights are renormalised per anchor)."""
    lower = support[:-1]
    if mode == 'uniform':
        weights = np.ones_like(lower)
    elif mode == 'hards':
        weights = (lower <= 0.5).astype(np.float64)
    elif mode == 'veryhards':
        weights = (lower <= 0.3).astype(np.float64)
    else:
        weights = ((lower >= 0.3) & (lower <= 0.7)).astype(np.float64)
    weights = np.clip(weights, 1e-15, 1)
    return weights / weights.sum()


class BatchMiner:
    key = 'parametric'

    def __init__(self, opt):
        self.par = opt
        self.mode = read_option(opt, 'miner_parametric_mode')
        self.n_support = read_option(opt, 'miner_parametric_n_support')
        self.support_lim = read_option(opt, 'miner_parametric_support_lim')
        if self.mode not in MODES:
            raise MiningError('--miner_parametric_mode must be one of {}, got {!r}'.format(
                ', '.join(MODES), self.mode))
        if int(self.n_support) != self.n_support or self.n_support < 2:
            raise MiningError('--miner_parametric_n_support must be an integer >= 2, got {!r}'.format(
                self.n_support))
        if len(self.support_lim) != 2 or not float(self.support_lim[0]) < float(self.support_lim[1]):
            raise MiningError('--miner_parametric_support_lim must be two numbers lo < hi, got {!r}'.format(
                self.support_lim))
        self.support = np.linspace(float(self.support_lim[0]), float(self.support_lim[1]), int(self.n_support))
        self.distr = bin_weights(self.mode, self.support)
        self.name = 'parametric'

    def __call__(self, batch, labels, ref_embeddings=None, ref_labels=None):
        labels, joined, ref_embeddings = candidate_labels(batch, labels, ref_embeddings, ref_labels)
        distances = candidate_distances(batch, ref_embeddings, floor=1e-4).to(torch.float64)
        _, positive, negative = anchor_masks(labels, joined)
        interior = torch.as_tensor(self.support[1:-1], device=distances.device)
        weights = torch.as_tensor(self.distr, device=distances.device)[torch.bucketize(distances, interior)]
        outside = (distances < self.support[0]) | (distances > self.support[-1])
        weights = weights.masked_fill(outside | ~negative, 0.0)
        anchors = (positive.any(dim=1) & (weights.sum(dim=1) > 0)).nonzero().squeeze(1)
        positives = draw_uniform(positive[anchors])
        negatives = draw_categorical(weights[anchors])
        return as_triplets(anchors, positives, negatives)
