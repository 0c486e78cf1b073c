"""Bad input, tried as a new user would: each case ends with one clear line, and nothing a user wrote is lost."""
import glob
import os
import stat
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'tests'))
import synthetic_data  # noqa: E402
from conftest import TINY_NETWORK, run_trainer_in_process  # noqa: E402

DIGITS = ['--dataset', 'digits', *TINY_NETWORK, '--not_pretrained', '--bs', '40',
          '--samples_per_class', '4', '--kernels', '0', '--embed_dim', '8', '--seed', '0',
          '--loss', 'margin_lsd', '--batch_mining', 'distance', '--kd_alpha', '20',
          '--evaluation_metrics', 'e_recall@1', '--no_train_metrics', '--no_plots']


def run(args, umask=None, env=None, script='main.py'):
    """A trainer (or, with script=None, the script given as the first argument) in a fresh process."""
    environment = dict(os.environ, PYTHONWARNINGS='ignore', **(env or {}))
    environment.pop('DML_TRACEBACK', None)
    preexec = (lambda: os.umask(umask)) if umask is not None else None
    command = [sys.executable] + ([script] if script else []) + list(args)
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                          env=environment, timeout=600, preexec_fn=preexec)


def error_lines(result):
    return [line for line in result.stderr.splitlines() if line.startswith('error:')]


def assert_one_line(result, code, *needles):
    lines = error_lines(result)
    assert result.returncode == code, result.stderr[-3000:]
    assert len(lines) == 1 and 'Traceback' not in result.stderr, result.stderr[-3000:]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_every_file_and_folder_of_a_run_is_readable_under_umask_022(finished_run):
    paths = [finished_run] + glob.glob(os.path.join(finished_run, '**', '*'), recursive=True)
    assert len(paths) > 10
    for path in paths:
        mode = stat.S_IMODE(os.stat(path).st_mode)
        assert mode == (0o755 if os.path.isdir(path) else 0o644), (path, oct(mode))


def test_resume_state_stores_the_teacher_snapshot_once(finished_run):
    """The snapshot equals the model when saved: its tensors are written once, not twice."""
    path = os.path.join(finished_run, 'resume_state.pth.tar')
    state = torch.load(path, weights_only=False)
    model_bytes = sum(v.numel() * v.element_size() for v in state['model'].values())
    assert set(state['teacher_snapshot']) == set(state['model'])
    assert all(torch.equal(state['teacher_snapshot'][k], v) for k, v in state['model'].items())
    optimizer_bytes = sum(v.numel() * v.element_size() for entry in state['optimizer']['state'].values()
                          for v in entry.values() if torch.is_tensor(v))
    # a second copy of the weights would add model_bytes (seen: 90 kB besides the weights and Adam's moments)
    assert os.path.getsize(path) < model_bytes + optimizer_bytes + model_bytes / 2


def test_diverging_training_names_epoch_and_iteration(tmp_path):
    result = run_trainer_in_process(DIGITS + ['--n_epochs', '1', '--lr', '1e12', '--save_path', str(tmp_path),
                                              '--savename', 'r'])
    line = assert_one_line(result, 3, 'diverged', 'epoch 0', 'iteration', '--lr')
    assert 'non-finite' in line


def test_divergence_after_a_completed_epoch_keeps_its_resume_state_and_checkpoints(tmp_path):
    """Weights poisoned with NaN in epoch 1: the run stops with one line, epoch 0's files stay intact."""
    result = run(['tests/kill_during_epoch.py', '1', '2', 'signal=NAN'] + DIGITS +
                 ['--n_epochs', '3', '--save_path', str(tmp_path), '--savename', 'r'], script=None)
    assert_one_line(result, 3, 'diverged', 'epoch 1')
    folder = tmp_path / 'digits' / 'r'
    state = torch.load(folder / 'resume_state.pth.tar', weights_only=False)
    assert state['epoch'] == 0
    assert all(torch.isfinite(v).all() for v in state['model'].values() if v.is_floating_point())
    checkpoint = torch.load(folder / 'checkpoint_Test_discriminative_e_recall@1.pth.tar', weights_only=False)
    assert checkpoint['opt'].epoch == 0


