"""Backbone registry: `select(arch, opt)` picks by substring of `--arch`, in the order resnet50, resnet18,
googlenet, bninception; the tokens `frozen`, `normalize`, `_he`, `double` may appear anywhere in the name.
ResNet-18 is this project's addition for fast CPU runs (512 features). A name starting with `timm/` is any
timm model (`timm_backbone`), checked first, so `timm/resnet50.a1_in1k` is timm's and not the reference's.
"""
from architectures.errors import PretrainedWeightsUnavailable, UnknownArchitectureError

BACKBONES = ('resnet50', 'resnet18', 'googlenet', 'bninception')
TIMM = 'timm'

__all__ = ['BACKBONES', 'PretrainedWeightsUnavailable', 'UnknownArchitectureError', 'backbone_of', 'select']


def backbone_of(arch):
    """The backbone an `--arch` value selects; an unknown name is a one-line error (checkable at start-up)."""
    from architectures.timm_backbone import is_timm, pretrained_config
    if is_timm(arch):
        pretrained_config(arch)  # an unknown timm name or tag: the one-line error
        return TIMM
    for backbone in BACKBONES:
        if backbone in arch:
            return backbone
    raise UnknownArchitectureError('Unknown --arch {!r}: the name must contain one of {}, or start with timm/.'
                                   .format(arch, ', '.join(BACKBONES)))


def select(arch, opt):
    backbone = backbone_of(arch)
    if backbone == TIMM:
        from architectures import timm_backbone
        return timm_backbone.Network(opt)
    if backbone in ('resnet50', 'resnet18'):
        from architectures import resnet
        return resnet.Network(opt, depth=backbone)
    if backbone == 'googlenet':
        from architectures import googlenet
        return googlenet.Network(opt)
    from architectures import bninception
    return bninception.Network(opt)
