"""`random_distance` miner, a baseline: the distance miner's draws
under a uniformly random permutation of the batch labels (the embeddings stay in place). Anchors
are the positions whose shuffled label occurs twice; positive uniform over the shuffled P(i),
negative with the inverse-sphere weights under the shuffled labels, on Dist-plain distances
clamped at --miner_distance_lower_cutoff (upper cutoff unused, as in the reference).
With reference rows the labels of batch ∪ reference are permuted together and the batch's rows anchor
against the joined set. Its `.name` is 'distance', as in the reference: losses treat it as the distance miner;
its `key` is the registry key.
"""
import torch

from batch_mining.common import (anchor_masks, as_triplets, candidate_distances, candidate_labels,
                                 draw_inverse_sphere_negatives, draw_uniform, read_option)


class BatchMiner:
    key = 'random_distance'

    def __init__(self, opt):
        self.par = opt
        self.lower_cutoff = read_option(opt, 'miner_distance_lower_cutoff')
        self.upper_cutoff = read_option(opt, 'miner_distance_upper_cutoff')
        self.name = 'distance'

    def __call__(self, batch, labels, ref_embeddings=None, ref_labels=None):
        labels, joined, ref_embeddings = candidate_labels(batch, labels, ref_embeddings, ref_labels)
        shuffled = joined[torch.randperm(joined.numel(), device=labels.device)]
        dim = batch.shape[-1]
        distances = candidate_distances(batch, ref_embeddings).clamp(min=self.lower_cutoff)
        same, positive, _ = anchor_masks(shuffled[:labels.numel()], shuffled)
        anchors = positive.any(dim=1).nonzero().squeeze(1)
        positives = draw_uniform(positive[anchors])
        negatives = draw_inverse_sphere_negatives(distances, dim, same, anchors, 'random_distance')
        return as_triplets(anchors, positives, negatives)
