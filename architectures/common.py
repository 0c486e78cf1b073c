"""What every backbone wrapper shares: frozen BatchNorm and the weight-download guard."""
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
