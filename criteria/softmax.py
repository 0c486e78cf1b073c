"""Normalised softmax: classification against unit class proxies at a temperature."""
import torch

from criteria.base import ClassProxyLoss, registry_constants, uniform_proxies


class Criterion(ClassProxyLoss):
    """L = mean CE(⟨x_i, ŵ_c⟩ / T, y_i); only the class proxies are normalised, not the batch."""

    def __init__(self, opt, n_classes):
        super().__init__('softmax', n_classes)
        self.temperature = opt.loss_softmax_temperature
        self.class_map = uniform_proxies(n_classes, opt.embed_dim)
        self.lr = opt.loss_softmax_lr

    def proxy_loss(self, batch, labels):
        class_map = torch.nn.functional.normalize(self.class_map.to(batch.dtype), dim=1)
        logits = torch.nn.functional.linear(batch, class_map) / self.temperature
        return torch.nn.functional.cross_entropy(logits, labels)


ALLOWED_MINING_OPS, REQUIRES_BATCHMINER, REQUIRES_OPTIM = registry_constants(Criterion)
