"""Proxy-Anchor loss (Kim et al., CVPR 2020) with one learnable proxy per training class."""
import torch

from criteria.base import ClassProxyLoss, registry_constants

inf = float('inf')


class Criterion(ClassProxyLoss):
    """Each proxy p is an anchor over the batch, with s(x, p) the cosine similarity:

        L = 1/|P⁺| Σ_{p∈P⁺} log(1 + Σ_{x∈X_p⁺} exp(−α(s(x, p) − δ)))
          + 1/|P|  Σ_{p∈P}  log(1 + Σ_{x∈X_p⁻} exp(α(s(x, p) + δ)))

    P⁺ the proxies with a positive in the batch, P all proxies; the log(1 + Σ exp) are taken in the stable
    log-sum-exp form. Proxies start Kaiming-normal (fan-out), as in the authors' code.

    What the trainer asks the loss, as the authors train it: the proxies' optimizer group (learning rate
    --lr × --loss_proxyanchor_lrmulti, the network's weight decay) and the embedding warm-up
    (`warmup_epochs` = --loss_proxyanchor_warmup_epochs: only the embedding layer and the proxies train)."""
    WARMUP_FLAG = 'loss_proxyanchor_warmup_epochs'

    def __init__(self, opt, n_classes):
        super().__init__('proxyanchor', n_classes)
        self.alpha = opt.loss_proxyanchor_alpha
        self.delta = opt.loss_proxyanchor_delta
        self.proxies = torch.nn.Parameter(torch.empty(n_classes, opt.embed_dim))
        torch.nn.init.kaiming_normal_(self.proxies, mode='fan_out')
        self.lr = opt.lr * opt.loss_proxyanchor_lrmulti
        self.warmup_epochs = int(getattr(opt, self.WARMUP_FLAG, 0))

    def optimizer_groups(self, weight_decay):
        """The authors' optimizer decays the proxies with its weight decay, as the network (their train.py
        gives the proxies' group only its own learning rate)."""
        return [{'params': self.proxies, 'lr': self.lr, 'weight_decay': weight_decay}]

    def proxy_loss(self, batch, labels):
        cosine = torch.nn.functional.normalize(batch, dim=-1) @ \
            torch.nn.functional.normalize(self.proxies.to(batch.dtype), dim=-1).T
        positive = torch.nn.functional.one_hot(labels, self.n_classes).bool()
        pos_per_proxy = log1p_sum_exp_columns((-self.alpha * (cosine - self.delta)).masked_fill(~positive, -inf))
        neg_per_proxy = log1p_sum_exp_columns((self.alpha * (cosine + self.delta)).masked_fill(positive, -inf))
        with_positives = positive.any(dim=0).sum().clamp(min=1).to(batch.dtype)
        return pos_per_proxy.sum() / with_positives + neg_per_proxy.sum() / self.n_classes


def log1p_sum_exp_columns(exponents):
    """log(1 + Σ_rows exp(v)) per column, −inf entries left out: shifted by max(0, column max), so it
    neither overflows for a large α nor loses small sums (0 for a column without entries)."""
    shift = exponents.detach().amax(dim=0).clamp(min=0)
    return shift + torch.log(torch.exp(-shift) + torch.exp(exponents - shift).sum(dim=0))


ALLOWED_MINING_OPS, REQUIRES_BATCHMINER, REQUIRES_OPTIM = registry_constants(Criterion)
