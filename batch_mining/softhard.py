"""`softhard` miner, for anchors with a positive: positive uniform over
the positives farther than the closest negative (else over P(i)); negative, drawn independently,
uniform over the negatives closer than the farthest positive (else over N(i)).

With reference rows the positives and negatives come from batch ∪ reference (the batch's rows are the anchors).
Deviation: an anchor without negatives (a one-class batch, where the reference crashes) is
skipped.
"""
import torch

from batch_mining.common import anchor_masks, as_triplets, candidate_distances, candidate_labels, draw_uniform


class BatchMiner:
    key = 'softhard'

    def __init__(self, opt):
        self.par = opt
        self.name = 'softhard'

    def __call__(self, batch, labels, ref_embeddings=None, ref_labels=None, return_distances=False):
        labels, joined, ref_embeddings = candidate_labels(batch, labels, ref_embeddings, ref_labels)
        distances = candidate_distances(batch, ref_embeddings)
        _, positive, negative = anchor_masks(labels, joined)
        anchors = (positive.any(dim=1) & negative.any(dim=1)).nonzero().squeeze(1)
        row_distances, row_positive, row_negative = distances[anchors], positive[anchors], negative[anchors]
        closest_negative = row_distances.masked_fill(~row_negative, float('inf')).min(dim=1, keepdim=True).values
        farthest_positive = row_distances.masked_fill(~row_positive, float('-inf')).max(dim=1, keepdim=True).values
        hard_positive = row_positive & (row_distances > closest_negative)
        hard_negative = row_negative & (row_distances < farthest_positive)
        positive_pool = torch.where(hard_positive.any(dim=1, keepdim=True), hard_positive, row_positive)
        negative_pool = torch.where(hard_negative.any(dim=1, keepdim=True), hard_negative, row_negative)
        triplets = as_triplets(anchors, draw_uniform(positive_pool), draw_uniform(negative_pool))
        if return_distances:
            return triplets, distances.cpu().numpy()
        return triplets
