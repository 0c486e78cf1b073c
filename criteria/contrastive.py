"""Contrastive loss on the pairs of mined triplets (spec criteria.md A.6)."""
import torch

from criteria.common import TRIPLET_MINERS, eps_distance, graph_zero, miner_labels, triplet_indices

ALLOWED_MINING_OPS = list(TRIPLET_MINERS)
REQUIRES_BATCHMINER = True
REQUIRES_OPTIM = False


class Criterion(torch.nn.Module):
    """L = mean_t relu(d_ε(a, p) − m⁺) + mean_t relu(m⁻ − d_ε(a, n)), unsquared distances."""
    ALLOWED_MINING_OPS = ALLOWED_MINING_OPS
    REQUIRES_BATCHMINER = REQUIRES_BATCHMINER
    REQUIRES_OPTIM = REQUIRES_OPTIM

    def __init__(self, opt, batchminer):
        super().__init__()
        self.name = 'contrastive'
        self.pos_margin = opt.loss_contrastive_pos_margin
        self.neg_margin = opt.loss_contrastive_neg_margin
        self.batchminer = batchminer

    def forward(self, batch, labels, **kwargs):
        triplets = triplet_indices(self.batchminer(batch, miner_labels(labels)), batch)
        if not len(triplets):
            return graph_zero(batch)
        anchor, positive, negative = batch[triplets[:, 0]], batch[triplets[:, 1]], batch[triplets[:, 2]]
        pos_loss = torch.nn.functional.relu(eps_distance(anchor, positive) - self.pos_margin).mean()
        neg_loss = torch.nn.functional.relu(self.neg_margin - eps_distance(anchor, negative)).mean()
        return pos_loss + neg_loss
