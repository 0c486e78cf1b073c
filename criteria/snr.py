"""Signal-to-noise-ratio triplet loss."""
import torch

from criteria.base import TripletLoss, registry_constants


class Criterion(TripletLoss):
    """h_t = relu(var(a−p)/var(a) − var(a−n)/var(a) + m), summed over the active triplets and divided by
    their number, + λ·mean_t |Σ_k a_k|. λ is 0 with a miner named `distance` (random_distance included), a
    quirk of the reference kept so its runs reproduce: the registry passes the miner's name (`miner_name`), the
    loss never inspects its miner."""
    ACCEPTS_MEMORY = True
    NEEDS_MINER_NAME = True

    def __init__(self, opt, batchminer, miner_name=None):
        super().__init__('snr', batchminer)
        self.margin = opt.loss_snr_margin
        self.reg_lambda = 0 if miner_name == 'distance' else opt.loss_snr_reg_lambda

    def triplet_loss(self, anchor, positive, negative, triplets, batch, labels):
        anchor_var = torch.var(anchor, dim=1)
        pos_snr = torch.var(anchor - positive, dim=1) / anchor_var
        neg_snr = torch.var(anchor - negative, dim=1) / anchor_var
        hinge = torch.nn.functional.relu(pos_snr - neg_snr + self.margin)
        # with no active triplet the hinge sum is an exact, graph-connected 0 (the reference divides 0 by 0):
        # divide it by 1
        snr_loss = hinge.sum() / (hinge > 0).sum().clamp(min=1).to(batch.dtype)
        reg_loss = anchor.sum(dim=1).abs().mean()
        return snr_loss + self.reg_lambda * reg_loss


ALLOWED_MINING_OPS, REQUIRES_BATCHMINER, REQUIRES_OPTIM = registry_constants(Criterion)
