"""Start-up of both trainers: option checks, seeding, the optimizer and its parameter groups."""
import functools
import random
import sys
import warnings

import numpy as np
import torch


class StartupError(Exception):
    """Bad command-line input: the trainer prints the message on one line and exits with code 2."""


def criterion_needs_miner(loss):
    import criteria
    return criteria.requires_miner(loss)


def validate_loss_and_miner(opt):
    """Unknown loss or miner, or a miner the loss does not accept: caught before any folder exists."""
    import batch_mining
    import criteria
    if opt.loss not in criteria.LOSS_NAMES or opt.loss in criteria.UNSUPPORTED:
        criteria.select(opt.loss, opt)  # raises the registry's own one-line message
    if opt.xbm_size < 0 or opt.xbm_start < 0:
        raise StartupError('--{} must not be negative.'.format('xbm_size' if opt.xbm_size < 0 else 'xbm_start'))
    try:
        criteria.check_memory(opt.loss, opt.xbm_size)
    except criteria.CriterionError as error:
        raise StartupError(str(error)) from None
    if criterion_needs_miner(opt.loss):
        batch_mining.select(opt.batch_mining, opt, loss=opt.loss)  # unknown miner: the registry's message
        if opt.batch_mining == 'semihard':
            try:
                batch_mining.check_semihard(opt.loss, opt)
            except batch_mining.MiningError as error:
                raise StartupError(str(error)) from None
        try:
            criteria.check_miner(opt.loss, opt.batch_mining)
        except criteria.CriterionError as error:
            raise StartupError('--batch_mining {}: {}'.format(opt.batch_mining, error)) from None


POSITIVE_INTEGER_FLAGS = ('bs', 'embed_dim', 'n_epochs', 'samples_per_class', 'evaluate_every')


def validate_options(opt, lsd_trainer):
    """Every check that needs no data: fail before any folder or W&B run exists. Reads, never writes, opt."""
    import criteria
    import metrics

    for flag in POSITIVE_INTEGER_FLAGS:
        if getattr(opt, flag) < 1:
            raise StartupError('--{} must be at least 1 (got {}).'.format(flag, getattr(opt, flag)))
    if opt.kernels < 0 or opt.eval_bs < 0:
        raise StartupError('--{} must not be negative.'.format('kernels' if opt.kernels < 0 else 'eval_bs'))
    if opt.bs % opt.samples_per_class != 0:
        raise StartupError('Batchsize needs to fit number of samples per class for distance sampling '
                           'and margin/triplet loss! (--bs {} is not divisible by --samples_per_class {})'
                           .format(opt.bs, opt.samples_per_class))
    if not lsd_trainer and criteria.is_lsd(opt.loss):
        raise StartupError('--loss {} is a listwise self-distillation loss: train it with main.py, '
                           'or use --loss {} here.'.format(opt.loss, criteria.base_name(opt.loss)))
    for name in opt.storage_metrics:
        if name not in opt.evaluation_metrics:
            raise StartupError('--storage_metrics {} is not in --evaluation_metrics.'.format(name))
        if name.startswith('rho_spectrum') and name.split('@')[-1] == '0':
            raise StartupError('--storage_metrics {} is an array-valued metric; choose a scalar one.'.format(name))
    for name in opt.evaluation_metrics:
        try:
            metrics.select(name, opt)
        except NotImplementedError as error:
            raise StartupError('--evaluation_metrics: {}'.format(error)) from None
    validate_arch(opt.arch)
    if opt.optim not in OPTIMIZERS:
        raise StartupError('Optimizer {} not available! (--optim adam, sgd or adamw)'.format(opt.optim))
    validate_backbone_recipe(opt)
    validate_loss_and_miner(opt)


OPTIMIZERS = ('adam', 'sgd', 'adamw')
TIMM_ONLY_FLAGS = ('input_size', 'no_head', 'freeze_patch_embed', 'grad_checkpointing')


def validate_arch(arch):
    """An --arch that names no backbone (no reference name, an unknown timm model or tag): one line."""
    import architectures
    try:
        architectures.backbone_of(arch)
    except architectures.UnknownArchitectureError as error:
        raise StartupError(str(error)) from None


