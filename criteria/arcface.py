"""ArcFace: additive angular margin on the target class."""
import torch

from criteria.base import ClassProxyLoss, registry_constants, uniform_proxies


class Criterion(ClassProxyLoss):
    """Logits s·c for other classes and s·cos(arccos c_y + m) for the target, c clamped to
    [1e-10, 1 − 1e-10]: negative cosines are zeroed with their gradient, as in the reference (kept)."""

    def __init__(self, opt, n_classes):
        super().__init__('arcface', n_classes)
        self.angular_margin = opt.loss_arcface_angular_margin
        self.feature_scale = opt.loss_arcface_feature_scale
        self.class_map = uniform_proxies(n_classes, opt.embed_dim)
        self.lr = opt.loss_arcface_lr

    def proxy_loss(self, batch, labels):
        class_map = torch.nn.functional.normalize(self.class_map.to(batch.dtype), dim=1)
        cosine = (batch @ class_map.T).clamp(min=1e-10, max=1 - 1e-10)
        target = cosine.gather(1, labels[:, None])
        with_margin = torch.cos(torch.acos(target) + self.angular_margin)
        logits = self.feature_scale * cosine.scatter(1, labels[:, None], with_margin)
        return torch.nn.functional.cross_entropy(logits, labels)


ALLOWED_MINING_OPS, REQUIRES_BATCHMINER, REQUIRES_OPTIM = registry_constants(Criterion)
