"""`lifted` miner, set form, no random draws. For each anchor with a
positive, ascending: all its positives P(i) and all its negatives N(i).

Returns `(anchors, positives, negatives)`: a list of int anchor positions and two lists of
ascending int64 numpy arrays, one array per anchor. With reference rows the sets are taken over
batch ∪ reference (the batch's rows are the anchors).
"""
from batch_mining.common import anchor_masks, candidate_labels
from batch_mining.npair import rows_as_arrays


class BatchMiner:
    key = 'lifted'

    def __init__(self, opt):
        self.par = opt
        self.name = 'lifted'

    def __call__(self, batch, labels, ref_embeddings=None, ref_labels=None):
        labels, joined, _ = candidate_labels(batch, labels, ref_embeddings, ref_labels)
        _, positive, negative = anchor_masks(labels, joined)
        anchors = positive.any(dim=1).nonzero().squeeze(1)
        return (anchors.tolist(), rows_as_arrays(positive[anchors].cpu().numpy()),
                rows_as_arrays(negative[anchors].cpu().numpy()))
