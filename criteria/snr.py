"""Signal-to-noise-ratio triplet loss (spec criteria.md A.8)."""
import torch

from criteria.common import TRIPLET_MINERS, graph_zero, miner_labels, triplet_indices

ALLOWED_MINING_OPS = list(TRIPLET_MINERS)
REQUIRES_BATCHMINER = True
REQUIRES_OPTIM = False


class Criterion(torch.nn.Module):
    """h_t = relu(var(a−p)/var(a) − var(a−n)/var(a) + m), summed over the active triplets and divided by
    their number, + λ·mean_t |Σ_k a_k|. λ is 0 with a miner named `distance` (E-16, kept)."""
    ALLOWED_MINING_OPS = ALLOWED_MINING_OPS
    REQUIRES_BATCHMINER = REQUIRES_BATCHMINER
    REQUIRES_OPTIM = REQUIRES_OPTIM

    def __init__(self, opt, batchminer):
        super().__init__()
        self.name = 'snr'
        self.margin = opt.loss_snr_margin
        self.reg_lambda = opt.loss_snr_reg_lambda
        self.batchminer = batchminer
        if self.batchminer.name == 'distance':
            self.reg_lambda = 0

    def forward(self, batch, labels, **kwargs):
        triplets = triplet_indices(self.batchminer(batch, miner_labels(labels)), batch)
        if not len(triplets):
            return graph_zero(batch)
        anchor, positive, negative = batch[triplets[:, 0]], batch[triplets[:, 1]], batch[triplets[:, 2]]
        anchor_var = torch.var(anchor, dim=1)
        pos_snr = torch.var(anchor - positive, dim=1) / anchor_var
        neg_snr = torch.var(anchor - negative, dim=1) / anchor_var
        hinge = torch.nn.functional.relu(pos_snr - neg_snr + self.margin)
        # E-7: with no active triplet the hinge sum is an exact, graph-connected 0; divide it by 1
        snr_loss = hinge.sum() / (hinge > 0).sum().clamp(min=1).to(batch.dtype)
        reg_loss = anchor.sum(dim=1).abs().mean()
        return snr_loss + self.reg_lambda * reg_loss
