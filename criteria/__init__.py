"""Training criteria: the sixteen ranking losses and their `<loss>_lsd` compositions with listwise
self-distillation.

* `build_objective(loss, opt, n_classes, batchminer)` → `(objective, param_groups)`: what the trainers use,
  for base and LSD keys alike (`criteria/objective.py`).
* `select(name, opt, to_optim=None, batchminer=None, n_classes=None)`: the reference's entry point; a base
  key gives the ranking module itself, an `_lsd` key its Objective.
* `base_name`, `is_lsd`, `requires_miner`, `check_miner`, `check_memory`: what start-up checks need,
  without building.

A new loss is one file plus one line in BASE_LOSSES below.
"""
from criteria import (angular, ap_loss, arcface, contrastive, histogram, lifted, margin, multisimilarity, npair,
                      proxyanchor, proxynca, quadruplet, snr, softmax, softtriplet, triplet)
from criteria.common import LSD_SUFFIX, CriterionError
from criteria.cross_batch_memory import CrossBatchMemory, accepts_memory
from criteria.listwise_distillation import DistillationSchedule, ListwiseDistillation, listwise_kd
from criteria.objective import Objective, parameter_groups

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
    'proxyanchor': proxyanchor,
}
BASE_LOSS_NAMES = list(BASE_LOSSES)
LSD_LOSS_NAMES = [name + LSD_SUFFIX for name in BASE_LOSS_NAMES]
# DiVA's criterion stays a key of the registry but refuses to be built
UNSUPPORTED = {'adversarial_separation': 'Loss adversarial_separation belongs to DiVA and is not '
                                         'supported in this framework!'}
LOSS_NAMES = BASE_LOSS_NAMES + ['adversarial_separation'] + LSD_LOSS_NAMES
# imported by the LSD seed's registry but never published by its authors; not keys
UNPUBLISHED = ['triplet_lsd_cos', 'triplet_lsd_joint', 'triplet_lsd_reweight', 'triplet_lsd_reweight_standard',
               'triplet_lsd_reweight_allsin', 'triplet_lsd_reweight_check', 'triplet_lsd_reweight_v2',
               'triplet_lsd_hard']


class MiningMismatchError(CriterionError):
    """A loss built without the miner it needs, or with a miner it does not accept."""


def is_lsd(loss):
    """True for an LSD registry key (`triplet_lsd`) or an LSD Objective."""
    if isinstance(loss, str):
        return loss in LSD_LOSS_NAMES
    return bool(getattr(loss, 'is_lsd', False))


def base_name(loss):
    """The ranking loss of a key: `triplet_lsd` → `triplet`, `triplet` → `triplet`."""
    return loss[:-len(LSD_SUFFIX)] if loss in LSD_LOSS_NAMES else loss


def loss_class(loss):
    """The Criterion class of a key; the registry's one-line NotImplementedError for unknown keys."""
    if loss not in LOSS_NAMES:
        raise NotImplementedError('Loss {} not implemented!{}'.format(
            loss, ' (never published by the LSD authors)' if loss in UNPUBLISHED else ''))
    if loss in UNSUPPORTED:
        raise NotImplementedError(UNSUPPORTED[loss])
    return BASE_LOSSES[base_name(loss)].Criterion


def requires_miner(loss):
    """Whether the loss of this key (base or LSD) needs a batch miner."""
    return bool(loss_class(loss).REQUIRES_BATCHMINER)


def check_miner(loss, miner_key):
    """Refuse, with one line, a miner registry key the loss does not accept (nothing to check for a loss that
    takes no miner). Keys, not miner names: random_distance and intra_random are accepted by name."""
    criterion = loss_class(loss)
    if not criterion.REQUIRES_BATCHMINER:
        return
    if miner_key not in criterion.ALLOWED_MINING_OPS:
        raise MiningMismatchError('{}-mining not allowed for {}-loss! Allowed: {}'.format(
            miner_key, loss, ', '.join(criterion.ALLOWED_MINING_OPS)))


