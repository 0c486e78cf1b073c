"""Training criteria: the fifteen ranking losses and their `<loss>_lsd` compositions (spec criteria.md §0.5).

`select(name, opt, to_optim=None, batchminer=None)` builds one; a new loss is one file plus one line in
BASE_LOSSES below.
"""
from criteria import (angular, ap_loss, arcface, contrastive, histogram, lifted, lsd, margin,
                      multisimilarity, npair, proxynca, quadruplet, snr, softmax, softtriplet, triplet)
from criteria.common import CriterionError
from criteria.listwise_distillation import listwise_kd

BASE_LOSSES = {
    'triplet': triplet,
    'margin': margin,
    'proxynca': proxynca,
    'npair': npair,
    'angular': angular,
    'contrastive': contrastive,
    'lifted': lifted,
    'snr': snr,
    'multisimilarity': multisimilarity,
    'histogram': histogram,
    'softmax': softmax,
    'softtriplet': softtriplet,
    'arcface': arcface,
    'quadruplet': quadruplet,
    'ap_loss': ap_loss,
}
BASE_LOSS_NAMES = list(BASE_LOSSES)
LSD_SUFFIX = '_lsd'
LSD_LOSS_NAMES = [name + LSD_SUFFIX for name in BASE_LOSS_NAMES]
# DiVA's criterion stays a key of the registry but refuses to be built (A.16)
UNSUPPORTED = {'adversarial_separation': 'Loss adversarial_separation belongs to DiVA and is not '
                                         'supported in this framework!'}
LOSS_NAMES = BASE_LOSS_NAMES + ['adversarial_separation'] + LSD_LOSS_NAMES
# imported but never published by the LSD authors (E-21); not keys
UNPUBLISHED = ['triplet_lsd_cos', 'triplet_lsd_joint', 'triplet_lsd_reweight', 'triplet_lsd_reweight_standard',
               'triplet_lsd_reweight_allsin', 'triplet_lsd_reweight_check', 'triplet_lsd_reweight_v2',
               'triplet_lsd_hard']


class MiningMismatchError(CriterionError):
    """A loss built without the miner it needs, or with a miner it does not accept (§0.5 step 2)."""


def is_lsd(loss):
    """True for an LSD registry key (`triplet_lsd`) or an LSD criterion object."""
    if isinstance(loss, str):
        return loss in LSD_LOSS_NAMES
    return bool(getattr(type(loss), 'IS_LSD', False))


def base_name(loss):
    """The ranking loss of a key: `triplet_lsd` → `triplet`, `triplet` → `triplet`."""
    return loss[:-len(LSD_SUFFIX)] if loss in LSD_LOSS_NAMES else loss


def select(loss, opt, to_optim=None, batchminer=None):
    """§0.5: check the key and the miner, build the criterion (wrapped for `_lsd` keys), append its
    optimiser group(s) to `to_optim` in place; return (criterion, to_optim) when to_optim is given."""
    if loss not in LOSS_NAMES:
        raise NotImplementedError('Loss {} not implemented!{}'.format(
            loss, ' (never published by the LSD authors)' if loss in UNPUBLISHED else ''))
    if loss in UNSUPPORTED:
        raise NotImplementedError(UNSUPPORTED[loss])
    module = BASE_LOSSES[base_name(loss)]

    if module.REQUIRES_BATCHMINER:
        if batchminer is None:
            raise MiningMismatchError('Loss {} requires one of the following batch mining methods: {}'.format(
                loss, module.ALLOWED_MINING_OPS))
        if batchminer.name not in module.ALLOWED_MINING_OPS:
            raise MiningMismatchError('{}-mining not allowed for {}-loss!'.format(batchminer.name, loss))
        criterion = module.Criterion(opt, batchminer)
    else:
        criterion = module.Criterion(opt)
    if is_lsd(loss):
        criterion = lsd.Criterion(criterion, opt, loss)

    if isinstance(to_optim, list) and module.REQUIRES_OPTIM:
        if getattr(criterion, 'optim_dict_list', None) is not None:
            to_optim += criterion.optim_dict_list
        else:
            to_optim += [{'params': list(criterion.parameters()), 'lr': criterion.lr}]
    return (criterion, to_optim) if to_optim is not None else criterion


__all__ = ['BASE_LOSS_NAMES', 'LSD_LOSS_NAMES', 'LOSS_NAMES', 'CriterionError', 'MiningMismatchError',
           'base_name', 'is_lsd', 'listwise_kd', 'select']
