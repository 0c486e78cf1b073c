"""Any timm model as the backbone: `--arch timm/<model name>[.<pretrained tag>]` plus the reference's tokens.

`timm/vit_small_patch16_224.dino_normalize` builds timm's `vit_small_patch16_224` with its `dino` weights
(timm's own download and cache, the Hugging Face hub; `HF_HUB_OFFLINE` is honoured). The head is the
reference's: the model's own pooled features (timm's pre-logits: the CLS token of a ViT, the pooled map of
a CNN) -> Linear(num_features, --embed_dim); `--no_head` takes the pooled features themselves as the
embedding. Tokens at the end of the name: `_normalize` L2-normalises the embedding, `_frozen` fixes the
statistics of every BatchNorm (a notice where the model has none, e.g. a ViT with LayerNorm only).

The model's pretrained config is the one source of the preprocessing (mean/std, input size,
interpolation, evaluation crop ratio): `preprocessing(arch, input_size)` reads it without building
the model, and `pretrained_cfg(arch, opt)` turns it into the backbone's record that both data pipelines read.
"""
import contextlib
import dataclasses
import functools
import math
import sys

import torch
from torch import nn

from architectures.common import _keep_eval
from architectures.errors import PretrainedWeightsUnavailable, UnknownArchitectureError

PREFIX = 'timm/'
TOKENS = ('_normalize', '_frozen')
# used when a model has no pretrained config at all (timm's own defaults)
DEFAULT_CONFIG = {'input_size': (3, 224, 224), 'interpolation': 'bicubic', 'crop_pct': 0.875,
                  'mean': (0.485, 0.456, 0.406), 'std': (0.229, 0.224, 0.225), 'fixed_input_size': False}


def is_timm(arch):
    return arch.startswith(PREFIX)


def split_arch(arch):
    """('<model name>[.<tag>]', {tokens}) of a `timm/...` value; the tokens may come in any order at the end."""
    name, tokens = arch[len(PREFIX):], set()
    stripped = True
    while stripped:
        stripped = False
        for token in TOKENS:
            if name.endswith(token):
                name, stripped = name[:-len(token)], True
                tokens.add(token)
    return name, tokens


def pretrained_config(arch):
    """timm's pretrained config of the named model (and tag) as a dict; an unknown name or tag is a one-line
    error. Read from timm's registry: nothing is built or downloaded."""
    import timm
    name, _ = split_arch(arch)
    if not name or not timm.is_model(name):
        raise UnknownArchitectureError('Unknown --arch {!r}: timm knows no model {!r} (timm.list_models() '
                                       'lists them).'.format(arch, name))
    try:
        config = timm.models.get_pretrained_cfg(name)
    except RuntimeError as error:  # an unknown pretrained tag
        raise UnknownArchitectureError('Unknown --arch {!r}: {}'.format(arch, error)) from None
    merged = dict(DEFAULT_CONFIG)
    if config is not None:
        merged.update({key: value for key, value in config.to_dict().items() if value is not None})
    return merged


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """What the images fed to a timm backbone must look like. `resize_size` is the evaluation resize
    (shorter side) before the centre crop of `input_size`, as timm's evaluation transform does."""
    mean: tuple
    std: tuple
    input_size: int
    interpolation: str
    crop_pct: float

    @property
    def resize_size(self):
        return int(math.floor(self.input_size / self.crop_pct))


def preprocessing(arch, input_size=0):
    """The model's pretrained preprocessing; `input_size` > 0 (`--input_size`) replaces its input size."""
    config = pretrained_config(arch)
    size = input_size if input_size > 0 else int(config['input_size'][-1])
    interpolation = config['interpolation'] if config['interpolation'] in ('bilinear', 'bicubic', 'nearest') \
        else 'bicubic'
    return Preprocessing(mean=tuple(float(v) for v in config['mean']), std=tuple(float(v) for v in config['std']),
                         input_size=size, interpolation=interpolation, crop_pct=float(config['crop_pct']))


def pretrained_cfg(arch, opt=None):
    """The backbone's record (`architectures.backbone_config`): the model's pretrained preprocessing with
    `--input_size` applied; every pipeline feeds that size, and the recipe flags apply."""
    config = preprocessing(arch, getattr(opt, 'input_size', 0) if opt is not None else 0)
    _, tokens = split_arch(arch)
    return {'mean': config.mean, 'std': config.std, 'input_size': (3, config.input_size, config.input_size),
            'crop_pct': config.crop_pct, 'interpolation': config.interpolation, 'channel_order': 'RGB',
            'pixel_scale': 1.0, 'output': 'normalized' if '_normalize' in tokens else 'raw',
            'fixed_input_size': bool(pretrained_config(arch).get('fixed_input_size', False)),
            'sized_by_config': True, 'accepts_recipe_flags': True, 'npair_shrink_batch': False}


def freeze_all_batchnorm(model):
    """Every BatchNorm (timm's BatchNormAct2d included) keeps its running statistics: eval mode, and its
    train() becomes a no-op (a partial, so it survives deepcopy and pickling). Returns how many."""
    count = 0
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()
            module.train = functools.partial(_keep_eval, module)
            count += 1
    return count


@contextlib.contextmanager
def fetching_timm_weights(arch):
    """A failed download (no internet, HF_HUB_OFFLINE=1 without a cached file) becomes one line."""
    try:
        yield
    except OSError as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise PretrainedWeightsUnavailable(
            'Cannot fetch the pretrained weights of --arch {} through timm ({}: {}). Run with --not_pretrained, '
            'or give a local state dict with --pretrained_weights PATH (.safetensors or .pth).'
            .format(arch, type(error).__name__, reason)) from None


