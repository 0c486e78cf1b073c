"""Test driver: run main.py's trainer but SIGKILL the process in the middle of a given epoch.

Usage: python tests/kill_during_epoch.py <epoch> <batch> <main.py arguments...>
"""
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from training import loop  # noqa: E402

kill_epoch, kill_batch = int(sys.argv[1]), int(sys.argv[2])
original_gradient_statistics = loop.gradient_statistics
calls = {'n': 0}


def gradient_statistics_then_kill(model):
    run_epoch = loop_state['run'].opt.epoch
    if run_epoch == kill_epoch:
        calls['n'] += 1
        if calls['n'] == kill_batch:
            os.kill(os.getpid(), signal.SIGKILL)
    return original_gradient_statistics(model)


loop_state = {}
original_init = loop.TrainingRun.__init__


def remember_run(self, *args, **kwargs):
    loop_state['run'] = self
    original_init(self, *args, **kwargs)


loop.TrainingRun.__init__ = remember_run
loop.gradient_statistics = gradient_statistics_then_kill
loop.main(sys.argv[3:], lsd_trainer=True)
