"""The reference's variant of SoftTriple, quirks kept (spec criteria.md A.12, E-14)."""
import numpy as np
import torch

from criteria.common import check_class_range, label_tensor

ALLOWED_MINING_OPS = None
REQUIRES_BATCHMINER = False
REQUIRES_OPTIM = True


class Criterion(torch.nn.Module):
    """CE over λ·(Σ_k ω σ − δ·[c = y]) with ω a softmax over classes of γ·σ, σ the similarity to the
    row-normalised centroids, + ρ·mean sqrt(2.00001 − 2·G) over each class's centroid pairs."""
    ALLOWED_MINING_OPS = ALLOWED_MINING_OPS
    REQUIRES_BATCHMINER = REQUIRES_BATCHMINER
    REQUIRES_OPTIM = REQUIRES_OPTIM

    def __init__(self, opt):
        super().__init__()
        self.name = 'softtriplet'
        self.n_classes = opt.n_classes
        self.n_centroids = opt.loss_softtriplet_n_centroids
        self.margin_delta = opt.loss_softtriplet_margin_delta
        self.gamma = opt.loss_softtriplet_gamma
        self.reg_lambda = opt.loss_softtriplet_lambda
        self.reg_weight = opt.loss_softtriplet_reg_weight
        self.reg_norm = self.n_classes * self.n_centroids * (self.n_centroids - 1.)
        # E-1: the reference reads an undefined loss_softtriplet_lr
        self.lr = opt.lr * opt.loss_softtriplet_lrmulti
        self.intra_class_centroids = torch.nn.Parameter(
            torch.Tensor(opt.embed_dim, self.n_classes * self.n_centroids))
        stdv = 1. / np.sqrt(self.intra_class_centroids.size(1))
        self.intra_class_centroids.data.uniform_(-stdv, stdv)

    def forward(self, batch, labels, **kwargs):
        labels = label_tensor(labels, batch)
        check_class_range(labels, self.n_classes, 'softtriplet')
        centroids = torch.nn.functional.normalize(self.intra_class_centroids.to(batch.dtype), dim=1)
        similarity = (batch @ centroids).reshape(-1, self.n_classes, self.n_centroids)
        soft_weight = torch.softmax(self.gamma * similarity, dim=1)
        per_class = (soft_weight * similarity).sum(dim=-1)
        margin = self.margin_delta * torch.nn.functional.one_hot(labels, self.n_classes).to(batch.dtype)
        loss = torch.nn.functional.cross_entropy(self.reg_lambda * (per_class - margin), labels)
        if self.n_centroids < 2:
            return loss
        # only the within-class blocks of Ĉᵀ Ĉ enter the regulariser; the full matrix is never built
        per_class_centroids = centroids.reshape(-1, self.n_classes, self.n_centroids)
        gram = torch.einsum('dck,dcl->ckl', per_class_centroids, per_class_centroids)
        upper = torch.triu_indices(self.n_centroids, self.n_centroids, offset=1, device=batch.device)
        pairs = gram[:, upper[0], upper[1]]
        return loss + self.reg_weight * torch.sqrt(2.00001 - 2 * pairs).sum() / self.reg_norm
