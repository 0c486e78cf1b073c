"""The framework's simplified lifted-structure loss on the lifted miner's set form."""
import torch

from criteria.base import SetLoss, registry_constants
from criteria.common import cross_distances, masked_logsumexp


class Criterion(SetLoss):
    """ℓ_k = relu(LSE_{p∈P_k} d_ε(a_k, p) + LSE_{n∈N_k} (m − d_ε(a_k, n))), averaged, + λ₂·mean ‖x‖.
    Distances are anchor-to-member, what the reference computed under PyTorch before 1.11."""
    MINER = 'lifted'
    SINGLE_POSITIVE = False

    def __init__(self, opt, batchminer):
        super().__init__('lifted', batchminer)
        self.margin = opt.loss_lifted_neg_margin
        self.l2_weight = opt.loss_lifted_l2

    def set_loss(self, batch, anchors, positive_mask, negative_mask):
        distances = cross_distances(batch[anchors], batch, offset=1e-6)
        pos_term = masked_logsumexp(distances, positive_mask)
        neg_term = masked_logsumexp(self.margin - distances, negative_mask)
        loss = torch.nn.functional.relu(pos_term + neg_term).mean()
        return loss + self.l2_weight * batch.norm(p=2, dim=1).mean()


ALLOWED_MINING_OPS, REQUIRES_BATCHMINER, REQUIRES_OPTIM = registry_constants(Criterion)
