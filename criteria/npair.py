"""N-pair loss on the npair miner's set form (spec criteria.md A.4)."""
import torch

from criteria.common import graph_zero, log1p_sum_exp, membership_mask, miner_labels, position_vector

ALLOWED_MINING_OPS = ['npair']
REQUIRES_BATCHMINER = True
REQUIRES_OPTIM = False


class Criterion(torch.nn.Module):
    """L = mean_k log(1 + Σ_{n∈N_k} exp(⟨a_k, x_n⟩ − ⟨a_k, p_k⟩)) + λ₂·mean_j ‖x_j‖, on X/4 for bninception."""
    ALLOWED_MINING_OPS = ALLOWED_MINING_OPS
    REQUIRES_BATCHMINER = REQUIRES_BATCHMINER
    REQUIRES_OPTIM = REQUIRES_OPTIM

    def __init__(self, opt, batchminer):
        super().__init__()
        self.name = 'npair'
        # the reference's guard against exp overflow for BN-Inception's larger embeddings
        self.shrink_batch = 'bninception' in opt.arch
        self.l2_weight = opt.loss_npair_l2
        self.batchminer = batchminer

    def forward(self, batch, labels, **kwargs):
        anchors, positives, negatives = self.batchminer(batch, miner_labels(labels))
        anchors = position_vector(anchors, batch.device)
        if not len(anchors):
            return graph_zero(batch)
        positives = position_vector(positives, batch.device)
        negative_mask = membership_mask(negatives, len(anchors), len(batch), batch.device)
        if self.shrink_batch:
            batch = batch / 4
        anchor = batch[anchors]
        inner = anchor @ batch.T - (anchor * batch[positives]).sum(-1, keepdim=True)
        npair_loss = log1p_sum_exp(inner, negative_mask).mean()
        return npair_loss + self.l2_weight * batch.norm(p=2, dim=1).mean()
