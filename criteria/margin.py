"""Margin loss of Wu et al. with a learnable class boundary β."""
import torch

from criteria.base import TripletLoss, registry_constants
from criteria.common import check_class_range, margin_distance


class Criterion(TripletLoss):
    """Hinges relu(D⁺ − β + m) and relu(β − D⁻ + m) with β of the anchor's class, summed and divided by
    the number of triplets with at least one active hinge (the reference's OR count, kept)."""
    ACCEPTS_MEMORY = True
    REQUIRES_OPTIM = True
    NEEDS_N_CLASSES = True

    def __init__(self, opt, batchminer, n_classes):
        super().__init__('margin', batchminer)
        self.n_classes = n_classes
        self.margin = opt.loss_margin_margin
        self.nu = opt.loss_margin_nu
        self.beta_constant = opt.loss_margin_beta_constant
        if self.beta_constant:
            self.beta = opt.loss_margin_beta
        else:
            self.beta = torch.nn.Parameter(torch.ones(n_classes) * opt.loss_margin_beta)
        self.lr = opt.loss_margin_beta_lr

    def triplet_loss(self, anchor, positive, negative, triplets, batch, labels):
        if self.beta_constant:
            beta = torch.full((len(triplets),), float(self.beta), dtype=batch.dtype, device=batch.device)
        else:
            check_class_range(labels, self.n_classes, 'margin')
            beta = self.beta.to(batch.dtype)[labels[triplets[:, 0]]]
        pos_loss = torch.nn.functional.relu(margin_distance(anchor, positive) - beta + self.margin)
        neg_loss = torch.nn.functional.relu(beta - margin_distance(anchor, negative) + self.margin)
        active = ((pos_loss > 0) | (neg_loss > 0)).sum()
        # with no active triplet the sum is an exact, graph-connected 0 and dividing by 1 keeps it
        loss = (pos_loss + neg_loss).sum() / active.clamp(min=1).to(batch.dtype)
        if self.nu:
            # ν·Σ_t β_t (the reference adds a β tensor of the wrong shape); a constant β enters once, as ν·β₀
            loss = loss + self.nu * (float(self.beta) if self.beta_constant else beta.sum())
        return loss


ALLOWED_MINING_OPS, REQUIRES_BATCHMINER, REQUIRES_OPTIM = registry_constants(Criterion)
