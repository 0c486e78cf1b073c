"""Quadruplet loss: a triplet term plus a negative-versus-fourth-sample term (spec criteria.md A.14)."""
import torch

from criteria.common import (TRIPLET_MINERS, CriterionError, cross_distances, graph_zero, miner_labels,
                             plain_distance, triplet_indices)

ALLOWED_MINING_OPS = list(TRIPLET_MINERS)
REQUIRES_BATCHMINER = True
REQUIRES_OPTIM = False


class Criterion(torch.nn.Module):
    """L = mean_t relu(D⁺_t − D⁻_t + α₁) + mean_{t,u} relu(D⁺_t − ‖x_{n_t} − x_{f_u}‖ + α₂); the T×T mean
    is the reference's broadcasting, kept."""
    ALLOWED_MINING_OPS = ALLOWED_MINING_OPS
    REQUIRES_BATCHMINER = REQUIRES_BATCHMINER
    REQUIRES_OPTIM = REQUIRES_OPTIM

    def __init__(self, opt, batchminer):
        super().__init__()
        self.name = 'quadruplet'
        self.margin_alpha_1 = opt.loss_quadruplet_margin_alpha_1
        self.margin_alpha_2 = opt.loss_quadruplet_margin_alpha_2
        self.batchminer = batchminer

    def draw_fourth(self, negatives):
        """f_t uniform over {j < T : n_j ≠ n_t}, or over all j < T when that set is empty (E-12); j is
        then used as a batch position, as in the reference. Overridable so tests can fix f."""
        candidates = negatives[None, :] != negatives[:, None]
        empty = ~candidates.any(dim=1, keepdim=True)
        candidates = candidates | empty
        return torch.multinomial(candidates.to(torch.float32), 1).squeeze(1)

    def forward(self, batch, labels, **kwargs):
        triplets = triplet_indices(self.batchminer(batch, miner_labels(labels)), batch)
        if not len(triplets):
            return graph_zero(batch)
        if len(triplets) > len(batch):
            raise CriterionError('quadruplet loss: the fourth sample is drawn from positions 0..T-1, so it '
                                 'needs at most one triplet per batch row ({} triplets, {} rows)'.format(
                                     len(triplets), len(batch)))
        fourth = self.draw_fourth(triplets[:, 2])
        anchor, positive, negative = batch[triplets[:, 0]], batch[triplets[:, 1]], batch[triplets[:, 2]]
        pos_dist = plain_distance(anchor, positive)
        triplet_loss = torch.nn.functional.relu(pos_dist - plain_distance(anchor, negative)
                                                + self.margin_alpha_1)
        fourth_dist = cross_distances(negative, batch[fourth])
        quadruplet_loss = torch.nn.functional.relu(pos_dist[:, None] - fourth_dist + self.margin_alpha_2)
        return triplet_loss.mean() + quadruplet_loss.mean()
