"""ArcFace: additive angular margin on the target class (spec criteria.md A.13)."""
import numpy as np
import torch

from criteria.common import check_class_range, label_tensor

ALLOWED_MINING_OPS = None
REQUIRES_BATCHMINER = False
REQUIRES_OPTIM = True


class Criterion(torch.nn.Module):
    """Logits s·c for other classes and s·cos(arccos c_y + m) for the target, c clamped to
    [1e-10, 1 − 1e-10]: negative cosines are zeroed with their gradient, as in the reference (E-15)."""
    ALLOWED_MINING_OPS = ALLOWED_MINING_OPS
    REQUIRES_BATCHMINER = REQUIRES_BATCHMINER
    REQUIRES_OPTIM = REQUIRES_OPTIM

    def __init__(self, opt):
        super().__init__()
        self.name = 'arcface'
        self.angular_margin = opt.loss_arcface_angular_margin
        self.feature_scale = opt.loss_arcface_feature_scale
        self.class_map = torch.nn.Parameter(torch.Tensor(opt.n_classes, opt.embed_dim))
        stdv = 1. / np.sqrt(self.class_map.size(1))
        self.class_map.data.uniform_(-stdv, stdv)
        self.lr = opt.loss_arcface_lr

    def forward(self, batch, labels, **kwargs):
        labels = label_tensor(labels, batch)
        check_class_range(labels, len(self.class_map), 'arcface')
        class_map = torch.nn.functional.normalize(self.class_map.to(batch.dtype), dim=1)
        cosine = (batch @ class_map.T).clamp(min=1e-10, max=1 - 1e-10)
        target = cosine.gather(1, labels[:, None])
        with_margin = torch.cos(torch.acos(target) + self.angular_margin)
        logits = self.feature_scale * cosine.scatter(1, labels[:, None], with_margin)
        return torch.nn.functional.cross_entropy(logits, labels)
