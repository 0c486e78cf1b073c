"""`npair` miner, set form. For each anchor with a positive, ascending:
one positive uniform over P(i), and every position of another label as the negative set.

Returns `(anchors, positives, negatives)`: a list of int anchor positions, a list of one int
positive per anchor, and a list of ascending int64 numpy arrays (empty for a one-class batch). With
reference rows the positive and the negatives come from batch ∪ reference (the batch's rows are the anchors).
"""
import numpy as np

from batch_mining.common import anchor_masks, candidate_labels, draw_uniform


def rows_as_arrays(mask):
    """Each row of a boolean numpy matrix as the ascending array of its True columns."""
    if mask.shape[0] == 0:
        return []
    columns = np.nonzero(mask)[1].astype(np.int64)
    return np.split(columns, np.cumsum(mask.sum(axis=1))[:-1])


class BatchMiner:
    key = 'npair'

    def __init__(self, opt):
        self.par = opt
        self.name = 'npair'

    def __call__(self, batch, labels, ref_embeddings=None, ref_labels=None):
        labels, joined, _ = candidate_labels(batch, labels, ref_embeddings, ref_labels)
        _, positive, negative = anchor_masks(labels, joined)
        anchors = positive.any(dim=1).nonzero().squeeze(1)
        positives = draw_uniform(positive[anchors])
        negatives = rows_as_arrays(negative[anchors].cpu().numpy())
        return anchors.tolist(), positives.tolist(), negatives
