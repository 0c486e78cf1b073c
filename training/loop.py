"""The one training loop behind main.py (LSD) and main_original.py (baseline).

`main` parses, then `TrainingRun` derives the run context once and builds the run in small steps
(networks, data, logger, objective, optimizer, metrics); `train` alternates `engine.train_one_epoch`
and `evaluate_epoch`, then saves what a resume needs. Every check of the user's input, the dataset
included, runs before any folder or W&B run is created.
"""
import os
import pickle
import random
import signal
import sys
import time

import numpy as np
import torch

import parameters
from runtime import device as device_selection
from runtime import distributed, process
from runtime.precision import Precision
from training import chunked_step, embedding_warmup, engine, optimization, setup
from training.context import RunContext
from training.errors import TrainingDiverged, TrainingInterrupted
from training.resume_state import load_resume_state, restore_rng_states, save_resume_state
from utilities import logger as logging_utils
from utilities import misc
from utilities.atomic import WriteError, atomic_write_text

RESUMABLE_OVERRIDES = ('kernels', 'gpu', 'wandb_key', 'progress')
TRACEBACK_VARIABLE = 'DML_TRACEBACK'
EXIT_WRITE_ERROR = 74   # sysexits' EX_IOERR: a file of the run could not be written (full disk, quota, ...)


