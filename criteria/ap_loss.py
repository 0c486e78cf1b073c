"""Smooth-AP as a ranking criterion, registered as `ap_loss`."""
import torch

from criteria.base import registry_constants
from criteria.common import all_miner_names
from criteria.smooth_ap_loss import SmoothAP


class Criterion(torch.nn.Module):
    """Smooth-AP with the seed's fixed temperature 0.01. The miner is required and stored but never
    called, and the triplet margin is stored unused, both as in the seed (its flags keep working)."""
    ALLOWED_MINING_OPS = all_miner_names()
    REQUIRES_BATCHMINER = True
    REQUIRES_OPTIM = False

    def __init__(self, opt, batchminer):
        super().__init__()
        self.name = 'aploss'
        self.margin = opt.loss_triplet_margin
        self.batchminer = batchminer
        self.smooth_ap = SmoothAP(0.01, opt.bs, opt.bs // opt.samples_per_class, opt.embed_dim)

    def forward(self, batch, labels, **kwargs):
        return self.smooth_ap(batch, labels)


ALLOWED_MINING_OPS, REQUIRES_BATCHMINER, REQUIRES_OPTIM = registry_constants(Criterion)