def create_trunk(arch, not_pretrained=False, pretrained_weights='', input_size=0):
    """timm's model without its classifier (num_classes=0: forward_head(pre_logits) gives the pooled features).
    `pretrained_weights` loads a local file through timm's own loader (its checkpoint filters included);
    a ViT of fixed input size is built for `input_size` (timm resamples the position embedding)."""
    import timm
    name, _ = split_arch(arch)
    config = pretrained_config(arch)
    kwargs = {}
    if input_size > 0 and config.get('fixed_input_size') and input_size != int(config['input_size'][-1]):
        kwargs['img_size'] = input_size
    if pretrained_weights:
        kwargs['pretrained_cfg_overlay'] = {'file': pretrained_weights, 'hf_hub_id': None, 'url': None}
    pretrained = bool(pretrained_weights) or not not_pretrained
    try:
        with fetching_timm_weights(arch), missing_keys_report() as missing:
            model = timm.create_model(name, pretrained=pretrained, num_classes=0, **kwargs)
    except TypeError as error:
        raise UnknownArchitectureError('--input_size {}: --arch {} cannot be built at that size ({})'
                                       .format(input_size, arch, error)) from None
    except (RuntimeError, KeyError, ValueError) as error:
        if not pretrained_weights:
            raise
        raise PretrainedWeightsUnavailable('--pretrained_weights {}: does not fit --arch {} ({}: {})'.format(
            pretrained_weights, arch, type(error).__name__, ' '.join(str(error).split())[:300])) from None
    if pretrained_weights and missing:
        raise PretrainedWeightsUnavailable('--pretrained_weights {}: does not fit --arch {} ({} of its weights are '
                                           'not in the file, e.g. {})'.format(pretrained_weights, arch, len(missing),
                                                                              ', '.join(missing[:3])))
    return model


@contextlib.contextmanager
def missing_keys_report():
    """The weight keys timm's loader reports missing (it loads non-strictly once the classifier is dropped,
    and only logs them): yields a list filled while the model is built, so a file that does not fit is an
    error rather than a silently random backbone."""
    import logging
    missing = []

    class Report(logging.Handler):
        def emit(self, record):
            message = record.getMessage()
            if message.startswith('Missing keys (') and ')' in message:
                missing.extend(key.strip() for key in message[len('Missing keys ('):message.index(')')].split(','))
            elif message.startswith('Unexpected keys (') and ')' in message:
                keys = message[len('Unexpected keys ('):message.index(')')].split(',')
                print('Notice: {} weights of the file are not used by the model (e.g. {}).'.format(
                    len(keys), ','.join(keys[:2]).strip()), file=sys.stderr)
            elif record.levelno >= logging.WARNING:
                print('Notice: timm: {}'.format(message), file=sys.stderr)

    logger = logging.getLogger('timm.models._builder')
    handler, level, propagate = Report(logging.INFO), logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # timm's warnings (e.g. unexpected keys) are printed by the handler instead
    try:
        yield missing
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


class Network(nn.Module):
    """Returns (embedding, (pooled features N×F, feature map or token sequence of forward_features))."""

    def __init__(self, opt):
        super().__init__()
        self.pars = opt
        self.name = opt.arch
        _, tokens = split_arch(opt.arch)
        self.model = create_trunk(opt.arch, opt.not_pretrained, opt.pretrained_weights, opt.input_size)
        self.num_features = self.model.num_features
        if '_frozen' in tokens and freeze_all_batchnorm(self.model) == 0:
            print('Notice: --arch {}: the model has no BatchNorm; _frozen changes nothing.'.format(opt.arch),
                  file=sys.stderr)
        if opt.freeze_patch_embed:
            freeze_patch_embedding(self.model, opt.arch)
        if opt.grad_checkpointing:
            try:
                self.model.set_grad_checkpointing(True)
            except (AssertionError, NotImplementedError, AttributeError):
                raise UnknownArchitectureError('--grad_checkpointing: timm offers none for --arch {}.'
                                               .format(opt.arch)) from None
        if opt.no_head:
            if opt.embed_dim != self.num_features:
                raise UnknownArchitectureError('--no_head: the embedding is the {} pooled features of --arch {}; '
                                               'give --embed_dim {}.'.format(self.num_features, opt.arch,
                                                                             self.num_features))
            self.model.last_linear = None
        else:
            self.model.last_linear = nn.Linear(self.num_features, opt.embed_dim)
        self.normalize = '_normalize' in tokens

    def forward(self, x, **kwargs):
        feature_map = self.model.forward_features(x)
        pooled = self.model.forward_head(feature_map, pre_logits=True)
        embedding = pooled if self.model.last_linear is None else self.model.last_linear(pooled)
        if self.normalize:
            embedding = torch.nn.functional.normalize(embedding, dim=-1)
        return embedding, (pooled, feature_map)


def freeze_patch_embedding(model, arch):
    """Hyp-ViT's recipe: the patch embedding of a ViT (its first, convolutional layer) is not trained."""
    patch_embed = getattr(model, 'patch_embed', None)
    if patch_embed is None:
        raise UnknownArchitectureError('--freeze_patch_embed: --arch {} has no patch embedding.'.format(arch))
    for parameter in patch_embed.parameters():
        parameter.requires_grad_(False)
