"""What a killed run needs to continue exactly (issue 5): written atomically after every completed epoch."""
import os
import random

import numpy as np
import torch

from utilities.atomic import atomic_torch_save

RESUME_FILE = 'resume_state.pth.tar'


def capture_rng_states():
    return {'python': random.getstate(), 'numpy': np.random.get_state(), 'torch': torch.get_rng_state(),
            'cuda': torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def restore_rng_states(states):
    random.setstate(states['python'])
    np.random.set_state(states['numpy'])
    torch.set_rng_state(states['torch'])
    if states['cuda'] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states['cuda'])


def save_resume_state(run, epoch, elapsed_seconds, wandb_run_id=None):
    """`run` is the TrainingRun; the file replaces the previous epoch's in one rename."""
    state = {
        'epoch': epoch,
        'elapsed_seconds': elapsed_seconds,
        'model': run.model.state_dict(),
        'optimizer': run.optimizer.state_dict(),
        'scheduler': run.scheduler.state_dict(),
        'criterion': run.criterion.state_dict(),
        'teacher_snapshot': run.teacher_snapshot,
        'sampler': run.sampler.state_dict() if hasattr(run.sampler, 'state_dict') else None,
        'rng': capture_rng_states(),
        'progress': run.LOG.progress_saver,
        'plot_titles': run.LOG.plot_titles,
        'wandb_run_id': wandb_run_id,
    }
    atomic_torch_save(state, os.path.join(run.opt.save_path, RESUME_FILE))


def load_resume_state(run_folder):
    path = os.path.join(run_folder, RESUME_FILE)
    if not os.path.isfile(path):
        return None
    return torch.load(path, map_location='cpu', weights_only=False)