def check_memory(loss, memory_size):
    """Refuse, with one line naming the flag, a cross-batch memory for a loss that cannot pair its batch
    with one (proxy, set-form and class losses)."""
    if memory_size and not accepts_memory(loss_class(loss)):
        raise CriterionError('--xbm_size {}: loss {} cannot use a cross-batch memory (losses that can: {})'
                             .format(memory_size, loss, ', '.join(memory_loss_names())))


def memory_loss_names():
    """The base keys whose loss accepts a cross-batch memory."""
    return [name for name in BASE_LOSS_NAMES if accepts_memory(BASE_LOSSES[name].Criterion)]


def build_memory(loss, opt):
    """The cross-batch memory of --xbm_size/--xbm_start, or None (0, or options without the flag)."""
    size = getattr(opt, 'xbm_size', 0)
    if not size:
        return None
    check_memory(loss, size)
    return CrossBatchMemory(size, getattr(opt, 'xbm_start', 0))


def build_ranking(loss, opt, batchminer=None, n_classes=None):
    """The ranking loss of a key (base or LSD), checked against its miner; `n_classes` sizes the per-class
    parameters of the losses that have them."""
    criterion = loss_class(loss)
    arguments = {}
    if criterion.REQUIRES_BATCHMINER:
        if batchminer is None:
            raise MiningMismatchError('Loss {} requires one of the following batch mining methods: {}'.format(
                loss, criterion.ALLOWED_MINING_OPS))
        # the miner's .name, as the reference checks: random_distance reports 'distance', intra_random 'random'
        if batchminer.name not in criterion.ALLOWED_MINING_OPS:
            raise MiningMismatchError('{}-mining not allowed for {}-loss!'.format(batchminer.name, loss))
        arguments['batchminer'] = batchminer
        if getattr(criterion, 'NEEDS_MINER_NAME', False):
            arguments['miner_name'] = batchminer.name
    if getattr(criterion, 'NEEDS_N_CLASSES', False):
        if n_classes is None:
            raise CriterionError('Loss {} has per-class parameters and needs the number of training classes '
                                 '(n_classes)'.format(loss))
        arguments['n_classes'] = int(n_classes)
    return criterion(opt, **arguments)


def build_objective(loss, opt, n_classes, batchminer=None):
    """(Objective, its parameter groups) for any key: the ranking loss alone, or for `_lsd` keys composed with
    the listwise distillation term (--kd_tau, --kd_beta) and its weight schedule (--kd_alpha, --n_epochs);
    with --xbm_size the ranking loss also pairs the batch with a cross-batch memory. The groups are the loss's
    own (`parameter_groups`, with --decay for a loss that decays its parameters)."""
    ranking = build_ranking(loss, opt, batchminer, n_classes)
    memory = build_memory(loss, opt)
    if is_lsd(loss):
        objective = Objective(loss, ranking, ListwiseDistillation.from_options(opt),
                              DistillationSchedule.from_options(opt), memory=memory)
    else:
        objective = Objective(loss, ranking, memory=memory)
    return objective, objective.optimizer_groups(getattr(opt, 'decay', 0.0))


def select(loss, opt, to_optim=None, batchminer=None, n_classes=None):
    """The reference's entry point: the ranking module for a base key, the Objective for an `_lsd` key; the
    criterion's optimizer groups are appended to `to_optim` in place, and (criterion, to_optim) returned
    when it is given. `n_classes` None falls back to `opt.n_classes`, for callers written for the reference."""
    if n_classes is None:
        n_classes = getattr(opt, 'n_classes', None)
    objective, groups = build_objective(loss, opt, n_classes, batchminer)
    criterion = objective if objective.is_lsd else objective.ranking
    if isinstance(to_optim, list):
        to_optim += groups
    return (criterion, to_optim) if to_optim is not None else criterion


__all__ = ['BASE_LOSS_NAMES', 'LSD_LOSS_NAMES', 'LOSS_NAMES', 'CriterionError', 'DistillationSchedule',
           'ListwiseDistillation', 'MiningMismatchError', 'Objective', 'base_name', 'build_objective',
           'check_memory', 'check_miner', 'CrossBatchMemory', 'is_lsd', 'listwise_kd', 'memory_loss_names',
           'parameter_groups', 'requires_miner', 'select']
