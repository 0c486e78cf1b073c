"""Start-up of both trainers (spec: training.md §3.1-3.2): validation, paths, seeding, device, optimizer."""
import os
import random
import sys
import warnings

import numpy as np
import torch

ARCHITECTURES = ('resnet50', 'googlenet', 'bninception', 'resnet18')


class StartupError(Exception):
    """Bad command-line input: the trainer prints the message on one line and exits."""


def strip_lsd(loss):
    return loss[:-len('_lsd')] if loss.endswith('_lsd') else loss


def criterion_needs_miner(loss):
    import criteria
    module = criteria.BASE_LOSSES.get(criteria.base_name(loss))
    return bool(module is not None and module.REQUIRES_BATCHMINER)


def validate_loss_and_miner(opt):
    """Unknown loss or miner, or a miner the loss does not accept: caught before any folder exists."""
    import batch_mining
    import criteria
    if opt.loss not in criteria.LOSS_NAMES or opt.loss in criteria.UNSUPPORTED:
        criteria.select(opt.loss, opt)  # raises the registry's own one-line message
    if criterion_needs_miner(opt.loss):
        module = criteria.BASE_LOSSES[criteria.base_name(opt.loss)]
        miner = batch_mining.select(opt.batch_mining, opt)
        if miner.name not in module.ALLOWED_MINING_OPS:
            raise StartupError('--batch_mining {}: {}-mining not allowed for {}-loss! Allowed: {}'.format(
                opt.batch_mining, miner.name, opt.loss, ', '.join(module.ALLOWED_MINING_OPS)))


def validate_options(opt, lsd_trainer):
    """Fail before any folder or W&B run exists (project decision, §3.1 step 3)."""
    import criteria
    import metrics

    if opt.bs % opt.samples_per_class != 0:
        raise StartupError('Batchsize needs to fit number of samples per class for distance sampling '
                           'and margin/triplet loss! (--bs {} is not divisible by --samples_per_class {})'
                           .format(opt.bs, opt.samples_per_class))
    if not lsd_trainer and criteria.is_lsd(opt.loss):
        raise StartupError('--loss {} is a listwise self-distillation loss: train it with main.py, '
                           'or use --loss {} here.'.format(opt.loss, strip_lsd(opt.loss)))
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
    if not any(arch in opt.arch for arch in ARCHITECTURES):
        raise StartupError('--arch {} names no known backbone ({}).'.format(opt.arch, ', '.join(ARCHITECTURES)))
    if opt.optim not in ('adam', 'sgd'):
        raise StartupError('Optimizer {} not available! (--optim adam or sgd)'.format(opt.optim))
    opt.loss_source = strip_lsd(opt.loss)
    if criterion_needs_miner(opt.loss) and opt.batch_mining == 'semihard':
        flag = 'loss_{}_margin'.format(opt.loss_source)
        if not hasattr(opt, flag):
            raise StartupError('--batch_mining semihard reads the margin --{}, which does not exist for '
                               '--loss {}.'.format(flag, opt.loss))
    if opt.n_epochs < 1:
        raise StartupError('--n_epochs must be at least 1.')
    validate_loss_and_miner(opt)


def substitute_savename(opt):
    if opt.savename == 'group_plus_seed':
        opt.savename = '{}_s{}'.format(opt.group, opt.seed) if opt.log_online else ''


def seed_everything(seed):
    torch.backends.cudnn.deterministic = True
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def select_device(opt):
    """CUDA when available (--gpu picks it via CUDA_VISIBLE_DEVICES), else the CPU with a notice."""
    os.environ['CUDA_DEVICE_ORDER'] = 'PCI_BUS_ID'
    os.environ['CUDA_VISIBLE_DEVICES'] = str(opt.gpu[0])
    if torch.cuda.is_available():
        return torch.device('cuda')
    print('Notice: no CUDA device available, training on the CPU.', file=sys.stderr)
    if opt.evaluate_on_gpu:
        print('Notice: --evaluate_on_gpu ignored without a CUDA device.', file=sys.stderr)
    return torch.device('cpu')


def network_parameter_groups(model, opt):
    """One group, or with --fc_lr >= 0 the embedding layer in its own group (partitioned by identity)."""
    if opt.fc_lr < 0:
        return [{'params': list(model.parameters()), 'lr': opt.lr, 'weight_decay': opt.decay}]
    head_ids = {id(p) for p in model.model.last_linear.parameters()}
    body = [p for p in model.parameters() if id(p) not in head_ids]
    head = [p for p in model.parameters() if id(p) in head_ids]
    return [{'params': body, 'lr': opt.lr, 'weight_decay': opt.decay},
            {'params': head, 'lr': opt.fc_lr, 'weight_decay': opt.decay}]


def build_optimizer(param_groups, opt):
    if opt.optim == 'adam':
        return torch.optim.Adam(param_groups)
    return torch.optim.SGD(param_groups, momentum=0.9)


def global_setup():
    warnings.filterwarnings('ignore')
    import matplotlib
    matplotlib.use('agg')
    torch.multiprocessing.set_sharing_strategy('file_system')
