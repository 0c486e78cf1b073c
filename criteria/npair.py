"""N-pair loss on the npair miner's set form."""
import architectures
from criteria.base import SetLoss, registry_constants
from criteria.common import log1p_sum_exp


class Criterion(SetLoss):
    """L = mean_k log(1 + Σ_{n∈N_k} exp(⟨a_k, x_n⟩ − ⟨a_k, p_k⟩)) + λ₂·mean_j ‖x_j‖,
    on X/4 where the backbone's record asks for it (BN-Inception)."""
    MINER = 'npair'

    def __init__(self, opt, batchminer):
        super().__init__('npair', batchminer)
        # the reference's guard against exp overflow for BN-Inception's larger embeddings
        self.shrink_batch = architectures.backbone_config(opt.arch, opt)['npair_shrink_batch']
        self.l2_weight = opt.loss_npair_l2

    def set_loss(self, batch, anchors, positives, negative_mask):
        if self.shrink_batch:
            batch = batch / 4
        anchor = batch[anchors]
        inner = anchor @ batch.T - (anchor * batch[positives]).sum(-1, keepdim=True)
        npair_loss = log1p_sum_exp(inner, negative_mask).mean()
        return npair_loss + self.l2_weight * batch.norm(p=2, dim=1).mean()


ALLOWED_MINING_OPS, REQUIRES_BATCHMINER, REQUIRES_OPTIM = registry_constants(Criterion)
