"""Normalised softmax: classification against unit class proxies at a temperature (spec criteria.md A.11)."""
import numpy as np
import torch

from criteria.common import check_class_range, label_tensor

ALLOWED_MINING_OPS = None
REQUIRES_BATCHMINER = False
REQUIRES_OPTIM = True


class Criterion(torch.nn.Module):
    """L = mean CE(⟨x_i, ŵ_c⟩ / T, y_i); only the class proxies are normalised, not the batch."""
    ALLOWED_MINING_OPS = ALLOWED_MINING_OPS
    REQUIRES_BATCHMINER = REQUIRES_BATCHMINER
    REQUIRES_OPTIM = REQUIRES_OPTIM

    def __init__(self, opt):
        super().__init__()
        self.name = 'softmax'
        self.temperature = opt.loss_softmax_temperature
        self.class_map = torch.nn.Parameter(torch.Tensor(opt.n_classes, opt.embed_dim))
        stdv = 1. / np.sqrt(self.class_map.size(1))
        self.class_map.data.uniform_(-stdv, stdv)
        self.lr = opt.loss_softmax_lr

    def forward(self, batch, labels, **kwargs):
        labels = label_tensor(labels, batch)
        check_class_range(labels, len(self.class_map), 'softmax')
        class_map = torch.nn.functional.normalize(self.class_map.to(batch.dtype), dim=1)
        logits = torch.nn.functional.linear(batch, class_map) / self.temperature
        return torch.nn.functional.cross_entropy(logits, labels)