class TrainingRun:
    """Everything one run owns: networks, data, objective, optimizer, logger, metrics."""

    def __init__(self, opt, lsd_trainer, data_folder=None):
        self.context = context = derive_context(opt, lsd_trainer, data_folder)
        self.opt = opt
        self.precision = Precision(opt.amp, opt.channels_last, context.device)
        process.seed_everything(opt.seed)
        self.model, self.teacher = build_networks(context, self.precision)
        if context.is_main_process:
            chunked_step.print_startup_notice(opt.batch_chunk, self.model)
        self.teacher_snapshot = None
        self.normalise = data_normaliser(opt)
        self.embedder = build_embedder(context, self.model, self.normalise, self.precision)
        self.dataset_splits, self.dataloaders, self.sampler = build_data(context, self.model, self.embedder)
        self.objective, self.optimizer, self.scheduler = build_objective_and_optimizer(
            context, self.model, len(self.dataloaders['training']))
        self.warmup = embedding_warmup.for_run(self.objective, self.model)
        self.LOG = build_logger(context)
        self.metric_computer = build_metric_computer(context)
        if context.is_main_process and opt.log_online:
            context.wandb_run_id = init_wandb(context)
        print_run_header(opt, self.model)
        self.first_epoch = 0
        self.last_saved_epoch = None    # the last epoch whose resume state is on disk
        self.start_time = time.time()
        if context.resume_state is not None:
            self.restore(context.resume_state)
        self.checkpoints = build_checkpoint_saver(opt, self.LOG)

    @property
    def criterion(self):
        return self.objective

    # ------------------------------------------------------------------------------------------
    def restore(self, state):
        self.model.load_state_dict(state['model'])
        self.optimizer.load_state_dict(state['optimizer'])
        if self.scheduler is not None and state['scheduler'] is not None:
            self.scheduler.load_state_dict(state['scheduler'])
        self.objective.load_state_dict(state['criterion'])
        self.precision.load_state_dict(state.get('grad_scaler'))
        self.teacher_snapshot = state['teacher_snapshot']
        if state['sampler'] is not None:
            self.sampler.load_state_dict(state['sampler'])
        self.LOG.progress_saver = state['progress']
        self.LOG.plot_titles = state['plot_titles']
        self.LOG.rewrite_all()
        self.start_time -= state['elapsed_seconds']
        self.first_epoch = state['epoch'] + 1
        self.last_saved_epoch = state['epoch']
        restore_rng_states(state['rng'])
        print('Resuming {} after epoch {}.'.format(self.context.run_folder, state['epoch']))

    # ------------------------------------------------------------------------------------------
    def train(self):
        opt = self.opt
        for epoch in range(self.first_epoch, opt.n_epochs):
            epoch_start = time.time()
            self.refresh_storage(epoch)
            if self.scheduler is not None:
                print('Running with learning rates {}...'.format(
                    ' | '.join('{}'.format(group['lr']) for group in self.optimizer.param_groups)))
            if self.sampler.requires_storage:
                self.sampler.precompute_indices()
            set_loader_epoch(self.dataloaders['training'], epoch)

            self.train_epoch(epoch)
            if should_evaluate(epoch, opt.n_epochs, opt.evaluate_every):
                self.evaluate_epoch(epoch)
            self.LOG.update(all=True, step=epoch)
            if self.scheduler is not None:
                self.scheduler.step()
            if self.teacher is not None:
                self.teacher_snapshot = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            if self.context.is_main_process:
                save_resume_state(self, epoch, time.time() - self.start_time, self.context.wandb_run_id)
            self.last_saved_epoch = epoch
            print('Total Epoch Runtime: {0:4.2f}s'.format(time.time() - epoch_start))
            print('\n-----\n')
        if self.context.is_main_process:
            self.write_summary()

    def refresh_storage(self, epoch):
        """--data_idx_full_prec: re-embed the whole training set before every epoch but the first."""
        if self.sampler.requires_storage and self.opt.data_idx_full_prec and epoch > 0 \
                and hasattr(self.sampler, 'full_storage_update'):
            self.sampler.full_storage_update(self.dataloaders['evaluation'], self.model, self.context.device,
                                             embedder=self.embedder)

    def train_epoch(self, epoch):
        if self.teacher is not None and self.objective.needs_teacher(epoch):
            self.teacher.load_state_dict(self.teacher_snapshot, strict=True)
        if self.warmup is not None:
            self.warmup.apply(epoch)
        means, seconds = engine.train_one_epoch(
            self.model, self.objective, self.optimizer, self.dataloaders['training'], epoch,
            device=self.context.device, precision=self.precision, normalise=self.normalise,
            teacher=self.teacher, sampler=self.sampler, world=self.context.world,
            grad_log=self.LOG.progress_saver['Model Grad'], clip_grad=self.opt.clip_grad,
            after_step=optimization.update_hook(self.scheduler, epoch),
            batch_chunk=self.opt.batch_chunk,
            progress=self.context.progress(len(self.dataloaders['training']), 'Epoch {} (Train)'.format(epoch)))
        description = 'Epoch (Train) {0}: Mean Loss [{1:.4f}]'.format(epoch, means.get('loss', float('nan')))
        if 'loss_rank' in means:
            description += ' Mean Rank-Loss [{0:.4f}] Mean KD-Loss [{1:.4f}]'.format(means['loss_rank'],
                                                                                      means['loss_kd'])
        print(description)
        train_log = self.LOG.progress_saver['Train']
        train_log.log('epochs', epoch)
        for key in self.objective.part_names:
            train_log.log(key, means.get(key, float('nan')))
        train_log.log('time', np.round(seconds, 4))

    def evaluate_epoch(self, epoch):
        opt = self.opt
        passes = [('Testing', 'testing', 'Test')]
        if opt.use_tv_split:
            passes.append(('Validation', 'validation', 'Val'))
        if not opt.no_train_metrics:
            passes.append(('Training', 'evaluation', 'Train'))
        self.model.eval()
        for title, loader_key, log_key in passes:
            print('\nComputing {} Metrics...'.format(title))
            self.evaluate_split(epoch, loader_key=loader_key, log_key=log_key)

    def evaluate_split(self, epoch, *, loader_key, log_key):
        """One evaluation pass; its result goes to the console, the checkpoints, W&B's histograms, the
        progress log and the sample-recoveries figure, in this order (the reference's)."""
        import evaluation
        opt = self.opt
        result = evaluation.evaluate(self.dataloaders[loader_key], embedder=self.embedder,
                                     metric_computer=self.metric_computer, evaltypes=opt.evaltypes,
                                     n_threads=opt.kernels)
        if result is None:      # a data-parallel helper process: the main process reports
            return
        with evaluation.main_process_alone(self.context.world):
            print(evaluation.result_block(result.metrics))
            self.checkpoints.save_improved(log_key, result.metrics, contents=lambda: {
                'state_dict': self.model.state_dict(), 'opt': self.context.recorded_options(epoch),
                'progress': self.LOG.progress_saver, 'aux': None})
            if opt.log_online:
                evaluation.log_histograms(result.histograms, epoch=epoch, log_key=log_key)
            evaluation.log_metrics(self.LOG.progress_saver[log_key], result.metrics,
                                   epoch=epoch if opt.evaluate_every != 1 else None)
            if opt.make_recall_plot and log_key == 'Test':
                from evaluation.recall_plot import save_sample_recoveries
                # the reference overwrites one file per evaltype: the last one wins
                save_sample_recoveries(result.features[opt.evaltypes[-1]], result.image_paths,
                                       self.LOG.save_path + '/sample_recoveries.png')

    def write_summary(self):
        minutes = np.round((time.time() - self.start_time) / 60, 2)
        text = 'Training Time: {} min.\n'.format(minutes) + '---------------\n'
        text += ''.join(line + '\n' for line in self.LOG.summary_lines(self.opt.storage_metrics[0],
                                                                         self.opt.evaltypes[0]))
        if self.opt.cv_folds:
            text += 'Val: cross-validation fold {} of {} (split by {})\n'.format(
                self.opt.cv_fold, self.opt.cv_folds, 'samples' if self.opt.tv_split_by_samples else 'classes')
        atomic_write_text(text, self.context.run_folder + '/training_summary.txt')


