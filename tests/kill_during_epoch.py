"""Test driver: run a trainer but send a signal to the process in the middle of a given epoch.

Usage: python tests/kill_during_epoch.py <epoch> <batch> [--signal KILL|INT|TERM|NAN] [--baseline] <trainer arguments...>
The signal goes out right after the gradient of iteration <batch> (1-based) of epoch <epoch>; NAN sets
every weight to NaN there instead.
"""
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from training import engine, loop  # noqa: E402

kill_epoch, kill_batch = int(sys.argv[1]), int(sys.argv[2])
arguments = sys.argv[3:]
signal_name = 'KILL'
if arguments[:1] == ['--signal']:
    signal_name, arguments = arguments[1], arguments[2:]
lsd_trainer = True
if arguments[:1] == ['--baseline']:
    lsd_trainer, arguments = False, arguments[1:]
state = {'epoch': None, 'calls': 0}
original_train_one_epoch = engine.train_one_epoch
original_gradient_statistics = engine.gradient_statistics


def train_one_epoch_recording_epoch(model, objective, optimizer, loader, epoch, **kwargs):
    state['epoch'], state['calls'] = epoch, 0
    return original_train_one_epoch(model, objective, optimizer, loader, epoch, **kwargs)


def gradient_statistics_then_signal(parameters):
    parameters = list(parameters)
    if state['epoch'] == kill_epoch:
        state['calls'] += 1
        if state['calls'] == kill_batch:
            if signal_name == 'NAN':  # not a signal: poison the weights, as a diverging run would
                for parameter in parameters:
                    parameter.data.fill_(float('nan'))
            else:
                os.kill(os.getpid(), getattr(signal, 'SIG' + signal_name))
    return original_gradient_statistics(parameters)


engine.train_one_epoch = train_one_epoch_recording_epoch
loop.engine.train_one_epoch = train_one_epoch_recording_epoch
engine.gradient_statistics = gradient_statistics_then_signal
loop.main(arguments, lsd_trainer=lsd_trainer)
