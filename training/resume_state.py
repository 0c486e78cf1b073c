"""What a killed run needs to continue exactly: written atomically after every completed epoch."""
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


def shared_snapshot(snapshot, model_state):
    """The teacher snapshot is taken right before saving, so it equals the model: let its entries be the
    model's own tensors, which torch.save then stores once (the file halves for LSD runs)."""
    if snapshot is None:
        return None
    if set(snapshot) == set(model_state) and all(torch.equal(snapshot[k], model_state[k]) for k in snapshot):
        return {k: model_state[k] for k in snapshot}
    return snapshot


def save_resume_state(run, epoch, elapsed_seconds, wandb_run_id=None):
    """`run` is the TrainingRun; the file replaces the previous epoch's in one rename."""
    model_state = run.model.state_dict()
    state = {
        'epoch': epoch,
        'elapsed_seconds': elapsed_seconds,
        'model': model_state,
        'optimizer': run.optimizer.state_dict(),
        'scheduler': run.scheduler.state_dict() if run.scheduler is not None else None,
        'criterion': run.objective.state_dict(),   # the memory included (criteria/objective.py)
        'grad_scaler': run.precision.state_dict(),
        'teacher_snapshot': shared_snapshot(run.teacher_snapshot, model_state),
        'sampler': run.sampler.state_dict() if hasattr(run.sampler, 'state_dict') else None,
        'rng': capture_rng_states(),
        'progress': run.LOG.progress_saver,
        'plot_titles': run.LOG.plot_titles,
        'wandb_run_id': wandb_run_id,
    }
    atomic_torch_save(state, os.path.join(run.context.run_folder, RESUME_FILE))


def load_resume_state(run_folder):
    path = os.path.join(run_folder, RESUME_FILE)
    if not os.path.isfile(path):
        return None
    try:
        state = torch.load(path, map_location='cpu', weights_only=False)
    except Exception:
        state = None
    if not isinstance(state, dict) or 'epoch' not in state:
        raise ResumeStateError('{}: unreadable (truncated or corrupt); this run folder cannot be resumed.'
                               .format(path))
    if 'memory' in state:   # written before the memory was part of the objective: one entry, as now
        from criteria.objective import Objective
        state['criterion'] = Objective.legacy_state(state['criterion'], state.pop('memory'))
    snapshot = state.get('teacher_snapshot')
    if snapshot is not None:  # entries may share the model's storage: give the teacher its own copy
        state['teacher_snapshot'] = {k: v.clone() for k, v in snapshot.items()}
    return state


class ResumeStateError(Exception):
    """A resume state that cannot be read: reported as one line naming the file."""
