"""BN-Inception backbone from `pretrainedmodels` (Caffe-ported ImageNet weights).

Expects BGR input on a ±128 scale; the datasets produce it from the backbone's record (`pretrained_cfg`).
Tokens: `frozen` (BatchNorm statistics fixed), `_he` (Kaiming-normal fan-out embedding weight, zero
bias), `double` (average + max pooling), `normalize` (L2-normalised embedding).
"""
import torch
from torch import nn

from architectures.record import reference_config
from architectures.common import fetching_weights, freeze_batchnorm, load_pretrained_weights

# BN-Inception's Caffe weights expect BGR on the 0-255 scale with means (104, 117, 128): (x - m/255) * 255,
# written as the reference's Normalize constants on RGB in [0, 1], the channels reversed afterwards.
MEAN, STD = (0.502, 0.4588, 0.4078), (0.0039, 0.0039, 0.0039)


def pretrained_cfg(arch, opt=None):
    """The reference's constants; N-pair divides BN-Inception's larger embeddings by 4."""
    return reference_config(arch, mean=MEAN, std=STD, channel_order='BGR', pixel_scale=255.0,
                            npair_shrink_batch=True)


class Network(nn.Module):
    """Returns (embedding, (pooled features N×1024×1×1, feature map N×1024×7×7))."""

    def __init__(self, opt):
        super().__init__()
        import pretrainedmodels  # slow import, only needed for this backbone
        self.pars = opt
        self.name = opt.arch
        weights_file = getattr(opt, 'pretrained_weights', '')
        with fetching_weights(opt.arch):
            self.model = pretrainedmodels.bninception(
                num_classes=1000, pretrained=None if opt.not_pretrained or weights_file else 'imagenet')
        if weights_file:
            load_pretrained_weights(self.model, weights_file, ignored_prefixes=('last_linear.',))
        self.model.last_linear = nn.Linear(self.model.last_linear.in_features, opt.embed_dim)
        if '_he' in opt.arch:
            nn.init.kaiming_normal_(self.model.last_linear.weight, mode='fan_out')
            nn.init.constant_(self.model.last_linear.bias, 0)
        if 'frozen' in opt.arch:
            freeze_batchnorm(self.model)
        self.pool_base = nn.AdaptiveAvgPool2d(1)
        self.pool_aux = nn.AdaptiveMaxPool2d(1) if 'double' in opt.arch else None
        self.normalize = 'normalize' in opt.arch

    def forward(self, x, warmup=False, **kwargs):
        feature_map = self.model.features(x)
        pooled = self.pool_base(feature_map)
        if self.pool_aux is not None:
            pooled = pooled + self.pool_aux(feature_map)
        if warmup:
            pooled, feature_map = pooled.detach(), feature_map.detach()
        embedding = self.model.last_linear(pooled.view(len(feature_map), -1))
        if self.normalize:
            embedding = torch.nn.functional.normalize(embedding, dim=-1)
        return embedding, (pooled, feature_map)
