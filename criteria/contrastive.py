"""Contrastive loss on the pairs of mined triplets."""
import torch

from criteria.base import TripletLoss, registry_constants
from criteria.common import eps_distance


class Criterion(TripletLoss):
    """L = mean_t relu(d_ε(a, p) − m⁺) + mean_t relu(m⁻ − d_ε(a, n)), unsquared distances."""
    ACCEPTS_MEMORY = True

    def __init__(self, opt, batchminer):
        super().__init__('contrastive', batchminer)
        self.pos_margin = opt.loss_contrastive_pos_margin
        self.neg_margin = opt.loss_contrastive_neg_margin

    def triplet_loss(self, anchor, positive, negative, triplets, batch, labels):
        pos_loss = torch.nn.functional.relu(eps_distance(anchor, positive) - self.pos_margin).mean()
        neg_loss = torch.nn.functional.relu(self.neg_margin - eps_distance(anchor, negative)).mean()
        return pos_loss + neg_loss


ALLOWED_MINING_OPS, REQUIRES_BATCHMINER, REQUIRES_OPTIM = registry_constants(Criterion)
