"""Process-wide set-up of a run (trainers and evaluate.py): the seeds of every random generator, warnings and
tensor sharing between worker processes."""
import random
import warnings

import numpy as np
import torch


def seed_everything(seed):
    torch.backends.cudnn.deterministic = True
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def global_setup():
    """Process-wide settings of a run. matplotlib's headless backend is chosen where a figure is drawn, not
    here: importing matplotlib cost ~0.2 s of every run's start, also of runs that draw nothing."""
    warnings.filterwarnings('ignore')
    torch.multiprocessing.set_sharing_strategy('file_system')
