"""A timm ViT trained end to end with the transformer recipe: 2 epochs of LSD on the embedded digits with
AdamW, linear warm-up + cosine per update (timm's) and gradient clipping (timm's tiny `test_vit`, random weights, 16 px so that it
is one patch); that run is the reference of the resume, torchrun and evaluate.py checks. Without weights and
offline, a pretrained timm name is the one-line error before any folder exists."""
import os
import pickle
import subprocess
import sys

import pytest
import torch

from conftest import clean_environment, csv_logs

pytest.importorskip('timm')

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARCH = 'timm/test_vit_normalize'
ARGS = ['--dataset', 'digits', '--arch', ARCH, '--input_size', '16', '--not_pretrained', '--loss', 'margin_lsd',
        '--batch_mining', 'distance', '--kd_alpha', '50', '--kd_tau', '1', '--n_epochs', '2', '--bs', '40',
        '--samples_per_class', '4', '--embed_dim', '8', '--lr', '0.001', '--optim', 'adamw', '--decay', '0.05',
        '--scheduler', 'cosine', '--warmup_epochs', '1', '--clip_grad', '1', '--kernels', '0', '--seed', '0',
        '--no_train_metrics', '--no_plots', '--evaluation_metrics', 'e_recall@1', '--savename', 'run']


def run(*command, env=None):
    return subprocess.run([sys.executable] + list(command), cwd=ROOT, capture_output=True, text=True,
                          env=clean_environment(**(env or {})), timeout=600)


def column(folder, file_name, name):
    rows = csv_logs(folder)[file_name]
    return [float(row[rows[0].index(name)]) for row in rows[1:]]


@pytest.fixture(scope='module')
def straight(tmp_path_factory):
    """(run folder, stdout) of the uninterrupted 2-epoch run."""
    save_path = tmp_path_factory.mktemp('timm_straight')
    done = run('main.py', *ARGS, '--save_path', str(save_path))
    assert done.returncode == 0, done.stderr[-3000:]
    assert os.listdir(save_path / 'digits') == ['run']
    return str(save_path / 'digits' / 'run'), done.stdout


def test_lsd_on_a_timm_vit_with_adamw_cosine_and_clipping(straight):
    folder, stdout = straight
    with open(os.path.join(folder, 'hypa.pkl'), 'rb') as handle:
        saved = pickle.load(handle)
    assert (saved.arch, saved.optim, saved.scheduler, saved.clip_grad) == (ARCH, 'adamw', 'cosine', 1.0)
    # timm's per-update schedule: epoch 0 starts at its warm-up rate 1e-5; after the warm-up epoch's U updates
    # the cosine over the run's 2U updates is at its midpoint, half of --lr
    first_rates = [float(line.split('rates ')[1].split(' |')[0]) for line in stdout.splitlines()
                   if line.startswith('Running with learning rates')]
    assert first_rates[0] == 1e-5 and first_rates[1] == pytest.approx(0.0005, rel=1e-12)
    kd = column(folder, 'Data_Train_loss_kd.csv', 'loss_kd')
    assert kd[0] == 0 and kd[1] > 0  # the teacher (the same timm model, previous epoch) distils from epoch 1
    recall = column(folder, 'Data_Test_discriminative_e_recall.csv', 'e_recall@1')
    assert len(recall) == 2 and recall[-1] > 0.5  # 5 test digits: chance is about 0.2


def test_kill_and_resume_equals_the_uninterrupted_run(straight, tmp_path):
    """AdamW's moments, the cosine schedule's position and the teacher snapshot all survive the resume."""
    folder_a, _ = straight
    killed = run('tests/kill_during_epoch.py', '1', '3', *ARGS, '--save_path', str(tmp_path))
    assert killed.returncode == -9, killed.stderr[-2000:]
    folder_b = str(tmp_path / 'digits' / 'run')
    resumed = run('main.py', '--resume', folder_b)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    logs_a, logs_b = csv_logs(folder_a), csv_logs(folder_b)
    assert set(logs_a) == set(logs_b)
    for name in set(logs_a) - {'Data_Train_time.csv'}:
        assert logs_a[name] == logs_b[name], name
    state_a = torch.load(os.path.join(folder_a, 'resume_state.pth.tar'), weights_only=False)
    state_b = torch.load(os.path.join(folder_b, 'resume_state.pth.tar'), weights_only=False)
    assert all(torch.equal(state_a['model'][key], state_b['model'][key]) for key in state_a['model'])
    assert state_a['scheduler'] == state_b['scheduler']


def test_torchrun_two_ranks_train_what_one_process_trains(straight, tmp_path):
    """LayerNorm only: nothing to synchronise; the first step's global-batch gradient (logged before clipping)
    is the single process's to float32 rounding, and there is one run folder."""
    folder_one, _ = straight
    command = ['-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2', 'main.py']
    two = run(*command, *ARGS, '--save_path', str(tmp_path))
    assert two.returncode == 0, two.stderr[-3000:]
    assert os.listdir(tmp_path / 'digits') == ['run']
    folder_two = str(tmp_path / 'digits' / 'run')
    steps_one = column(folder_one, 'Data_Model Grad_L2.csv', 'Grad L2')
    steps_two = column(folder_two, 'Data_Model Grad_L2.csv', 'Grad L2')
    assert len(steps_one) == len(steps_two) > 20
    assert steps_two[0] == pytest.approx(steps_one[0], rel=1e-5)
    assert column(folder_two, 'Data_Test_discriminative_e_recall.csv', 'e_recall@1')[-1] > 0.5


def test_evaluate_rebuilds_the_timm_model_from_the_saved_options(straight):
    """The checkpoint of the best epoch, re-embedded in this process: the recall training logged (up to a
    query or two, float32 rounding between processes)."""
    from evaluation import checkpoint_eval
    folder, _ = straight
    result = checkpoint_eval.main(['--checkpoint', folder, '--evaluation_metrics', 'e_recall@1'])
    recall = column(folder, 'Data_Test_discriminative_e_recall.csv', 'e_recall@1')
    assert abs(result['metrics']['discriminative']['e_recall@1'] - recall[result['epoch']]) <= 0.003, result


def test_offline_without_weights_is_a_one_line_error_before_any_folder(tmp_path, monkeypatch, capsys):
    """HF_HUB_OFFLINE=1 and an empty cache, in this process: huggingface_hub read the variable when it was
    imported, so its parsed value and the cache folder are set where it reads them at download time."""
    import huggingface_hub.constants
    from training import loop
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    monkeypatch.setattr(huggingface_hub.constants, 'HF_HUB_OFFLINE', True)
    monkeypatch.setattr(huggingface_hub.constants, 'HF_HUB_CACHE', str(tmp_path / 'hf'))
    monkeypatch.delenv('DML_TRACEBACK', raising=False)
    save_path = tmp_path / 'runs'
    with pytest.raises(SystemExit) as stop:
        loop.main(['--dataset', 'digits', '--arch', ARCH, '--input_size', '16', '--kernels', '0',
                   '--save_path', str(save_path)])
    assert stop.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert errors[-1].startswith('error: ') and not any('Traceback' in line for line in errors), errors
    assert '--not_pretrained' in errors[-1] and '--pretrained_weights' in errors[-1] and ARCH in errors[-1]
    assert not save_path.exists()