def validate_backbone_recipe(opt):
    """The timm/transformer-recipe flags: ranges, a readable --pretrained_weights file, timm-only flags."""
    import os
    if opt.input_size < 0 or opt.warmup_epochs < 0 or opt.clip_grad < 0:
        flag = 'input_size' if opt.input_size < 0 else 'warmup_epochs' if opt.warmup_epochs < 0 else 'clip_grad'
        raise StartupError('--{} must not be negative.'.format(flag))
    if opt.warmup_epochs > 0 and opt.scheduler != 'cosine':
        raise StartupError('--warmup_epochs applies to --scheduler cosine (got --scheduler {}).'.format(opt.scheduler))
    if '/' in opt.savename:
        raise StartupError('--savename {}: must not contain "/" (the run folder sits directly under '
                           '<save_path>/<dataset>/, which --resume relies on).'.format(opt.savename))
    if opt.pretrained_weights and not os.path.isfile(opt.pretrained_weights):
        raise StartupError('--pretrained_weights {}: no such file.'.format(opt.pretrained_weights))
    import architectures
    if not architectures.backbone_config(opt.arch, opt)['accepts_recipe_flags']:
        for flag in TIMM_ONLY_FLAGS:
            if getattr(opt, flag):
                raise StartupError('--{} applies to timm backbones (--arch timm/<model name>), not to --arch {}.'
                                   .format(flag, opt.arch))


def substituted_savename(opt):
    """The reference's `group_plus_seed`: <group>_s<seed> with --log_online, else '' (a date-based name)."""
    if opt.savename == 'group_plus_seed':
        return '{}_s{}'.format(opt.group, opt.seed) if opt.log_online else ''
    return opt.savename


def print_notices(opt):
    """Flags accepted for compatibility with the reference that the chosen sampler or miner ignores."""
    import batch_mining
    import datasampler
    lines = datasampler.ignored_flag_notices(opt)
    if criterion_needs_miner(opt.loss):
        lines += batch_mining.ignored_flag_notices(opt)
    for line in lines:
        print(line, file=sys.stderr)


def seed_everything(seed):
    torch.backends.cudnn.deterministic = True
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def network_parameter_groups(model, opt):
    """One group, or with --fc_lr >= 0 the embedding layer in its own group (partitioned by identity).
    Parameters that do not train (--freeze_patch_embed) are left out; every reference backbone trains all."""
    trained = [p for p in model.parameters() if p.requires_grad]
    if opt.fc_lr < 0:
        return [{'params': trained, 'lr': opt.lr, 'weight_decay': opt.decay}]
    head = model.model.last_linear
    head_ids = {id(p) for p in head.parameters()} if head is not None else set()
    body = [p for p in trained if id(p) not in head_ids]
    head = [p for p in trained if id(p) in head_ids]
    return [{'params': body, 'lr': opt.lr, 'weight_decay': opt.decay},
            {'params': head, 'lr': opt.fc_lr, 'weight_decay': opt.decay}]


def build_optimizer(param_groups, opt):
    """Adam and SGD couple the weight decay to the gradient (L2), as the reference does; AdamW decouples it
    (each step shrinks the weights by lr·decay), the transformers' recipe."""
    if opt.optim == 'adam':
        return torch.optim.Adam(param_groups)
    if opt.optim == 'adamw':
        return torch.optim.AdamW(param_groups)
    return torch.optim.SGD(param_groups, momentum=0.9)


def warmup_cosine_factor(epoch, n_epochs, warmup_epochs):
    """Learning-rate factor of epoch `epoch` (0-based): linear warm-up (e+1)/(W+1) for the first W epochs,
    then half a cosine from 1 down to 0 over the remaining epochs (reached after the last one)."""
    import math
    if epoch < warmup_epochs:
        return (epoch + 1) / (warmup_epochs + 1)
    remaining = max(1, n_epochs - warmup_epochs)
    return 0.5 * (1.0 + math.cos(math.pi * (epoch - warmup_epochs) / remaining))


def build_scheduler(optimizer, opt):
    """None with --scheduler none; per-epoch warm-up + cosine with 'cosine'; else MultiStepLR(--tau, --gamma)."""
    if opt.scheduler == 'none':
        return None
    if opt.scheduler == 'cosine':
        return torch.optim.lr_scheduler.LambdaLR(optimizer, functools.partial(
            warmup_cosine_factor, n_epochs=opt.n_epochs, warmup_epochs=opt.warmup_epochs))
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=opt.tau, gamma=opt.gamma)


def global_setup():
    """Process-wide settings of a run. matplotlib's headless backend is chosen where a figure is drawn, not
    here: importing matplotlib cost ~0.2 s of every run's start, also of runs that draw nothing."""
    warnings.filterwarnings('ignore')
    torch.multiprocessing.set_sharing_strategy('file_system')
