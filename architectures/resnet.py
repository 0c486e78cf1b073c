"""ResNet-50 (and ResNet-18 for fast CPU runs) backbones.

Weights: torchvision's IMAGENET1K_V1 (the first-generation training, resnet50-19c8e357; never V2).
The classifier becomes `model.last_linear = Linear(2048 | 512, embed_dim)` with `model.fc = None`, and
`layer_blocks` aliases layer1..layer4, so state-dict keys match the reference's pretrainedmodels wrapper.
"""
import torch
import torchvision
from torch import nn

from architectures.record import reference_config
from architectures.common import fetching_weights, freeze_batchnorm, load_pretrained_weights

DEPTHS = {'resnet50': (torchvision.models.resnet50, torchvision.models.ResNet50_Weights.IMAGENET1K_V1),
          'resnet18': (torchvision.models.resnet18, torchvision.models.ResNet18_Weights.IMAGENET1K_V1)}


def pretrained_cfg(arch, opt=None):
    """ImageNet mean/std on RGB in [0, 1], a 224 crop of the 256 resize."""
    return reference_config(arch)


class Network(nn.Module):
    """Returns (embedding, (pooled features, final feature map))."""

    def __init__(self, opt, depth='resnet50'):
        super().__init__()
        self.pars = opt
        self.name = opt.arch
        build, weights = DEPTHS[depth]
        weights_file = getattr(opt, 'pretrained_weights', '')
        with fetching_weights(opt.arch):
            self.model = build(weights=None if opt.not_pretrained or weights_file else weights)
        if weights_file:
            load_pretrained_weights(self.model, weights_file, ignored_prefixes=('fc.',))
        if 'frozen' in opt.arch:
            freeze_batchnorm(self.model)
        self.model.last_linear = nn.Linear(self.model.fc.in_features, opt.embed_dim)
        self.model.fc = None
        self.layer_blocks = nn.ModuleList([self.model.layer1, self.model.layer2, self.model.layer3, self.model.layer4])
        self.normalize = 'normalize' in opt.arch

    def forward(self, x, **kwargs):
        x = self.model.maxpool(self.model.relu(self.model.bn1(self.model.conv1(x))))
        for layer_block in self.layer_blocks:
            x = layer_block(x)
        feature_map = x
        pooled = self.model.avgpool(feature_map).flatten(1)
        embedding = self.model.last_linear(pooled)
        if self.normalize:
            embedding = torch.nn.functional.normalize(embedding, dim=-1)
        return embedding, (pooled, feature_map)
