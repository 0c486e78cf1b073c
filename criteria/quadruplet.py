"""Quadruplet loss: a triplet term plus a negative-versus-fourth-sample term."""
import torch

from criteria.base import TripletLoss, registry_constants
from criteria.common import CriterionError, cross_distances, plain_distance


class Criterion(TripletLoss):
    """L = mean_t relu(D⁺_t − D⁻_t + α₁) + mean_{t,u} relu(D⁺_t − ‖x_{n_t} − x_{f_u}‖ + α₂);
    the T×T mean is the reference's broadcasting, kept."""

    def __init__(self, opt, batchminer):
        super().__init__('quadruplet', batchminer)
        self.margin_alpha_1 = opt.loss_quadruplet_margin_alpha_1
        self.margin_alpha_2 = opt.loss_quadruplet_margin_alpha_2

    def draw_fourth(self, negatives):
        """f_t uniform over {j < T : n_j ≠ n_t}, or over all j < T when that set is empty (where the reference
        crashes); j is then used as a batch position, as in the reference. Overridable so tests can fix f."""
        candidates = negatives[None, :] != negatives[:, None]
        empty = ~candidates.any(dim=1, keepdim=True)
        candidates = candidates | empty
        return torch.multinomial(candidates.to(torch.float32), 1).squeeze(1)

    def triplet_loss(self, anchor, positive, negative, triplets, batch, labels):
        if len(triplets) > len(batch):
            raise CriterionError('quadruplet loss: the fourth sample is drawn from positions 0..T-1, so it '
                                 'needs at most one triplet per batch row ({} triplets, {} rows)'.format(
                                     len(triplets), len(batch)))
        fourth = self.draw_fourth(triplets[:, 2])
        pos_dist = plain_distance(anchor, positive)
        triplet_loss = torch.nn.functional.relu(pos_dist - plain_distance(anchor, negative)
                                                + self.margin_alpha_1)
        fourth_dist = cross_distances(negative, batch[fourth])
        quadruplet_loss = torch.nn.functional.relu(pos_dist[:, None] - fourth_dist + self.margin_alpha_2)
        return triplet_loss.mean() + quadruplet_loss.mean()


ALLOWED_MINING_OPS, REQUIRES_BATCHMINER, REQUIRES_OPTIM = registry_constants(Criterion)