def should_evaluate(epoch, n_epochs, every):
    """--evaluate_every N: epochs N-1, 2N-1, ... and always the last one."""
    return (epoch + 1) % every == 0 or epoch == n_epochs - 1


def set_loader_epoch(loader, epoch):
    """The fast pipeline draws each sample's augmentation from (seed, epoch, index): tell the batch sampler."""
    batch_sampler = getattr(loader, 'batch_sampler', None)
    if hasattr(batch_sampler, 'set_epoch'):
        batch_sampler.set_epoch(epoch)


# ----------------------------------------------------------------------------------------------
# Start-up: parse -> validate -> derive, once.

def derive_context(opt, lsd_trainer, data_folder=None):
    """Validate the options and derive what the run reads besides them; nothing is created on disk."""
    import criteria
    import datasets
    setup.validate_options(opt, lsd_trainer)
    data_folder = data_folder or datasets.data_folder(opt.dataset, opt.source_path)
    datasets.check_data_folder(opt.dataset, data_folder)
    setup.print_notices(opt)
    resume_state, run_folder = None, None
    if opt.resume:
        run_folder = os.path.abspath(opt.resume)
        resume_state = load_resume_state(run_folder)
        if resume_state is None:
            raise setup.StartupError('--resume {}: no {} in that folder (no epoch was completed).'
                                     .format(opt.resume, 'resume_state.pth.tar'))
    under_torchrun = int(os.environ.get('WORLD_SIZE', '1')) > 1
    device = device_selection.select_device(
        opt.gpu, opt.evaluate_on_gpu, local_rank=device_selection.local_rank_from() if under_torchrun else None)
    if opt.eval_cache == 'gpu' and device.type != 'cuda':
        raise setup.StartupError('--eval_cache gpu needs a CUDA device; use --eval_cache cpu.')
    world = distributed.init_from_environment(device.type)
    distributed.check_batch_size(opt.bs, world)
    context = RunContext(
        opt=opt, lsd_trainer=lsd_trainer, uses_lsd=lsd_trainer and criteria.is_lsd(opt.loss),
        data_folder=data_folder,
        results_folder=opt.save_path + '/' + opt.dataset, savename=setup.substituted_savename(opt),
        device=device, world=world, run_folder=run_folder, resume_state=resume_state,
        wandb_run_id=resume_state.get('wandb_run_id') if resume_state else None)
    return context


