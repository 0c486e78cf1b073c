"""Angular loss plus N-pair loss on the npair miner's set form (spec criteria.md A.5)."""
import numpy as np
import torch

from criteria.common import graph_zero, log1p_sum_exp, membership_mask, miner_labels, position_vector

ALLOWED_MINING_OPS = ['npair']
REQUIRES_BATCHMINER = True
REQUIRES_OPTIM = False


class Criterion(torch.nn.Module):
    """N-pair term on raw vectors (exponent clamped to ±50) + λ·angular term on normalised vectors
    + λ₂·mean ‖x‖. Ragged negative sets are masked rather than stacked (E-10)."""
    ALLOWED_MINING_OPS = ALLOWED_MINING_OPS
    REQUIRES_BATCHMINER = REQUIRES_BATCHMINER
    REQUIRES_OPTIM = REQUIRES_OPTIM

    def __init__(self, opt, batchminer):
        super().__init__()
        self.name = 'angular'
        self.tan_angular_margin = np.tan(np.pi / 180 * opt.loss_angular_alpha)
        self.lam = opt.loss_angular_npair_ang_weight
        self.l2_weight = opt.loss_angular_npair_l2
        self.batchminer = batchminer

    def forward(self, batch, labels, **kwargs):
        anchors, positives, negatives = self.batchminer(batch, miner_labels(labels))
        anchors = position_vector(anchors, batch.device)
        if not len(anchors):
            return graph_zero(batch)
        positives = position_vector(positives, batch.device)
        negative_mask = membership_mask(negatives, len(anchors), len(batch), batch.device)
        tan_sq = float(self.tan_angular_margin) ** 2

        unit = torch.nn.functional.normalize(batch, dim=-1)
        unit_anchor, unit_positive = unit[anchors], unit[positives]
        angular_exponent = (4 * tan_sq * (unit_anchor + unit_positive) @ unit.T
                            - 2 * (1 + tan_sq) * (unit_anchor * unit_positive).sum(-1, keepdim=True))
        angular_loss = log1p_sum_exp(angular_exponent, negative_mask).mean()

        anchor = batch[anchors]
        npair_exponent = anchor @ batch.T - (anchor * batch[positives]).sum(-1, keepdim=True)
        npair_loss = log1p_sum_exp(npair_exponent.clamp(min=-50, max=50), negative_mask).mean()

        return npair_loss + self.lam * angular_loss + self.l2_weight * batch.norm(p=2, dim=1).mean()
