"""Progress (--progress): bars on a terminal, plain lines in logs, nothing when off — and never a changed
number or random stream."""
import io
import random

import numpy as np
import pytest
import torch

import batch_mining
import criteria
import evaluation
import parameters
from training import engine
from runtime.precision import Precision
from utilities import progress as progress_module
from utilities.progress import Progress


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class Normalised(torch.nn.Module):
    def forward(self, x):
        return torch.nn.functional.normalize(x, dim=-1)


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_auto_is_a_bar_on_a_terminal_and_plain_lines_elsewhere():
    assert progress_module.resolve('auto', Terminal()) == 'bar'
    assert progress_module.resolve('auto', io.StringIO()) == 'log'
    assert progress_module.resolve('off', Terminal()) == 'off'


def test_log_mode_writes_a_plain_line_every_interval_with_the_running_loss():
    stream, clock = io.StringIO(), FakeClock()
    progress = Progress('log', 10, 'Epoch 2 (Train)', stream=stream, clock=clock)
    for step in range(10):
        clock.now += 10.0   # a step every 10 s: one line every third step
        progress.update(step, {'loss': torch.tensor(float(step))})
    progress.close()
    lines = stream.getvalue().splitlines()
    assert lines == ['Epoch 2 (Train): 3/10 it (30 %), 0:00:30, ~0:01:10 left, loss 2.0000',
                     'Epoch 2 (Train): 6/10 it (60 %), 0:01:00, ~0:00:40 left, loss 3.5000',
                     'Epoch 2 (Train): 9/10 it (90 %), 0:01:30, ~0:00:10 left, loss 5.0000']
    assert '\r' not in stream.getvalue()


def test_short_passes_and_off_print_nothing():
    for mode in ('log', 'off'):
        stream = io.StringIO()
        progress = Progress(mode, 5, 'Embedding', stream=stream, clock=FakeClock())
        for step in range(5):
            progress.update(step, {'loss': torch.tensor(1.0)})
        progress.close()
        assert stream.getvalue() == ''


def test_bar_mode_draws_a_tqdm_bar_with_the_loss():
    stream, clock = Terminal(), FakeClock()
    progress = Progress('bar', 4, 'Epoch 0 (Train)', stream=stream, clock=clock)
    for step in range(4):
        clock.now += 2.0
        progress.update(step, {'loss': torch.tensor(0.5)})
    progress.bar.refresh()
    text = stream.getvalue()
    progress.close()
    assert 'Epoch 0 (Train)' in text and '4/4' in text and 'loss 0.5000' in text


def test_the_flag_defaults_to_auto_and_refuses_other_values():
    assert parameters.read_arguments([]).progress == 'auto'
    with pytest.raises(SystemExit):
        parameters.read_arguments(['--progress', 'verbose'])


# ---------------------------------------------------------------------------------------------------------
# The same epoch with progress off, as bars and as log lines: equal numbers and random streams.

def tiny_epoch(mode, monkeypatch):
    """One epoch of a dropout MLP with margin + distance mining; every progress mode reads the loss at every
    step (intervals set to 0) so that any interference would show."""
    monkeypatch.setattr(progress_module, 'REFRESH_SECONDS', 0.0)
    monkeypatch.setattr(progress_module, 'LOG_INTERVAL', 0.0)
    opt = parameters.read_arguments(['--loss', 'margin', '--batch_mining', 'distance', '--embed_dim', '4'])
    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 16), torch.nn.Dropout(0.3),
                                torch.nn.Linear(16, 4), Normalised())
    miner = batch_mining.select('distance', opt)
    objective, groups = criteria.build_objective('margin', opt, 3, miner)
    optimizer = torch.optim.Adam(list(model.parameters()) + [p for g in groups for p in g['params']], lr=0.01)
    generator = torch.Generator().manual_seed(1)
    loader = [(torch.arange(12) % 3, torch.randn(12, 3, 2, 2, generator=generator), torch.arange(12))
              for _ in range(5)]
    stream = Terminal() if mode == 'bar' else io.StringIO()
    progress = Progress(mode, len(loader), 'Epoch 0 (Train)', stream=stream)
    means, _ = engine.train_one_epoch(model, objective, optimizer, loader, 0, device=torch.device('cpu'),
                                      precision=Precision('off', 'off', torch.device('cpu')),
                                      normalise=lambda images: images, progress=progress)
    embedder = evaluation.Embedder(model, torch.device('cpu'),
                                   progress=lambda total, description, unit: Progress(mode, total, description,
                                                                                      unit, stream=stream))
    _, features, _ = embedder(loader, ['discriminative'])
    streams = (torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy())
    return means, [p.detach().clone() for p in model.parameters()], features['discriminative'], streams, stream


@pytest.mark.parametrize('mode', ['bar', 'log'])
def test_progress_changes_no_number_and_no_random_stream(mode, monkeypatch):
    means_off, weights_off, features_off, streams_off, _ = tiny_epoch('off', monkeypatch)
    means, weights, features, streams, stream = tiny_epoch(mode, monkeypatch)
    assert stream.getvalue()                  # it did show something
    assert means == means_off
    assert all(torch.equal(a, b) for a, b in zip(weights, weights_off))
    assert torch.equal(features, features_off)
    assert torch.equal(streams[0], streams_off[0]) and streams[1] == streams_off[1]
    assert np.array_equal(streams[2], streams_off[2])
