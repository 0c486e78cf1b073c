"""A full disk (or any failed write) on a file of a run, of evaluate.py's exports or of the sweep state: one
line naming the file and the error, a non-zero exit, the last completed epoch intact, the resume command.

The failing write is injected: the file handle of `utilities.atomic` takes part of the bytes, then raises
ENOSPC, as a filesystem that fills up does (torch.save then reports a RuntimeError whose context is the
OSError). Training steps are stubbed where only the writes matter, so each case costs a start-up.
"""
import builtins
import errno
import glob
import json
import os
import pickle
import re
import sys

import pytest
import torch

from evaluation import checkpoint_eval
from training import engine, loop
from utilities import atomic

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REAL_OPEN = builtins.open
DIGITS = ['--dataset', 'digits', '--arch', 'resnet18_normalize', '--not_pretrained', '--bs', '40',
          '--samples_per_class', '4', '--kernels', '0', '--embed_dim', '8', '--seed', '0', '--loss', 'margin_lsd',
          '--batch_mining', 'distance', '--kd_alpha', '20', '--evaluation_metrics', 'e_recall@1',
          '--no_train_metrics', '--progress', 'off', '--savename', 'run']


class FullDisk:
    """A file handle on a disk that fills up after `room` bytes."""

    def __init__(self, handle, room=8):
        self.handle, self.room = handle, room

    def write(self, data):
        if len(data) > self.room:
            self.handle.write(data[:self.room])
            self.room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.handle.write(data)

    def __getattr__(self, name):
        return getattr(self.handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self.handle.__exit__(*exc)


def fill_disk_at(monkeypatch, pattern, nth=1):
    """The `nth` atomic write of a file whose name matches `pattern` (and every later one) fails."""
    seen = []

    def failing_open(path, mode='r', **kwargs):
        handle = REAL_OPEN(path, mode, **kwargs)
        if re.search(pattern, os.path.basename(path).lstrip('.')):   # the temporary file is '.<name>.<random>.tmp'
            seen.append(path)
            if len(seen) >= nth:
                return FullDisk(handle)
        return handle
    monkeypatch.setattr(atomic, 'open', failing_open, raising=False)
    return seen


class FixedEmbedder:
    """Stands in for evaluation.Embedder: seeded random features for the loader's labels, no forward pass."""
    world = None

    def __init__(self, model, *args, **kwargs):
        self.model = model

    def __call__(self, loader, evaltypes):
        dataset = getattr(loader, 'dataset', loader)
        labels = torch.tensor([label for _, label in dataset.image_list])
        features = torch.randn(len(labels), 8, generator=torch.Generator().manual_seed(0))
        return labels, {evaltype: features for evaltype in evaltypes}, torch.arange(len(labels))


def stub_training(monkeypatch):
    """Epochs that only report a loss and evaluations without a forward pass: what is checked here is what
    happens around the writes."""
    import evaluation

    def train_one_epoch(model, objective, *args, progress=None, **kwargs):
        if progress is not None:
            progress.close()
        return {'loss': 0.5}, 0.01
    monkeypatch.setattr(engine, 'train_one_epoch', train_one_epoch)
    monkeypatch.setattr(evaluation, 'Embedder', FixedEmbedder)


def train(argv, capsys):
    with pytest.raises(SystemExit) as stop:
        loop.main(argv)
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith('error:')]
    assert len(errors) == 1, errors
    return stop.value.code, errors[0]


def leftovers(folder):
    return [name for _, _, files in os.walk(folder) for name in files if name.endswith('.tmp')]


def resume_epoch(folder):
    return torch.load(os.path.join(folder, 'resume_state.pth.tar'), weights_only=False)['epoch']


def test_the_atomic_writer_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    path = str(tmp_path / 'checkpoint.pth.tar')
    torch.save({'old': 1}, path)
    fill_disk_at(monkeypatch, 'checkpoint')
    with pytest.raises(atomic.WriteError) as failure:
        atomic.atomic_torch_save({'weights': torch.zeros(10000)}, path)
    assert str(failure.value) == 'cannot write {}: No space left on device (errno 28, ENOSPC)'.format(path)
    assert isinstance(failure.value, OSError) and failure.value.errno == errno.ENOSPC
    assert torch.load(path) == {'old': 1} and not leftovers(str(tmp_path))


def test_errors_that_are_not_the_system_s_stay_as_they_are(tmp_path):
    with pytest.raises((pickle.PicklingError, AttributeError)):
        atomic.atomic_pickle_dump(lambda: None, str(tmp_path / 'x.pkl'))
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize('pattern, nth, last_saved', [
    (r'^Data_Train_loss\.csv', 2, 0),   # a CSV log of epoch 1
    (r'^Graph_Train_loss\.svg', 2, 0),  # a progression plot of epoch 1
    ('^resume_state', 2, 0),            # the resume state of epoch 1
    ('^checkpoint_Test', 1, 1),         # the checkpoint of epoch 2, the first evaluated one
    ('^training_summary', 1, 2),        # the summary after the last epoch
])
def test_a_full_disk_during_training_is_one_line_with_the_resume_command(pattern, nth, last_saved, tmp_path,
                                                                         monkeypatch, capsys):
    stub_training(monkeypatch)
    fill_disk_at(monkeypatch, pattern, nth)
    code, line = train(DIGITS + ['--n_epochs', '3', '--evaluate_every', '3', '--save_path', str(tmp_path)], capsys)
    folder = str(tmp_path / 'digits' / 'run')
    assert code == loop.EXIT_WRITE_ERROR
    assert re.match(r'error: cannot write {}/(\S+/)?{}\S*: No space left on device \(errno 28, ENOSPC\); epoch {} \(the '
                    r'last completed one\) is saved and no file is half-written; fix that, then resume with: '
                    r'python main.py --resume {}$'.format(re.escape(folder), pattern[1:], last_saved,
                                                          re.escape(folder)), line), line
    assert resume_epoch(folder) == last_saved and not leftovers(folder)


