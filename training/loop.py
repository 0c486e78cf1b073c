"""The one training loop behind main.py (LSD) and main_original.py (baseline) — spec: training.md §3-5.

Per batch it reads like the paper's algorithm box: student forward -> teacher forward (previous-epoch
snapshot, only when the distillation weight is non-zero) -> ranking loss + (e/N)·α·τ²·KD -> step.
"""
import argparse
import copy
import os
import pickle
import sys
import time

import numpy as np
import torch
from tqdm import tqdm

import parameters
from training import setup
from training.resume_state import (load_resume_state, restore_rng_states, save_resume_state)
from utilities import logger as logging_utils
from utilities import misc
from utilities.atomic import atomic_write_text

RESUMABLE_OVERRIDES = ('kernels', 'gpu', 'wandb_key')


def first_output(output):
    """Backbones return (embedding, extras) or a plain embedding tensor (googlenet)."""
    return output[0] if isinstance(output, tuple) else output


class TrainingRun:
    """Everything one run owns: networks, data, criterion, optimizer, logger."""

    def __init__(self, opt, lsd_trainer):
        import architectures
        import batch_mining
        import criteria
        import datasampler
        import datasets
        import metrics

        self.opt = opt
        self.resume_state = None
        self.wandb_run_id = None
        criterion_needs_miner = setup.criterion_needs_miner(opt.loss)
        setup.validate_options(opt, lsd_trainer)
        self.lsd = lsd_trainer and criteria.is_lsd(opt.loss)

        if opt.resume:
            self.resume_state = load_resume_state(opt.save_path)
            if self.resume_state is None:
                raise setup.StartupError('--resume {}: no {} in that folder (no epoch was completed).'
                                         .format(opt.save_path, 'resume_state.pth.tar'))
            self.wandb_run_id = self.resume_state.get('wandb_run_id')
        else:
            setup.substitute_savename(opt)
        if opt.log_online:
            self.wandb_run_id = init_wandb(opt, self.wandb_run_id)
        self.start_time = time.time()
        opt.source_path = opt.source_path + '/' + opt.dataset
        if not opt.resume:
            opt.save_path = opt.save_path + '/' + opt.dataset
        opt.pretrained = not opt.not_pretrained
        opt.device = setup.select_device(opt)
        setup.seed_everything(opt.seed)
        device = opt.device

        self.model = architectures.select(opt.arch, opt)
        param_groups = setup.network_parameter_groups(self.model, opt)
        self.model.to(device)
        self.teacher = None
        self.teacher_snapshot = None
        if self.lsd:
            # Same architecture, built without consuming the global RNG (spec §4.2 project decision).
            with torch.random.fork_rng(devices=[]):
                self.teacher = architectures.select(opt.arch, opt)
            self.teacher.load_state_dict(self.model.state_dict())
            self.teacher.to(device)

        dataset_splits = datasets.select(opt.dataset, opt, opt.source_path)
        loader = lambda split: torch.utils.data.DataLoader(dataset_splits[split], num_workers=opt.kernels,
                                                           batch_size=opt.bs, shuffle=False)
        self.dataloaders = {'evaluation': loader('evaluation'), 'testing': loader('testing')}
        if opt.use_tv_split:
            self.dataloaders['validation'] = loader('validation')
        training_set = dataset_splits['training']
        self.sampler = datasampler.select(opt.data_sampler, opt, training_set.image_dict, training_set.image_list)
        if self.sampler.requires_storage:
            self.sampler.create_storage(self.dataloaders['evaluation'], self.model, device)
        self.dataloaders['training'] = torch.utils.data.DataLoader(training_set, num_workers=opt.kernels,
                                                                   batch_sampler=self.sampler)
        opt.n_classes = len(training_set.avail_classes)

        sub_loggers = ['Train', 'Test', 'Model Grad'] + (['Val'] if opt.use_tv_split else [])
        self.LOG = logging_utils.LOGGER(opt, sub_loggers=sub_loggers, start_new=not opt.resume,
                                        log_online=opt.log_online)

        miner = batch_mining.select(opt.batch_mining, opt) if criterion_needs_miner else None
        self.criterion, param_groups = criteria.select(opt.loss, opt, param_groups, miner)
        self.criterion.to(device)
        self.optimizer = setup.build_optimizer(param_groups, opt)
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(self.optimizer, milestones=opt.tau, gamma=opt.gamma)

        opt.rho_spectrum_embed_dim = opt.embed_dim
        self.metric_computer = metrics.MetricComputer(opt.evaluation_metrics, opt)
        n_weights = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        print('\n-----\n')
        print('Dataset:\t {}'.format(opt.dataset.upper()))
        print('Objective:\t {}'.format(opt.loss.upper()))
        print('Batchminer:\t {}'.format(opt.batch_mining if criterion_needs_miner else 'N/A'))
        print('Backbone:\t {} (#weights: {})'.format(opt.arch.upper(), n_weights))
        print('\n-----\n')

        self.first_epoch = 0
        if self.resume_state is not None:
            self.restore(self.resume_state)

    # ------------------------------------------------------------------------------------------
    def restore(self, state):
        self.model.load_state_dict(state['model'])
        self.optimizer.load_state_dict(state['optimizer'])
        self.scheduler.load_state_dict(state['scheduler'])
        self.criterion.load_state_dict(state['criterion'])
        self.teacher_snapshot = state['teacher_snapshot']
        if state['sampler'] is not None:
            self.sampler.load_state_dict(state['sampler'])
        self.LOG.progress_saver = state['progress']
        self.LOG.plot_titles = state['plot_titles']
        self.LOG.rewrite_all()
        self.start_time -= state['elapsed_seconds']
        self.first_epoch = state['epoch'] + 1
        restore_rng_states(state['rng'])
        print('Resuming {} after epoch {}.'.format(self.opt.save_path, state['epoch']))

    def distillation_active(self, epoch):
        return self.lsd and self.criterion.distillation_weight(epoch) != 0

    # ------------------------------------------------------------------------------------------
    def train(self):
        opt = self.opt
        for epoch in range(self.first_epoch, opt.n_epochs):
            epoch_start = time.time()
            if self.sampler.requires_storage and opt.data_idx_full_prec and epoch > 0 \
                    and hasattr(self.sampler, 'full_storage_update'):
                self.sampler.full_storage_update(self.dataloaders['evaluation'], self.model, opt.device)
            opt.epoch = epoch
            if opt.scheduler != 'none':
                print('Running with learning rates {}...'.format(
                    ' | '.join('{}'.format(group['lr']) for group in self.optimizer.param_groups)))
            if self.sampler.requires_storage:
                self.sampler.precompute_indices()

            self.train_one_epoch(epoch)
            self.evaluate_epoch()
            self.LOG.update(all=True)
            if opt.scheduler != 'none':
                self.scheduler.step()
            if self.lsd:
                self.teacher_snapshot = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            save_resume_state(self, epoch, time.time() - self.start_time, self.wandb_run_id)
            print('Total Epoch Runtime: {0:4.2f}s'.format(time.time() - epoch_start))
            print('\n-----\n')
        self.write_summary()

    def train_one_epoch(self, epoch):
        opt, device = self.opt, self.opt.device
        start = time.time()
        self.model.train()
        losses = {'loss': [], 'loss_rank': [], 'loss_kd': []}
        data_iterator = tqdm(self.dataloaders['training'], desc='Epoch {} Training...'.format(epoch),
                             disable=not sys.stderr.isatty() and os.environ.get('DML_PROGRESS') != '1')
        distill = self.distillation_active(epoch)
        if distill:
            self.teacher.load_state_dict(self.teacher_snapshot, strict=True)
        grad_log = self.LOG.progress_saver['Model Grad']

        for i, (labels, images, indices) in enumerate(data_iterator):
            images = images.to(device)
            embeddings = first_output(self.model(images))
            if self.lsd:
                teacher_embeddings = None
                if distill:
                    with torch.no_grad():
                        teacher_embeddings = first_output(self.teacher(images))
                loss, loss_rank, loss_kd = self.criterion(batch=embeddings, teacher_batch=teacher_embeddings,
                                                          labels=labels, epoch=epoch, n_epochs=opt.n_epochs)
            else:
                loss = self.criterion(batch=embeddings, labels=labels, teacher_batch=None, epoch=epoch,
                                      n_epochs=opt.n_epochs)

            self.optimizer.zero_grad()
            if loss.requires_grad:
                loss.backward()
                grad_rms, grad_max = gradient_statistics(self.model)
                grad_log.log('Grad L2', grad_rms, group='L2')
                grad_log.log('Grad Max', grad_max, group='Max')
                self.optimizer.step()

            losses['loss'].append(loss.item())
            if self.lsd:
                losses['loss_rank'].append(loss_rank.item())
                losses['loss_kd'].append(loss_kd.item())
            if i == len(self.dataloaders['training']) - 1:
                description = 'Epoch (Train) {0}: Mean Loss [{1:.4f}]'.format(epoch, np.mean(losses['loss']))
                if self.lsd:
                    description += ' Mean Rank-Loss [{0:.4f}] Mean KD-Loss [{1:.4f}]'.format(
                        np.mean(losses['loss_rank']), np.mean(losses['loss_kd']))
                data_iterator.set_description(description)
            if self.sampler.requires_storage and self.sampler.update_storage:
                self.sampler.replace_storage_entries(embeddings.detach().cpu(), indices)

        train_log = self.LOG.progress_saver['Train']
        train_log.log('epochs', epoch)
        for key in (('loss', 'loss_rank', 'loss_kd') if self.lsd else ('loss',)):
            train_log.log(key, float(np.mean(losses[key])) if losses[key] else float('nan'))
        train_log.log('time', np.round(time.time() - start, 4))

    def evaluate_epoch(self):
        import evaluation
        opt = self.opt
        passes = [('Testing', 'testing', 'Test')]
        if opt.use_tv_split:
            passes.append(('Validation', 'validation', 'Val'))
        if not opt.no_train_metrics:
            passes.append(('Training', 'evaluation', 'Train'))
        self.model.eval()
        for title, loader_key, log_key in passes:
            print('\nComputing {} Metrics...'.format(title))
            evaluation.evaluate(opt.dataset, self.LOG, self.metric_computer, [self.dataloaders[loader_key]],
                                self.model, opt, opt.evaltypes, opt.device, log_key=log_key,
                                make_recall_plot=opt.make_recall_plot and log_key == 'Test')

    def write_summary(self):
        minutes = np.round((time.time() - self.start_time) / 60, 2)
        text = 'Training Time: {} min.\n'.format(minutes) + '---------------\n'
        text += ''.join(line + '\n' for line in self.LOG.summary_lines())
        atomic_write_text(text, self.opt.save_path + '/training_summary.txt')


