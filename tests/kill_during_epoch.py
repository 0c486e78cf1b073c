"""Test driver: run a trainer but send a signal to the process in the middle of a given epoch.

Usage: python tests/kill_during_epoch.py <epoch> <batch> [signal=KILL|INT|TERM|NAN] [rank=R] [baseline] <trainer arguments...>
The signal goes out right after the gradient of iteration <batch> (1-based) of epoch <epoch>; NAN sets
every weight to NaN there instead.
"""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from training import engine, loop  # noqa: E402

kill_epoch, kill_batch = int(sys.argv[1]), int(sys.argv[2])
arguments = sys.argv[3:]
# options of this driver are written NAME=VALUE, so that torchrun does not take them for its own flags
signal_name, only_rank, lsd_trainer = 'KILL', None, True
while arguments and arguments[0].split('=')[0] in ('signal', 'rank', 'baseline'):
    name, _, value = arguments.pop(0).partition('=')
    if name == 'signal':
        signal_name = value
    elif name == 'rank':  # under torchrun: only this rank receives the signal
        only_rank = int(value)
    else:
        lsd_trainer = False
if signal_name == 'INT':
    # A process started from a background job or nohup inherits SIGINT ignored, and Python then keeps it
    # ignored: restore the default (KeyboardInterrupt) so the driver's SIGINT acts as a Ctrl-C would,
    # however the test suite itself was started.
    signal.signal(signal.SIGINT, signal.default_int_handler)
state = {'epoch': None, 'calls': 0}
original_train_one_epoch = engine.train_one_epoch
original_gradient_statistics = engine.gradient_statistics


def train_one_epoch_recording_epoch(model, objective, optimizer, loader, epoch, **kwargs):
    state['epoch'], state['calls'] = epoch, 0
    return original_train_one_epoch(model, objective, optimizer, loader, epoch, **kwargs)


def gradient_statistics_then_signal(parameters):
    parameters = list(parameters)
    if state['epoch'] == kill_epoch and (only_rank is None or int(os.environ.get('RANK', '0')) == only_rank):
        state['calls'] += 1
        if state['calls'] == kill_batch:
            if signal_name == 'NAN':  # not a signal: poison the weights, as a diverging run would
                for parameter in parameters:
                    parameter.data.fill_(float('nan'))
            else:
                print('signal {} at {:.3f}'.format(signal_name, time.time()), file=sys.stderr, flush=True)
                os.kill(os.getpid(), getattr(signal, 'SIG' + signal_name))
    return original_gradient_statistics(parameters)


engine.train_one_epoch = train_one_epoch_recording_epoch
loop.engine.train_one_epoch = train_one_epoch_recording_epoch
engine.gradient_statistics = gradient_statistics_then_signal
loop.main(arguments, lsd_trainer=lsd_trainer)