def build_networks(context, precision):
    """The student and, for LSD, a teacher of the same architecture built without consuming the global
    random generator (so the student's initialisation and every later draw equal the baseline's)."""
    import architectures
    opt = context.opt
    model = architectures.select(opt.arch, opt)
    model = distributed.convert_batchnorm(model, context.world)
    model.to(context.device)
    precision.prepare_model(model)
    teacher = None
    if context.uses_lsd:
        with torch.random.fork_rng(devices=[]):
            teacher = architectures.select(opt.arch, opt)
        teacher.load_state_dict(model.state_dict())
        teacher.to(context.device)
        precision.prepare_model(teacher)
    return model, teacher


def build_data(context, model, embedder):
    """Datasets (this is where a missing or malformed data folder is reported), loaders and the sampler."""
    import datasampler
    import datasets
    opt, world = context.opt, context.world
    splits = datasets.select(opt.dataset, opt, context.data_folder)
    if opt.use_tv_split:
        datasets.check_rankable(splits['validation'].image_dict, opt.tv_split_by_samples, opt.tv_split_perc,
                                datasets.fold_choice(opt))
    loader_options = datasets.loader_options(opt, context.device)
    eval_bs = opt.eval_bs or opt.bs

    def evaluation_loader(split):
        dataset = splits[split]
        if world.enabled:  # each process embeds a disjoint contiguous shard, nothing padded
            dataset = torch.utils.data.Subset(dataset, distributed.shard_range(len(dataset), world))
        # the fast pipeline gives evaluation loaders their own generator: an evaluation then never moves the
        # training's random streams, so --evaluate_every and --eval_cache leave the training unchanged
        generator = torch.Generator() if opt.data_pipeline == 'fast' else None
        loader = torch.utils.data.DataLoader(dataset, batch_size=eval_bs, shuffle=False, generator=generator,
                                             **loader_options)
        return datasets.cached(loader, opt.eval_cache, context.device)

    loaders = {'evaluation': evaluation_loader('evaluation'), 'testing': evaluation_loader('testing')}
    if opt.use_tv_split:
        loaders['validation'] = evaluation_loader('validation')
    training_set = splits['training']
    context.n_classes = len(training_set.avail_classes)
    sampler = datasampler.select(opt.data_sampler, opt, training_set.image_dict, training_set.image_list)
    if sampler.requires_storage:
        sampler.create_storage(loaders['evaluation'], model, context.device, embedder=embedder)
    batch_sampler = distributed.RankSliceBatchSampler(sampler, world) if world.enabled else sampler
    if opt.data_pipeline == 'fast':
        batch_sampler = datasets.EpochTaggedBatchSampler(batch_sampler)
    loaders['training'] = torch.utils.data.DataLoader(training_set, batch_sampler=batch_sampler, **loader_options)
    return splits, loaders, sampler


def build_embedder(context, model, normalise, precision):
    """The evaluation embedding shared by the metrics passes and the storage samplers."""
    import evaluation
    return evaluation.Embedder(model, context.device, normalise, precision, context.world,
                               progress=context.progress)


def data_normaliser(opt):
    import datasets
    return datasets.device_normaliser(opt)


def build_logger(context):
    """Create the run folder (main process only) and the sub-loggers; Val only with --use_tv_split."""
    opt = context.opt
    sub_loggers = ['Train', 'Test', 'Model Grad'] + (['Val'] if opt.use_tv_split else [])
    if context.is_main_process and context.run_folder is None:
        try:
            context.run_folder = logging_utils.create_run_folder(context.results_folder, context.savename,
                                                                 opt.dataset, opt.arch)
        except OSError as error:
            raise setup.StartupError('--save_path {}: cannot create the run folder ({})'.format(
                opt.save_path, error.strerror or error)) from None
        logging_utils.save_options(context.recorded_options(), context.run_folder)
    return logging_utils.LOGGER(context.run_folder, sub_loggers=sub_loggers,
                                log_online=opt.log_online and context.is_main_process,
                                make_plots=not opt.no_plots, write_files=context.is_main_process)


