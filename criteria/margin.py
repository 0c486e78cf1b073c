"""Margin loss of Wu et al. with a learnable class boundary β (spec criteria.md A.2)."""
import torch

from criteria.common import (TRIPLET_MINERS, check_class_range, graph_zero, label_tensor, margin_distance,
                             miner_labels, triplet_indices)

ALLOWED_MINING_OPS = list(TRIPLET_MINERS)
REQUIRES_BATCHMINER = True
REQUIRES_OPTIM = True


class Criterion(torch.nn.Module):
    """Hinges relu(D⁺ − β + m) and relu(β − D⁻ + m) with β of the anchor's class, summed and divided by
    the number of triplets with at least one active hinge (the reference's OR count, E-3)."""
    ALLOWED_MINING_OPS = ALLOWED_MINING_OPS
    REQUIRES_BATCHMINER = REQUIRES_BATCHMINER
    REQUIRES_OPTIM = REQUIRES_OPTIM

    def __init__(self, opt, batchminer):
        super().__init__()
        self.name = 'margin'
        self.n_classes = opt.n_classes
        self.margin = opt.loss_margin_margin
        self.nu = opt.loss_margin_nu
        self.beta_constant = opt.loss_margin_beta_constant
        if self.beta_constant:
            self.beta = opt.loss_margin_beta
        else:
            self.beta = torch.nn.Parameter(torch.ones(opt.n_classes) * opt.loss_margin_beta)
        self.batchminer = batchminer
        self.lr = opt.loss_margin_beta_lr

    def forward(self, batch, labels, **kwargs):
        triplets = triplet_indices(self.batchminer(batch, miner_labels(labels)), batch)
        if not len(triplets):
            return graph_zero(batch)
        anchor, positive, negative = batch[triplets[:, 0]], batch[triplets[:, 1]], batch[triplets[:, 2]]
        if self.beta_constant:
            beta = torch.full((len(triplets),), float(self.beta), dtype=batch.dtype, device=batch.device)
        else:
            labels = label_tensor(labels, batch)
            check_class_range(labels, self.n_classes, 'margin')
            beta = self.beta.to(batch.dtype)[labels[triplets[:, 0]]]
        pos_loss = torch.nn.functional.relu(margin_distance(anchor, positive) - beta + self.margin)
        neg_loss = torch.nn.functional.relu(beta - margin_distance(anchor, negative) + self.margin)
        active = ((pos_loss > 0) | (neg_loss > 0)).sum()
        # with no active triplet the sum is an exact, graph-connected 0 and dividing by 1 keeps it
        loss = (pos_loss + neg_loss).sum() / active.clamp(min=1).to(batch.dtype)
        if self.nu:
            # E-2 fixed: ν·Σ_t β_t; the reference's constant β enters once, as ν·β₀
            loss = loss + self.nu * (float(self.beta) if self.beta_constant else beta.sum())
        return loss
