"""ProxyNCA with one learnable proxy per class, both sides rescaled to norm 3."""
import torch

from criteria.base import ClassProxyLoss, registry_constants


class Criterion(ClassProxyLoss):
    """L = mean_i [δ(i, y_i) + LSE_{c≠y_i} −δ(i, c)], δ the squared distance between 3·x̂_i and 3·ŵ_c;
    the LSE runs over every other proxy, present in the batch or not."""

    def __init__(self, opt, n_classes):
        super().__init__('proxynca', n_classes)
        self.num_proxies = n_classes
        self.embed_dim = opt.embed_dim
        self.proxies = torch.nn.Parameter(torch.randn(self.num_proxies, self.embed_dim) / 8)
        # a plain tensor in the reference, so it is kept out of the state_dict
        self.register_buffer('class_idxs', torch.arange(self.num_proxies), persistent=False)
        self.optim_dict_list = [{'params': self.proxies, 'lr': opt.lr * opt.loss_proxynca_lrmulti}]

    def proxy_loss(self, batch, labels):
        batch = 3 * torch.nn.functional.normalize(batch, dim=-1)
        proxies = 3 * torch.nn.functional.normalize(self.proxies.to(batch.dtype), dim=-1)
        sq_dist = (batch.pow(2).sum(-1, keepdim=True) + proxies.pow(2).sum(-1)[None, :]
                   - 2 * batch @ proxies.T)
        target = labels[:, None] == self.class_idxs[None, :]
        positive = sq_dist.gather(1, labels[:, None]).squeeze(1)
        negative = torch.logsumexp((-sq_dist).masked_fill(target, float('-inf')), dim=1)
        return (positive + negative).mean()


ALLOWED_MINING_OPS, REQUIRES_BATCHMINER, REQUIRES_OPTIM = registry_constants(Criterion)
