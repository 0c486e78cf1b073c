"""The reference's variant of SoftTriple, its quirks kept so its runs reproduce: centroids normalised per
embedding coordinate, the soft assignment a softmax over classes, γ a multiplier."""
import torch

from criteria.base import ClassProxyLoss, registry_constants, uniform_proxies


class Criterion(ClassProxyLoss):
    """CE over λ·(Σ_k ω σ − δ·[c = y]) with ω a softmax over classes of γ·σ, σ the similarity to the
    row-normalised centroids, + ρ·mean sqrt(2.00001 − 2·G) over each class's centroid pairs."""

    def __init__(self, opt, n_classes):
        super().__init__('softtriplet', n_classes)
        self.n_centroids = opt.loss_softtriplet_n_centroids
        self.margin_delta = opt.loss_softtriplet_margin_delta
        self.gamma = opt.loss_softtriplet_gamma
        self.reg_lambda = opt.loss_softtriplet_lambda
        self.reg_weight = opt.loss_softtriplet_reg_weight
        self.reg_norm = self.n_classes * self.n_centroids * (self.n_centroids - 1.)
        # the reference reads a loss_softtriplet_lr flag that does not exist; the flag is the multiplier
        self.lr = opt.lr * opt.loss_softtriplet_lrmulti
        self.intra_class_centroids = uniform_proxies(opt.embed_dim, self.n_classes * self.n_centroids)

    def proxy_loss(self, batch, labels):
        centroids = torch.nn.functional.normalize(self.intra_class_centroids.to(batch.dtype), dim=1)
        similarity = (batch @ centroids).reshape(-1, self.n_classes, self.n_centroids)
        soft_weight = torch.softmax(self.gamma * similarity, dim=1)
        per_class = (soft_weight * similarity).sum(dim=-1)
        margin = self.margin_delta * torch.nn.functional.one_hot(labels, self.n_classes).to(batch.dtype)
        loss = torch.nn.functional.cross_entropy(self.reg_lambda * (per_class - margin), labels)
        if self.n_centroids < 2:
            # one centroid per class has no pairs: no regulariser (the reference's 0/0)
            return loss
        # only the within-class blocks of Ĉᵀ Ĉ enter the regulariser; the full matrix is never built
        per_class_centroids = centroids.reshape(-1, self.n_classes, self.n_centroids)
        gram = torch.einsum('dck,dcl->ckl', per_class_centroids, per_class_centroids)
        upper = torch.triu_indices(self.n_centroids, self.n_centroids, offset=1, device=batch.device)
        pairs = gram[:, upper[0], upper[1]]
        return loss + self.reg_weight * torch.sqrt(2.00001 - 2 * pairs).sum() / self.reg_norm


ALLOWED_MINING_OPS, REQUIRES_BATCHMINER, REQUIRES_OPTIM = registry_constants(Criterion)
