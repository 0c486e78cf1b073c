"""Angular loss plus N-pair loss on the npair miner's set form."""
import numpy as np
import torch

from criteria.base import SetLoss, registry_constants
from criteria.common import log1p_sum_exp


class Criterion(SetLoss):
    """N-pair term on raw vectors (exponent clamped to ±50) + λ·angular term on normalised vectors
    + λ₂·mean ‖x‖. Ragged negative sets (class-random batches) are masked rather than stacked, which the
    reference cannot do."""
    MINER = 'npair'

    def __init__(self, opt, batchminer):
        super().__init__('angular', batchminer)
        self.tan_angular_margin = np.tan(np.pi / 180 * opt.loss_angular_alpha)
        self.lam = opt.loss_angular_npair_ang_weight
        self.l2_weight = opt.loss_angular_npair_l2

    def set_loss(self, batch, anchors, positives, negative_mask):
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


ALLOWED_MINING_OPS, REQUIRES_BATCHMINER, REQUIRES_OPTIM = registry_constants(Criterion)
