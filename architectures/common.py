"""What every backbone wrapper shares: frozen BatchNorm, the weight-download guard and local weight files."""
import contextlib
import functools

import torch
from torch import nn

from architectures.errors import PretrainedWeightsUnavailable


def _keep_eval(module, mode=True):
    return module


def freeze_batchnorm(network):
    """Every module whose type is exactly nn.BatchNorm2d normalises with its stored running statistics
    forever: put in eval mode, and its train() becomes a no-op (the affine weights stay trainable).
    A partial (not a lambda or bound method) so the no-op survives copy.deepcopy and pickling."""
    for module in network.modules():
        if type(module) is nn.BatchNorm2d:
            module.eval()
            module.train = functools.partial(_keep_eval, module)


@contextlib.contextmanager
def fetching_weights(arch):
    """Turn a failed download of the ImageNet weights into one line that suggests --not_pretrained."""
    try:
        yield
    except OSError as error:
        raise PretrainedWeightsUnavailable(
            'Cannot fetch the ImageNet weights for --arch {} ({}: {}). Run with --not_pretrained, or put the '
            'weight file into {}/checkpoints.'.format(arch, type(error).__name__, error, torch.hub.get_dir())
        ) from None


def read_state_dict(path):
    """A state dict from a local .safetensors or .pth/.pt/.bin file (a checkpoint holding it under
    'state_dict' or 'model' is unwrapped); any failure is one line naming --pretrained_weights."""
    try:
        if path.endswith('.safetensors'):
            from safetensors.torch import load_file
            state = load_file(path, device='cpu')
        else:
            state = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as error:
        raise PretrainedWeightsUnavailable('--pretrained_weights {}: cannot read a state dict ({}: {})'.format(
            path, type(error).__name__, str(error).strip().splitlines()[0] if str(error).strip() else '')) from None
    for key in ('state_dict', 'model'):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(torch.is_tensor(value) for value in state.values()):
        raise PretrainedWeightsUnavailable('--pretrained_weights {}: the file holds no state dict of tensors.'
                                           .format(path))
    return state


def load_pretrained_weights(network, path, ignored_prefixes=()):
    """Load a local state dict into a backbone as its library defines it (torchvision's or pretrainedmodels'
    keys), for clusters without internet. The classifier (`ignored_prefixes`) may be present or absent;
    any other missing or unexpected key, or a shape that does not fit, is a one-line error."""
    state = {key: value for key, value in read_state_dict(path).items()
             if not key.startswith(tuple(ignored_prefixes))}
    own = {key for key in network.state_dict() if not key.startswith(tuple(ignored_prefixes))}
    missing, unexpected = sorted(own - set(state)), sorted(set(state) - own)
    if missing or unexpected:
        raise PretrainedWeightsUnavailable('--pretrained_weights {}: the keys do not fit the backbone ({} missing, '
                                           'e.g. {}; {} unexpected, e.g. {}).'.format(
                                               path, len(missing), missing[:2], len(unexpected), unexpected[:2]))
    try:
        network.load_state_dict(state, strict=False)
    except RuntimeError as error:
        raise PretrainedWeightsUnavailable('--pretrained_weights {}: {}'.format(
            path, ' '.join(str(error).split())[:300])) from None
