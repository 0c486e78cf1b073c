"""Backbone registry: `select(arch, opt)` picks by substring of `--arch`, in the order resnet50, resnet18,
googlenet, bninception; the tokens `frozen`, `normalize`, `_he`, `double` may appear anywhere in the name.
ResNet-18 is this project's addition for fast CPU runs (512 features). A name starting with `timm/` is any
timm model (`timm_backbone`), checked first, so `timm/resnet50.a1_in1k` is timm's and not the reference's.

`backbone_config(arch, opt)` is the backbone's record (mean/std, input size, crop, interpolation, channel
order, output kind; `record.py` lists the keys), read without building the network; every network
`select` returns carries the same dict as `.pretrained_cfg`, as a timm model does. The rest of the project
reads facts from it and never tests an `--arch` name.
"""
from architectures.errors import PretrainedWeightsUnavailable, UnknownArchitectureError

BACKBONES = ('resnet50', 'resnet18', 'googlenet', 'bninception')
TIMM = 'timm'
RESNETS = ('resnet50', 'resnet18')

__all__ = ['BACKBONES', 'PretrainedWeightsUnavailable', 'UnknownArchitectureError', 'backbone_config', 'backbone_of',
           'select']


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


def backbone_module(arch):
    """The module of the backbone `arch` selects (an unknown name: the one-line error)."""
    backbone = backbone_of(arch)
    if backbone == TIMM:
        from architectures import timm_backbone
        return timm_backbone
    if backbone in RESNETS:
        from architectures import resnet
        return resnet
    if backbone == 'googlenet':
        from architectures import googlenet
        return googlenet
    from architectures import bninception
    return bninception


def backbone_config(arch, opt=None):
    """The record of `arch` (with `opt.input_size` where it applies), computed without building the network."""
    return backbone_module(arch).pretrained_cfg(arch, opt)


def select(arch, opt):
    """The network `arch` names, carrying its record as `.pretrained_cfg`."""
    backbone, module = backbone_of(arch), backbone_module(arch)
    network = module.Network(opt, depth=backbone) if backbone in RESNETS else module.Network(opt)
    network.pretrained_cfg = backbone_config(arch, opt)
    return network