def test_after_a_full_disk_the_resume_command_finishes_the_run(tmp_path, monkeypatch, capsys):
    stub_training(monkeypatch)
    fill_disk_at(monkeypatch, '^resume_state', 2)
    train(DIGITS + ['--n_epochs', '2', '--evaluate_every', '2', '--save_path', str(tmp_path)], capsys)
    folder = str(tmp_path / 'digits' / 'run')
    monkeypatch.setattr(atomic, 'open', REAL_OPEN, raising=False)
    loop.main(['--resume', folder])
    assert resume_epoch(folder) == 1 and os.path.isfile(os.path.join(folder, 'training_summary.txt'))


def test_a_full_disk_at_start_up_names_hypa_pkl(tmp_path, monkeypatch, capsys):
    fill_disk_at(monkeypatch, '^hypa')
    code, line = train(DIGITS + ['--n_epochs', '1', '--save_path', str(tmp_path)], capsys)
    assert code == 2
    assert line == 'error: cannot write {}/digits/run/hypa.pkl: No space left on device (errno 28, ENOSPC)'.format(
        tmp_path)


@pytest.fixture(scope='module')
def evaluated_run(tmp_path_factory):
    """A run whose one epoch was evaluated (training stubbed): it has a checkpoint for evaluate.py."""
    folder = tmp_path_factory.mktemp('evaluated')
    patch = pytest.MonkeyPatch()
    stub_training(patch)
    loop.main(DIGITS + ['--n_epochs', '1', '--save_path', str(folder)])
    patch.undo()
    return str(folder / 'digits' / 'run')


@pytest.mark.parametrize('flag, name', [('--export_embeddings', 'out.npz'), ('--json', 'out.json')])
def test_evaluate_exports_on_a_full_disk(flag, name, evaluated_run, tmp_path, monkeypatch, capsys):
    stub_training(monkeypatch)
    fill_disk_at(monkeypatch, re.escape(name))
    target = str(tmp_path / name)
    with pytest.raises(SystemExit) as stop:
        checkpoint_eval.main(['--checkpoint', evaluated_run, flag, target])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith('error:')]
    assert stop.value.code == 2
    assert errors == ['error: cannot write {}: No space left on device (errno 28, ENOSPC)'.format(target)]
    assert not os.path.exists(target) and not leftovers(str(tmp_path))


FAKE_TRAINER = '''
import os, sys, time
sys.path.insert(0, {root!r})
import parameters
opt = parameters.read_arguments(sys.argv[1:])
folder = opt.resume or os.path.join(opt.save_path, opt.dataset, opt.savename)
os.makedirs(folder, exist_ok=True)
for epoch in range(opt.n_epochs):
    time.sleep(opt.lr)
    open(os.path.join(folder, 'resume_state.pth.tar'), 'w').write(str(epoch))
open(os.path.join(folder, 'training_summary.txt'), 'w').write('done')
'''


def trainer_processes(script):
    found = []
    for pid in filter(str.isdigit, os.listdir('/proc')):
        try:
            with REAL_OPEN('/proc/{}/cmdline'.format(pid), 'rb') as handle:
                command = handle.read()
            with REAL_OPEN('/proc/{}/stat'.format(pid)) as handle:
                zombie = handle.read().rsplit(')', 1)[1].split()[0] == 'Z'
        except OSError:
            continue
        if script.encode() in command and not zombie:
            found.append(pid)
    return found


def test_the_sweep_state_on_a_full_disk_stops_the_runs_and_the_same_command_resumes(tmp_path, monkeypatch,
                                                                                    capsys):
    from utilities.sweep.__main__ import EXIT_WRITE_ERROR, main
    trainer = tmp_path / 'trainer.py'
    trainer.write_text(FAKE_TRAINER.format(root=ROOT))
    commands = tmp_path / 'runs.sh'
    commands.write_text('{} {} --dataset digits --seed 0 --n_epochs 4 --lr 0.05\n'.format(sys.executable, trainer))
    folder = str(tmp_path / 'sweep')
    argv = [str(commands), '--slots', '1', '--sweep_dir', folder, '--grace', '10']
    fill_disk_at(monkeypatch, '^sweep_state', 4)   # plan, triage, run starting, then its pid: fails
    assert main(argv) == EXIT_WRITE_ERROR
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith('error:')]
    assert errors == ['error: cannot write {}/sweep_state.json: No space left on device (errno 28, ENOSPC); '
                      'the runs in flight were stopped, rerun the same command to resume once that is fixed.'
                      .format(folder)]
    with REAL_OPEN(os.path.join(folder, 'sweep_state.json')) as handle:
        assert [r['status'] for r in json.load(handle)['runs'].values()] == ['running']
    assert not glob.glob(os.path.join(folder, 'runs', '*', '*', 'training_summary.txt'))
    assert not trainer_processes(str(trainer)), 'the run in flight was stopped'
    monkeypatch.setattr(atomic, 'open', REAL_OPEN, raising=False)
    assert main(argv) == 0
    with REAL_OPEN(os.path.join(folder, 'sweep_state.json')) as handle:
        assert [r['status'] for r in json.load(handle)['runs'].values()] == ['done']
