"""Multi-similarity loss with its own pair mining."""
import torch

from criteria.base import registry_constants, with_memory
from criteria.common import label_tensor, log1p_sum_exp


class Criterion(torch.nn.Module):
    """Per row: keep negatives with S + ε > min positive S and positives with S − ε < max negative S
    (against the unmined sets), then (1/α)·log(1 + Σ exp(−α(S − λ))) + (1/β)·log(1 + Σ exp(β(S − λ)));
    mean over rows that keep both a positive and a negative (the reference raises on rows without either)."""
    ALLOWED_MINING_OPS = None
    REQUIRES_BATCHMINER = False
    REQUIRES_OPTIM = False
    ACCEPTS_MEMORY = True

    def __init__(self, opt):
        super().__init__()
        self.name = 'multisimilarity'
        self.pos_weight = opt.loss_multisimilarity_pos_weight
        self.neg_weight = opt.loss_multisimilarity_neg_weight
        self.margin = opt.loss_multisimilarity_margin
        self.pos_thresh = opt.loss_multisimilarity_thresh
        self.neg_thresh = opt.loss_multisimilarity_thresh

    def forward(self, batch, labels, memory=None, **kwargs):
        """With `memory` (detached embeddings and labels of past batches) each batch row is compared with
        batch ∪ memory; without it, with the batch alone."""
        labels = label_tensor(labels, batch)
        reference, reference_labels = (batch, labels) if memory is None else with_memory(batch, labels, memory)
        similarity = batch @ reference.T
        same = labels[:, None] == reference_labels[None, :]
        eye = torch.eye(len(batch), len(reference), dtype=torch.bool, device=batch.device)
        pos_mask, neg_mask = same & ~eye, ~same

        sim = similarity.detach()
        hardest_pos = sim.masked_fill(~pos_mask, float('inf')).amin(dim=1, keepdim=True)
        hardest_neg = sim.masked_fill(~neg_mask, float('-inf')).amax(dim=1, keepdim=True)
        kept_neg = neg_mask & (sim + self.margin > hardest_pos)
        kept_pos = pos_mask & (sim - self.margin < hardest_neg)
        kept_rows = kept_neg.any(dim=1) & kept_pos.any(dim=1)

        pos_term = log1p_sum_exp(-self.pos_weight * (similarity - self.pos_thresh), kept_pos) / self.pos_weight
        neg_term = log1p_sum_exp(self.neg_weight * (similarity - self.neg_thresh), kept_neg) / self.neg_weight
        row_loss = torch.where(kept_rows, pos_term + neg_term, torch.zeros_like(pos_term))
        # no kept row: an exact, graph-connected 0 (the graph zero) without a host sync
        return row_loss.sum() / kept_rows.sum().clamp(min=1).to(batch.dtype)


ALLOWED_MINING_OPS, REQUIRES_BATCHMINER, REQUIRES_OPTIM = registry_constants(Criterion)