def build_checkpoint_saver(opt, LOG):
    """Checkpoint on improvement of each --storage_metrics of each --evaltypes, per evaluated split; the best
    values so far are those of the log (empty for a fresh run, restored for a resumed one)."""
    import evaluation
    saver = evaluation.CheckpointSaver(LOG.save_path, storage_metrics=opt.storage_metrics, evaltypes=opt.evaltypes)
    saver.restore(LOG.progress_saver)
    return saver


def build_objective_and_optimizer(context, model, updates_per_epoch):
    """The criterion (baseline or `_lsd` composition) with its miner, then the optimizer over the network's
    and the criterion's parameter groups, then the LR schedule (none with --scheduler none); see
    training/optimization.py."""
    import batch_mining
    import criteria
    opt = context.opt
    miner = batch_mining.select(opt.batch_mining, opt, loss=opt.loss) if criteria.requires_miner(opt.loss) else None
    loss = opt.loss if context.lsd_trainer else criteria.base_name(opt.loss)
    objective, _ = criteria.build_objective(loss, opt, context.n_classes, miner)
    objective.to(context.device)
    optimizer = optimization.build_optimizer(optimization.optimizer_groups(model, objective, opt), opt)
    return objective, optimizer, optimization.build_scheduler(optimizer, opt, updates_per_epoch)


def build_metric_computer(context):
    import metrics
    return metrics.MetricComputer(context.opt.evaluation_metrics, context.metric_options(),
                                  n_classes=context.n_classes)


def print_run_header(opt, model):
    import criteria
    n_weights = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print('\n-----\n')
    print('Dataset:\t {}'.format(opt.dataset.upper()))
    print('Objective:\t {}'.format(opt.loss.upper()))
    print('Batchminer:\t {}'.format(opt.batch_mining if criteria.requires_miner(opt.loss) else 'N/A'))
    print('Backbone:\t {} (#weights: {})'.format(opt.arch.upper(), n_weights))
    print('\n-----\n')


def init_wandb(context):
    """W&B run with the recorded options as config; a real key only through the environment, never on
    disk. Started after every check and after the run folder exists; it does not touch the run's
    random streams (W&B draws its own ids)."""
    import wandb
    opt = context.opt
    if opt.wandb_key not in misc.WANDB_KEY_PLACEHOLDERS + (misc.REDACTED,):
        os.environ['WANDB_API_KEY'] = opt.wandb_key
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    name = context.savename if context.savename else None
    run = wandb.init(project=opt.project, group=opt.group, name=name, dir=opt.save_path,
                     id=context.wandb_run_id, resume='allow' if context.wandb_run_id else None)
    wandb.config.update(vars(context.recorded_options()), allow_val_change=True)
    random.setstate(states[0])
    np.random.set_state(states[1])
    torch.set_rng_state(states[2])
    return run.id


# ----------------------------------------------------------------------------------------------
# Resume: the killed run's own options.

def read_pickled_options(path):
    try:
        with open(path, 'rb') as handle:
            return pickle.load(handle)
    except Exception:
        raise setup.StartupError('{}: unreadable (truncated or corrupt); this run folder cannot be resumed.'
                                 .format(path)) from None


