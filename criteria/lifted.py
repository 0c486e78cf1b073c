"""The framework's simplified lifted-structure loss on the lifted miner's set form (spec criteria.md A.7)."""
import torch

from criteria.common import (cross_distances, graph_zero, masked_logsumexp, membership_mask, miner_labels,
                             position_vector)

ALLOWED_MINING_OPS = ['lifted']
REQUIRES_BATCHMINER = True
REQUIRES_OPTIM = False


class Criterion(torch.nn.Module):
    """ℓ_k = relu(LSE_{p∈P_k} d_ε(a_k, p) + LSE_{n∈N_k} (m − d_ε(a_k, n))), averaged, + λ₂·mean ‖x‖.
    Distances are anchor-to-member, the semantics the reference had before PyTorch 1.11 (E-9)."""
    ALLOWED_MINING_OPS = ALLOWED_MINING_OPS
    REQUIRES_BATCHMINER = REQUIRES_BATCHMINER
    REQUIRES_OPTIM = REQUIRES_OPTIM

    def __init__(self, opt, batchminer):
        super().__init__()
        self.name = 'lifted'
        self.margin = opt.loss_lifted_neg_margin
        self.l2_weight = opt.loss_lifted_l2
        self.batchminer = batchminer

    def forward(self, batch, labels, **kwargs):
        anchors, positives, negatives = self.batchminer(batch, miner_labels(labels))
        anchors = position_vector(anchors, batch.device)
        if not len(anchors):
            return graph_zero(batch)
        positive_mask = membership_mask(positives, len(anchors), len(batch), batch.device)
        negative_mask = membership_mask(negatives, len(anchors), len(batch), batch.device)
        distances = cross_distances(batch[anchors], batch, offset=1e-6)
        pos_term = masked_logsumexp(distances, positive_mask)
        neg_term = masked_logsumexp(self.margin - distances, negative_mask)
        loss = torch.nn.functional.relu(pos_term + neg_term).mean()
        return loss + self.l2_weight * batch.norm(p=2, dim=1).mean()
