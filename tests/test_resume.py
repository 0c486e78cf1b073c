"""A run SIGKILLed during epoch 3 and resumed equals an uninterrupted 3-epoch run."""
import glob
import os
import subprocess
import sys

import torch

from conftest import THREE_EPOCH_RUN_ARGS, csv_logs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARGS = THREE_EPOCH_RUN_ARGS   # the shared uninterrupted run (tests/conftest.py) is trained with these


def run(*args):
    return subprocess.run([sys.executable] + list(args), cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_kill_and_resume_equals_uninterrupted(tmp_path, three_epoch_run):
    killed = run('tests/kill_during_epoch.py', '2', '3', *ARGS, '--save_path', str(tmp_path / 'b'),
                 '--savename', 'run')
    assert killed.returncode == -9
    folder_b = str(tmp_path / 'b' / 'digits' / 'run')
    assert torch.load(os.path.join(folder_b, 'resume_state.pth.tar'), weights_only=False)['epoch'] == 1
    assert not glob.glob(os.path.join(folder_b, '**', '.*.tmp'), recursive=True)
    resumed = run('main.py', '--resume', folder_b)
    assert resumed.returncode == 0, resumed.stderr[-2000:]

    folder_a = three_epoch_run
    logs_a, logs_b = csv_logs(folder_a), csv_logs(folder_b)
    assert set(logs_a) == set(logs_b)
    timing = {'Data_Train_time.csv'}
    for name in set(logs_a) - timing:
        assert logs_a[name] == logs_b[name], name
    assert len(logs_b['Data_Train_epochs.csv']) == 4 and len(logs_b['Data_Train_time.csv']) == 4
    for name in ['checkpoint_Test_discriminative_e_recall@1.pth.tar', 'training_summary.txt']:
        assert os.path.isfile(os.path.join(folder_b, name))
    state_a = torch.load(os.path.join(folder_a, 'resume_state.pth.tar'), weights_only=False)
    state_b = torch.load(os.path.join(folder_b, 'resume_state.pth.tar'), weights_only=False)
    assert all(torch.equal(state_a['model'][k], state_b['model'][k]) for k in state_a['model'])
    betas = [k for k in state_a['criterion'] if k.endswith('beta')]
    assert betas and all(torch.equal(state_a['criterion'][k], state_b['criterion'][k]) for k in betas)