def options_for_resume(cli_opt):
    """(options, data folder) of the killed run, from its hypa.pkl, plus the few machine-specific flags
    given now (--kernels, --gpu, --wandb_key)."""
    import datasets
    run_folder = os.path.abspath(cli_opt.resume)
    hypa = os.path.join(run_folder, 'hypa.pkl')
    if not os.path.isfile(hypa):
        raise setup.StartupError('--resume {}: not a run folder (no hypa.pkl).'.format(cli_opt.resume))
    saved = read_pickled_options(hypa)
    defaults = parameters.read_arguments([])
    opt = parameters.read_arguments([])
    for key in vars(defaults):       # the flags only: derived values are derived again
        if hasattr(saved, key):
            setattr(opt, key, getattr(saved, key))
    data_folder = opt.source_path    # recorded as <source_path>/<dataset> (own data: the CSV file or folder)
    suffix = '/' + opt.dataset
    if opt.source_path.endswith(suffix) and not datasets.is_own_data(opt.dataset):
        opt.source_path = opt.source_path[:-len(suffix)]
    opt.save_path = os.path.dirname(os.path.dirname(run_folder))
    for key in RESUMABLE_OVERRIDES:
        if getattr(cli_opt, key) != getattr(defaults, key):
            setattr(opt, key, getattr(cli_opt, key))
    if opt.wandb_key == misc.REDACTED:
        opt.wandb_key = defaults.wandb_key
    opt.resume = run_folder
    return opt, data_folder


def redact_key_in_argv(key):
    """W&B records the command line; the API key must not travel with it."""
    if key in misc.WANDB_KEY_PLACEHOLDERS:
        return
    sys.argv[:] = [misc.REDACTED if arg == key else arg.replace('=' + key, '=' + misc.REDACTED)
                   for arg in sys.argv]


def one_line(error):
    """The user-facing line of an error; a DataLoader worker's re-raised error carries the original
    message as its last line."""
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[-1] if 'Original Traceback' in text else text.splitlines()[0] if text else text


def write_failure(error, run, lsd_trainer):
    """One line for a file that could not be written during training: which file and why, what is intact,
    and how to continue once the cause (a full disk, a quota) is fixed."""
    epoch = run.last_saved_epoch
    if epoch is None:
        return '{}; no epoch was completed, so there is nothing to resume: fix that and start the run again.'.format(
            error)
    return ('{}; epoch {} (the last completed one) is saved and no file is half-written; fix that, then resume with: '
            'python {} --resume {}'.format(error, epoch, 'main.py' if lsd_trainer else 'main_original.py',
                                           run.context.run_folder))


def fail(message, code):
    print('error: {}'.format(message), file=sys.stderr)
    sys.exit(code)


def main(argv=None, lsd_trainer=True):
    process.global_setup()
    opt = parameters.read_arguments(argv)
    redact_key_in_argv(opt.wandb_key)
    show_traceback = os.environ.get(TRACEBACK_VARIABLE) == '1'
    previous_sigterm = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        try:
            data_folder = None
            if opt.resume:
                opt, data_folder = options_for_resume(opt)
            run = TrainingRun(opt, lsd_trainer, data_folder)
        except Exception as error:  # start-up problems are the user's input: one line, no traceback
            if show_traceback:
                raise
            fail(one_line(error), 2)
        try:
            distributed.run_guarded(run.train, run.context.world)
        except TrainingInterrupted as stop:
            folder = run.context.run_folder
            completed = stop.epoch - 1
            hint = ('resume with: python {} --resume {}'.format('main.py' if lsd_trainer else 'main_original.py',
                                                                folder) if completed >= 0 else
                    'no epoch was completed, so there is nothing to resume')
            print('Stopped: {}; {}.'.format(stop, hint), file=sys.stderr)
            sys.exit(130)
        except TrainingDiverged as error:
            if show_traceback:
                raise
            fail(str(error), 3)
        except WriteError as error:
            if show_traceback:
                raise
            fail(write_failure(error, run, lsd_trainer), EXIT_WRITE_ERROR)
        except Exception as error:
            import datasets
            if isinstance(error, datasets.DatasetError) and not show_traceback:
                fail(one_line(error), 2)
            raise
    finally:
        signal.signal(signal.SIGTERM, previous_sigterm)
    distributed.shutdown(run.context.world)
    return run


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt
