"""`random` miner: B distinct triplets drawn uniformly without
replacement from all valid (a, p, n) with y_a = y_p, a != p, y_n != y_a.

The valid set (Σ_c n_c(n_c−1)(B−n_c) triplets) is never listed: each triplet is a number k in
[0, V), ordered by anchor, then positive rank, then negative rank. Distinct numbers are drawn by
rejecting repeats in batched rounds, which gives a uniformly random B-subset in random order. With reference
rows, p and n range over batch ∪ reference and a over the batch.
"""
import torch

from batch_mining.common import MiningError, anchor_masks, as_triplets, candidate_labels


def kth_true(mask, rows, ranks):
    """Column of the ranks[t]-th True entry (0-based, ascending) of row rows[t] of `mask`."""
    order = torch.sort((~mask).to(torch.int8), dim=1, stable=True).indices
    return order[rows, ranks]


def distinct_uniform_integers(high, count, device):
    """`count` distinct integers, uniform without replacement from [0, high), in draw order."""
    drawn = torch.zeros(0, dtype=torch.int64, device=device)
    while drawn.numel() < count:
        candidates = torch.cat([drawn, torch.randint(0, high, (count - drawn.numel(),), device=device)])
        values, inverse = torch.unique(candidates, return_inverse=True)
        positions = torch.arange(candidates.numel(), device=device)
        first = torch.full((values.numel(),), candidates.numel(), dtype=torch.int64, device=device)
        first = first.scatter_reduce(0, inverse, positions, reduce='amin')
        drawn = candidates[first.sort().values]
    return drawn


class BatchMiner:
    key = 'random'

    def __init__(self, opt):
        self.par = opt
        self.name = 'random'

    def __call__(self, batch, labels, ref_embeddings=None, ref_labels=None):
        labels, joined, _ = candidate_labels(batch, labels, ref_embeddings, ref_labels)
        bs = labels.numel()
        _, positive, negative = anchor_masks(labels, joined)
        n_pos, n_neg = positive.sum(dim=1), negative.sum(dim=1)
        per_anchor = n_pos * n_neg
        n_valid = int(per_anchor.sum())
        if n_valid < bs:
            raise MiningError('random mining needs at least {} valid triplets (the batch size), but the '
                              'batch has only {}'.format(bs, n_valid))
        flat = distinct_uniform_integers(n_valid, bs, labels.device)
        ends = per_anchor.cumsum(0)
        anchors = torch.searchsorted(ends, flat, right=True)
        offset = flat - (ends[anchors] - per_anchor[anchors])
        positives = kth_true(positive, anchors, offset // n_neg[anchors])
        negatives = kth_true(negative, anchors, offset % n_neg[anchors])
        return as_triplets(anchors, positives, negatives)
