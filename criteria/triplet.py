"""Triplet loss with squared distances."""
import torch

from criteria.base import TripletLoss, registry_constants
from criteria.common import squared_distance


class Criterion(TripletLoss):
    """L = mean_t relu(d²(a, p) − d²(a, n) + m) over all mined triplets, inactive ones included."""
    ACCEPTS_MEMORY = True

    def __init__(self, opt, batchminer):
        super().__init__('triplet', batchminer)
        self.margin = opt.loss_triplet_margin

    def triplet_loss(self, anchor, positive, negative, triplets, batch, labels):
        hinge = squared_distance(anchor, positive) - squared_distance(anchor, negative) + self.margin
        return torch.nn.functional.relu(hinge).mean()


ALLOWED_MINING_OPS, REQUIRES_BATCHMINER, REQUIRES_OPTIM = registry_constants(Criterion)