def test_ctrl_c_says_where_it_stopped_and_the_run_resumes(tmp_path):
    args = DIGITS + ['--n_epochs', '2', '--save_path', str(tmp_path), '--savename', 'r']
    result = run(['tests/kill_during_epoch.py', '1', '2', 'signal=INT'] + args, script=None)
    folder = str(tmp_path / 'digits' / 'r')
    assert result.returncode == 130 and 'Traceback' not in result.stderr, result.stderr[-3000:]
    stopped = [line for line in result.stderr.splitlines() if line.startswith('Stopped:')]
    assert stopped == ['Stopped: interrupted in epoch 1 after 2 iterations; resume with: python main.py '
                       '--resume {}.'.format(folder)]
    resumed = run(['--resume', folder])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    with open(os.path.join(folder, 'CSV_Logs', 'Data_Train_epochs.csv')) as handle:
        assert handle.read().split() == ['epochs', '0', '1']


def test_embed_dim_zero_is_a_start_up_error(tmp_path):
    result = run_trainer_in_process(DIGITS + ['--embed_dim', '0', '--save_path', str(tmp_path)])
    assert_one_line(result, 2, '--embed_dim')
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize('kernels', ['0', '1'])
def test_corrupt_image_names_the_file(tmp_path, kernels):
    synthetic_data.make_cub200(str(tmp_path / 'data'), n_classes=4, per_class=4)
    victim = sorted(glob.glob(str(tmp_path / 'data' / 'cub200' / 'images' / '001.*' / '*.jpg')))[0]
    with open(victim, 'wb') as handle:
        handle.write(b'\xff\xd8 this is not a JPEG')
    args = ['--dataset', 'cub200', '--source', str(tmp_path / 'data'), *TINY_NETWORK, '--not_pretrained',
            '--bs', '4', '--samples_per_class', '2', '--kernels', kernels, '--embed_dim', '8', '--loss', 'triplet',
            '--n_epochs', '1', '--evaluation_metrics', 'e_recall@1', '--save_path', str(tmp_path / 'out'),
            '--savename', 'r']
    # read in this process (kernels 0) and in a DataLoader worker process (kernels 1)
    script = 'main_original.py'
    result = run(args, script=script) if kernels == '1' else run_trainer_in_process(args, script)
    assert_one_line(result, 2, victim)


@pytest.mark.parametrize('victim', ['hypa.pkl', 'resume_state.pth.tar'])
def test_resume_of_a_truncated_file_names_it(finished_run, tmp_path, victim):
    import shutil
    copy = str(tmp_path / 'digits' / 'copy')
    shutil.copytree(finished_run, copy)
    path = os.path.join(copy, victim)
    with open(path, 'rb') as handle:
        head = handle.read(200)
    with open(path, 'wb') as handle:
        handle.write(head)
    result = run(['--resume', copy]) if victim == 'hypa.pkl' else run_trainer_in_process(['--resume', copy])
    assert_one_line(result, 2, path, 'unreadable')


def test_missing_dataset_with_log_online_creates_no_folder_and_no_wandb_run(tmp_path, monkeypatch):
    for name, value in {'WANDB_MODE': 'offline', 'WANDB_DIR': str(tmp_path / 'wandb_dir'),
                        'WANDB_SILENT': 'true'}.items():
        monkeypatch.setenv(name, value)
    result = run_trainer_in_process(['--dataset', 'cub200', '--source', str(tmp_path / 'nodata'), '--arch',
                                     'resnet18', '--not_pretrained', '--kernels', '0', '--log_online', '--group',
                                     'G', '--save_path', str(tmp_path / 'out')])
    assert_one_line(result, 2, 'cub200')
    assert not os.path.exists(tmp_path / 'out') and not os.path.exists(tmp_path / 'wandb_dir')


def test_unwritable_save_path_names_the_flag(tmp_path):
    result = run_trainer_in_process(DIGITS + ['--n_epochs', '1', '--save_path', '/proc/forbidden'])
    assert_one_line(result, 2, '--save_path /proc/forbidden')
