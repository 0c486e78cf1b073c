"""`rho_distance` miner, the ρ-regularised distance miner: for each
anchor with a positive, with probability --miner_rho_distance_cp a "push" triplet (i, i, n) whose
n is uniform over P(i); otherwise (i, p, n) with p uniform over P(i) and n drawn with the
inverse-sphere weights on Dist-eps distances clamped at --miner_rho_distance_lower_cutoff.
The upper cutoff is stored but never applied, as in the reference. The coin is drawn for every position.
With reference rows the candidates are batch ∪ reference (the batch's rows stay the anchors).
`self.push_triplets` counts the returned triplets whose positive and negative share a label.
"""
import torch

from batch_mining.common import (anchor_masks, as_triplets, candidate_distances, candidate_labels,
                                 draw_inverse_sphere_negatives, draw_uniform, read_option)


class BatchMiner:
    key = 'rho_distance'

    def __init__(self, opt):
        self.par = opt
        self.lower_cutoff = read_option(opt, 'miner_rho_distance_lower_cutoff')
        self.upper_cutoff = read_option(opt, 'miner_rho_distance_upper_cutoff')
        self.contrastive_p = read_option(opt, 'miner_rho_distance_cp')
        self.push_triplets = 0
        self.name = 'rho_distance'

    def __call__(self, batch, labels, ref_embeddings=None, ref_labels=None, return_distances=False):
        labels, joined, ref_embeddings = candidate_labels(batch, labels, ref_embeddings, ref_labels)
        dim = batch.shape[-1]
        distances = candidate_distances(batch, ref_embeddings, floor=1e-4).clamp(min=self.lower_cutoff)
        same, positive, _ = anchor_masks(labels, joined)
        push = torch.rand(labels.numel(), device=labels.device) < self.contrastive_p
        anchors = positive.any(dim=1).nonzero().squeeze(1)
        same_class = draw_uniform(positive[anchors])
        pushed = push[anchors]
        regular = anchors[~pushed]
        positives = torch.where(pushed, anchors, same_class)
        negatives = same_class.clone()
        negatives[~pushed] = draw_inverse_sphere_negatives(distances, dim, same, regular, self.name)
        triplets = as_triplets(anchors, positives, negatives)
        self.push_triplets = int((joined[positives] == joined[negatives]).sum())
        if return_distances:
            return triplets, distances
        return triplets