def gradient_statistics(model):
    """Root-mean-square and max |g| over every student gradient entry (logged as 'Grad L2' / 'Grad Max')."""
    grads = [p.grad.detach() for p in model.parameters() if p.grad is not None]
    if not grads:
        return float('nan'), float('nan')
    squares = torch.stack([g.pow(2).sum() for g in grads]).sum()
    count = sum(g.numel() for g in grads)
    largest = torch.stack([g.abs().max() for g in grads]).max()
    return float(torch.sqrt(squares / count)), float(largest)


def init_wandb(opt, run_id=None):
    """W&B run with the namespace as config; a real key only through the environment, never on disk."""
    import wandb
    if opt.wandb_key not in misc.WANDB_KEY_PLACEHOLDERS + (misc.REDACTED,):
        os.environ['WANDB_API_KEY'] = opt.wandb_key
    os.makedirs(opt.save_path, exist_ok=True)
    name = opt.savename if opt.savename else None
    run = wandb.init(project=opt.project, group=opt.group, name=name, dir=opt.save_path,
                     id=run_id, resume='allow' if run_id else None)
    wandb.config.update(vars(misc.redacted_namespace(opt)), allow_val_change=True)
    return run.id


def options_for_resume(cli_opt):
    """The killed run's own options (from its hypa.pkl), plus the few machine-specific flags given now."""
    run_folder = os.path.abspath(cli_opt.resume)
    hypa = os.path.join(run_folder, 'hypa.pkl')
    if not os.path.isfile(hypa):
        raise setup.StartupError('--resume {}: not a run folder (no hypa.pkl).'.format(cli_opt.resume))
    with open(hypa, 'rb') as handle:
        saved = pickle.load(handle)
    opt = parameters.read_arguments([])
    for key, value in vars(saved).items():
        setattr(opt, key, value)
    suffix = '/' + opt.dataset
    if opt.source_path.endswith(suffix):
        opt.source_path = opt.source_path[:-len(suffix)]
    opt.save_path = run_folder
    defaults = parameters.read_arguments([])
    for key in RESUMABLE_OVERRIDES:
        if getattr(cli_opt, key) != getattr(defaults, key):
            setattr(opt, key, getattr(cli_opt, key))
    if opt.wandb_key == misc.REDACTED:
        opt.wandb_key = defaults.wandb_key
    opt.resume = run_folder
    return opt


def redact_key_in_argv(key):
    """W&B records the command line; the API key must not travel with it."""
    if key in misc.WANDB_KEY_PLACEHOLDERS:
        return
    sys.argv[:] = [misc.REDACTED if arg == key else arg.replace('=' + key, '=' + misc.REDACTED)
                   for arg in sys.argv]


def main(argv=None, lsd_trainer=True):
    setup.global_setup()
    opt = parameters.read_arguments(argv)
    redact_key_in_argv(opt.wandb_key)
    try:
        if opt.resume:
            opt = options_for_resume(opt)
        run = TrainingRun(opt, lsd_trainer)
    except Exception as error:  # start-up problems are the user's input: one line, no traceback
        if os.environ.get('DML_TRACEBACK') == '1':
            raise
        print('error: {}'.format(error if str(error) else type(error).__name__), file=sys.stderr)
        sys.exit(2)
    run.train()
    return run
