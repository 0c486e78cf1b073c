"""`distance` miner, distance-weighted sampling of Wu et al. 2017, the default and the LSD paper's
miner: every anchor gets a positive uniform over P(i) (itself when its class occurs once, kept for
comparability with the reference) and an independent negative drawn with the inverse-sphere weights
on distances clamped below at --miner_distance_lower_cutoff. --miner_distance_upper_cutoff is
stored but never applied, as in the reference.

With reference rows (`ref_embeddings`, `ref_labels`, e.g. a cross-batch memory) the columns are batch ∪
reference: each batch anchor draws from its distances to every joined row (B x (B + M)), as below with
`tar_labels` the joined labels, so column i is the anchor itself.

The reference's optional columns: `distances` (B x M, used as given, unclamped) and `tar_labels` (their M labels).
The positive is then uniform over the columns of the anchor's label, minus column i when there are
two or more (as specified, even though column i need not be the anchor), else that single column.
Deviation: an anchor with no column of its label is skipped instead of mispairing every
later triplet.
"""
import torch

from batch_mining.common import (MiningError, as_triplets, batch_labels, candidate_distances, candidate_labels,
                                 draw_inverse_sphere_negatives, draw_uniform, pairwise_distances, read_option)


class BatchMiner:
    key = 'distance'

    def __init__(self, opt):
        self.par = opt
        self.lower_cutoff = read_option(opt, 'miner_distance_lower_cutoff')
        self.upper_cutoff = read_option(opt, 'miner_distance_upper_cutoff')
        self.name = 'distance'

    def __call__(self, batch, labels, ref_embeddings=None, ref_labels=None, tar_labels=None, return_distances=False,
                 distances=None):
        dim = batch.shape[1]
        if ref_embeddings is not None or ref_labels is not None:
            if tar_labels is not None or distances is not None:
                raise MiningError('distance mining takes reference rows or tar_labels/distances, not both')
            labels, tar_labels, ref_embeddings = candidate_labels(batch, labels, ref_embeddings, ref_labels)
            distances = candidate_distances(batch, ref_embeddings).clamp(min=self.lower_cutoff)
        elif distances is None:
            distances = pairwise_distances(batch).clamp(min=self.lower_cutoff)
        else:
            distances = distances.detach()
        labels = batch_labels(labels, batch, device=distances.device)
        bs, n_columns = distances.shape
        if bs != labels.numel():
            raise MiningError('distance mining got a distance matrix with {} rows for a batch of {}'.format(
                bs, labels.numel()))
        column_labels = labels if tar_labels is None else self.target_labels(tar_labels, n_columns, distances)
        same = labels[:, None] == column_labels[None, :]
        n_same = same.sum(dim=1)
        positive = same.clone()
        drop_self = ((n_same >= 2) & (torch.arange(bs, device=same.device) < n_columns)).nonzero().squeeze(1)
        positive[drop_self, drop_self] = False
        anchors = (n_same >= 1).nonzero().squeeze(1)
        positives = draw_uniform(positive[anchors])
        negatives = draw_inverse_sphere_negatives(distances, dim, same, anchors, self.name)
        triplets = as_triplets(anchors, positives, negatives)
        if return_distances:
            return triplets, distances
        return triplets

    @staticmethod
    def target_labels(tar_labels, n_columns, distances):
        """The M column labels as int64 on the distances' device; their count must match M."""
        if isinstance(tar_labels, torch.Tensor):
            column_labels = tar_labels.detach().to(device=distances.device, dtype=torch.int64).reshape(-1)
        else:
            column_labels = torch.as_tensor(tar_labels, dtype=torch.int64, device=distances.device).reshape(-1)
        if column_labels.numel() != n_columns:
            raise MiningError('distance mining got {} tar_labels for {} distance columns'.format(
                column_labels.numel(), n_columns))
        return column_labels
