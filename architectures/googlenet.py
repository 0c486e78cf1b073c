"""GoogLeNet (BN variant, torchvision) backbone.

Pretrained = torchvision's ImageNet weights with transform_input=True and no auxiliary heads;
`--not_pretrained` builds that same configuration without weights. `model.fc` and `model.last_linear`
are the same Linear(1024, embed_dim). The `frozen`, `_he` and `double` tokens do not apply.
"""
import torch
import torchvision
from torch import nn

from architectures.record import reference_config
from architectures.common import fetching_weights, load_pretrained_weights

CROP = 227  # the reference's crop for GoogLeNet (its `big` augmentation still trains at 256)


def pretrained_cfg(arch, opt=None):
    """ImageNet mean/std on RGB in [0, 1] (torchvision's transform_input re-normalises inside the network),
    a 227 crop of the 256 resize."""
    return reference_config(arch, crop=CROP)


class Network(nn.Module):
    """Returns the embedding tensor only (no tuple), as the reference does."""

    def __init__(self, opt):
        super().__init__()
        self.pars = opt
        self.name = opt.arch
        weights_file = getattr(opt, 'pretrained_weights', '')
        if opt.not_pretrained or weights_file:
            self.model = torchvision.models.googlenet(weights=None, aux_logits=False, transform_input=True,
                                                      init_weights=True)
            if weights_file:  # torchvision's file also holds the auxiliary heads, which this network drops
                load_pretrained_weights(self.model, weights_file, ignored_prefixes=('fc.', 'aux1.', 'aux2.'))
        else:
            with fetching_weights(opt.arch):
                self.model = torchvision.models.googlenet(weights=torchvision.models.GoogLeNet_Weights.IMAGENET1K_V1)
        self.model.last_linear = nn.Linear(self.model.fc.in_features, opt.embed_dim)
        self.model.fc = self.model.last_linear
        self.normalize = 'normalize' in opt.arch

    def forward(self, x):
        embedding = self.model(x)
        if self.normalize:
            embedding = torch.nn.functional.normalize(embedding, dim=-1)
        return embedding
