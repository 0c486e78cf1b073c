"""Smooth-AP as a ranking criterion, registered as `ap_loss` (spec criteria.md B.2)."""
import torch

from criteria.common import ALL_MINERS, label_tensor
from criteria.smooth_ap_loss import SmoothAP

ALLOWED_MINING_OPS = list(ALL_MINERS)
REQUIRES_BATCHMINER = True
REQUIRES_OPTIM = False


class Criterion(torch.nn.Module):
    """Smooth-AP with the seed's fixed temperature 0.01. The miner is required and stored but never
    called, and the triplet margin is stored unused, both as in the seed (B.2)."""
    ALLOWED_MINING_OPS = ALLOWED_MINING_OPS
    REQUIRES_BATCHMINER = REQUIRES_BATCHMINER
    REQUIRES_OPTIM = REQUIRES_OPTIM

    def __init__(self, opt, batchminer):
        super().__init__()
        self.name = 'aploss'
        self.margin = opt.loss_triplet_margin
        self.batchminer = batchminer
        self.smooth_ap = SmoothAP(0.01, opt.bs, opt.bs // opt.samples_per_class, opt.embed_dim)

    def forward(self, batch, labels, **kwargs):
        return self.smooth_ap(batch, label_tensor(labels, batch))
