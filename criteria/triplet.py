"""Triplet loss with squared distances (spec criteria.md A.1)."""
import torch

from criteria.common import TRIPLET_MINERS, graph_zero, miner_labels, squared_distance, triplet_indices

ALLOWED_MINING_OPS = list(TRIPLET_MINERS)
REQUIRES_BATCHMINER = True
REQUIRES_OPTIM = False


class Criterion(torch.nn.Module):
    """L = mean_t relu(d²(a, p) − d²(a, n) + m) over all mined triplets, inactive ones included."""
    ALLOWED_MINING_OPS = ALLOWED_MINING_OPS
    REQUIRES_BATCHMINER = REQUIRES_BATCHMINER
    REQUIRES_OPTIM = REQUIRES_OPTIM

    def __init__(self, opt, batchminer):
        super().__init__()
        self.name = 'triplet'
        self.margin = opt.loss_triplet_margin
        self.batchminer = batchminer

    def forward(self, batch, labels, **kwargs):
        triplets = triplet_indices(self.batchminer(batch, miner_labels(labels)), batch)
        if not len(triplets):
            return graph_zero(batch)
        anchor, positive, negative = batch[triplets[:, 0]], batch[triplets[:, 1]], batch[triplets[:, 2]]
        hinge = squared_distance(anchor, positive) - squared_distance(anchor, negative) + self.margin
        return torch.nn.functional.relu(hinge).mean()
