"""End-to-end behaviour of the two trainers on the embedded digits dataset: outputs, logs, LSD identities."""
import csv
import glob
import os
import pickle
import subprocess
import sys

import pytest
import torch

from training import loop
from conftest import TINY_NETWORK, run_trainer_in_process

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAST = ['--dataset', 'digits', *TINY_NETWORK, '--not_pretrained', '--bs', '40',
        '--samples_per_class', '4', '--kernels', '0', '--embed_dim', '32', '--lr', '0.001', '--seed', '3']


def train(tmp_path, *extra, lsd=True, n_epochs=2, savename='run'):
    argv = FAST + ['--n_epochs', str(n_epochs), '--save_path', str(tmp_path), '--savename', savename] + list(extra)
    return loop.main(argv, lsd_trainer=lsd)


def train_in_subprocess(tmp_path, *extra, lsd=True, n_epochs=2, savename='run'):
    """A separate process per run, as users run the trainers: float results of CPU kernels may depend on
    the process's allocation history, so exact comparisons are made between fresh processes."""
    script = 'main.py' if lsd else 'main_original.py'
    result = run_script(script, *FAST, '--n_epochs', str(n_epochs), '--save_path', str(tmp_path),
                        '--savename', savename, *extra)
    assert result.returncode == 0, result.stderr[-3000:]
    return os.path.join(str(tmp_path), 'digits', savename)


def digits_iterations_per_epoch():
    import datasets
    import parameters
    opt = parameters.read_arguments(FAST)
    return len(datasets.select('digits', opt, '')['training'].image_list) // opt.bs


def read_csv(path):
    with open(path, newline='') as handle:
        return list(csv.reader(handle))


def metric_rows(run_folder, log_key='Test'):
    """Every metric CSV of one evaluated set, as {file name: rows}."""
    files = sorted(glob.glob(os.path.join(run_folder, 'CSV_Logs', 'Data_{}_discriminative_*.csv'.format(log_key))))
    return {os.path.basename(f): read_csv(f) for f in files}


@pytest.fixture(scope='module')
def baseline_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('baseline')
    return train_in_subprocess(tmp, '--loss', 'triplet', '--batch_mining', 'distance', lsd=False)


@pytest.fixture(scope='module')
def lsd_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('lsd')
    run = train(tmp, '--loss', 'triplet_lsd', '--batch_mining', 'distance', '--kd_alpha', '50', '--no_train_metrics',
                '--no_plots')
    return run


def test_baseline_writes_every_output_file(baseline_run):
    folder = baseline_run
    assert folder.endswith('/digits/run')
    for name in ['Parameter_Info.txt', 'hypa.pkl', 'training_summary.txt',
                 'checkpoint_Test_discriminative_e_recall@1.pth.tar',
                 'checkpoint_Train_discriminative_e_recall@1.pth.tar']:
        assert os.path.isfile(os.path.join(folder, name)), name
    iterations = digits_iterations_per_epoch()
    assert len(read_csv(os.path.join(folder, 'CSV_Logs', 'Data_Model Grad_L2.csv'))) == 1 + 2 * iterations
    assert read_csv(os.path.join(folder, 'CSV_Logs', 'Data_Train_epochs.csv')) == [['epochs'], ['0'], ['1']]
    assert read_csv(os.path.join(folder, 'CSV_Logs', 'Data_Test_discriminative_e_recall.csv'))[0] == \
        ['e_recall@1', 'e_recall@5', 'e_recall@10']
    assert os.path.isfile(os.path.join(folder, 'Progression_Plots', 'Graph_Test_discriminative_e_recall.svg'))
    assert not glob.glob(os.path.join(os.path.dirname(folder), '**', 'net_*.pth'), recursive=True)
    assert not os.path.exists(os.path.join(os.path.dirname(folder), 'Sample_Group'))


def test_parameter_info_and_hypa_hold_the_options(baseline_run):
    folder = baseline_run
    with open(os.path.join(folder, 'hypa.pkl'), 'rb') as handle:
        saved = pickle.load(handle)
    assert saved.loss == 'triplet' and saved.save_path == folder and saved.n_classes == 5
    text = open(os.path.join(folder, 'Parameter_Info.txt')).read()
    assert text.startswith('dataset\n\tdigits\n\n') and '\nfc_lr\n\t-1\n\n' in text


def test_checkpoint_content(baseline_run):
    folder = baseline_run
    checkpoint = torch.load(os.path.join(folder, 'checkpoint_Test_discriminative_e_recall@1.pth.tar'),
                            weights_only=False)
    assert set(checkpoint) == {'state_dict', 'opt', 'progress', 'aux'}
    assert 'model.last_linear.weight' in checkpoint['state_dict']
    logged = [float(r[0]) for r in read_csv(os.path.join(folder, 'CSV_Logs',
                                                         'Data_Test_discriminative_e_recall.csv'))[1:]]
    best_epoch = logged.index(max(logged))      # written on strict improvement, before that epoch's log
    groups = checkpoint['progress']['Test'].groups
    if best_epoch == 0:
        assert 'discriminative_e_recall' not in groups
    else:
        assert groups['discriminative_e_recall']['e_recall@1']['content'] == pytest.approx(logged[:best_epoch])
    assert checkpoint['opt'].epoch == best_epoch


def test_training_summary_has_one_line_per_metric_group(baseline_run):
    lines = open(os.path.join(baseline_run, 'training_summary.txt')).read().splitlines()
    assert lines[0].startswith('Training Time: ') and lines[1] == '---------------'
    assert 'TRAIN metrics: loss: loss: ' in lines[2]
    assert any(line.startswith('TEST metrics: discriminative_e_recall: e_recall@1: ') for line in lines)
    assert any(line.startswith('MODEL GRAD metrics: L2') for line in lines)


def test_lsd_logs_rank_and_kd_and_weight_is_zero_at_epoch_0(lsd_run):
    folder = lsd_run.context.run_folder
    total = read_csv(os.path.join(folder, 'CSV_Logs', 'Data_Train_loss.csv'))
    rank = read_csv(os.path.join(folder, 'CSV_Logs', 'Data_Train_loss_rank.csv'))
    kd = read_csv(os.path.join(folder, 'CSV_Logs', 'Data_Train_loss_kd.csv'))
    assert total[1] == rank[1] and float(kd[1][0]) == 0.0       # epoch 0: no teacher, weight 0
    weight = 1 / 2 * 50 * 1.0 ** 2                              # (e/N)·α·τ² at epoch 1
    assert float(kd[2][0]) > 0
    assert float(total[2][0]) == pytest.approx(float(rank[2][0]) + weight * float(kd[2][0]), rel=1e-5)


def test_lsd_snapshot_equals_the_student_after_the_last_epoch(lsd_run):
    student = lsd_run.model.state_dict()
    assert set(lsd_run.teacher_snapshot) == set(student)
    assert all(torch.equal(lsd_run.teacher_snapshot[k], student[k]) for k in student)


def test_alpha_zero_lsd_reproduces_the_baseline(tmp_path, baseline_run):
    folder = train_in_subprocess(tmp_path, '--loss', 'triplet_lsd', '--batch_mining', 'distance', '--kd_alpha', '0',
                                 '--no_plots')
    for log_key in ('Test', 'Train'):
        baseline = metric_rows(baseline_run, log_key)
        assert baseline and metric_rows(folder, log_key) == baseline
    assert read_csv(os.path.join(folder, 'CSV_Logs', 'Data_Train_loss_rank.csv'))[1:] == \
        read_csv(os.path.join(baseline_run, 'CSV_Logs', 'Data_Train_loss.csv'))[1:]


def test_main_py_accepts_a_plain_loss_and_wandb_offline_never_writes_the_key(tmp_path, baseline_run):
    """main.py with a loss without _lsd trains the baseline (the baseline's first epoch, metric for metric),
    logging to W&B offline; the key given on the command line is nowhere on disk or in the output, and the
    run folder is named after the group. With --no_plots: no plot, the same logged values."""
    secret = 'f00dfeedcafe1234567890abcdef0123456789ab'
    env = dict(os.environ, WANDB_MODE='offline', WANDB_DIR=str(tmp_path), WANDB_SILENT='true', PYTHONWARNINGS='ignore')
    args = FAST + ['--n_epochs', '1', '--save_path', str(tmp_path), '--loss', 'triplet', '--batch_mining', 'distance',
                   '--log_online', '--wandb_key', secret, '--group', 'G', '--no_plots']
    result = subprocess.run([sys.executable, 'main.py'] + args, cwd=ROOT, capture_output=True, text=True, env=env,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    folder = str(tmp_path / 'digits' / 'G_s3')
    first_epoch = {k: v[:2] for k, v in metric_rows(baseline_run).items()}
    assert metric_rows(folder) == first_epoch
    assert not os.path.exists(os.path.join(folder, 'Progression_Plots'))
    assert os.path.isdir(os.path.join(baseline_run, 'Progression_Plots'))
    assert not os.path.exists(os.path.join(folder, 'CSV_Logs', 'Data_Train_loss_kd.csv'))
    assert os.path.isfile(os.path.join(folder, 'checkpoint_Test_discriminative_e_recall@1.pth.tar'))
    assert glob.glob(str(tmp_path / 'wandb' / 'offline-run-*'))
    for path in glob.glob(str(tmp_path / '**' / '*'), recursive=True):
        if os.path.isfile(path):
            with open(path, 'rb') as handle:
                assert secret.encode() not in handle.read(), path
    assert secret not in result.stdout + result.stderr


def test_fc_lr_puts_the_embedding_layer_in_its_own_group():
    import architectures
    import parameters
    from training import optimization
    opt = parameters.read_arguments(['--arch', 'resnet18', '--not_pretrained', '--fc_lr', '0.001'])
    model = architectures.select(opt.arch, opt)
    groups = optimization.network_parameter_groups(model, opt)
    head = {id(p) for p in model.model.last_linear.parameters()}
    assert [g['lr'] for g in groups] == [opt.lr, 0.001]
    assert {id(p) for p in groups[1]['params']} == head
    assert not head & {id(p) for p in groups[0]['params']}
    assert len(groups[0]['params']) + len(groups[1]['params']) == len(list(model.parameters()))


def run_script(script, *args):
    env = dict(os.environ, PYTHONWARNINGS='ignore')
    return subprocess.run([sys.executable, script] + list(args), cwd=ROOT, capture_output=True, text=True,
                          env=env, timeout=300)


@pytest.mark.parametrize('script,args,needle,process', [
    ('main.py', ['--bs', '10', '--samples_per_class', '3'], 'Batchsize needs to fit', 'this'),
    ('main_original.py', ['--bs', '10', '--samples_per_class', '3'], 'Batchsize needs to fit', 'this'),
    ('main_original.py', ['--loss', 'triplet_lsd'], 'main.py', 'fresh'),
    ('main.py', ['--arch', 'vgg16'], '--arch', 'this'),
    ('main.py', ['--optim', 'rmsprop'], 'Optimizer rmsprop not available', 'this'),
    ('main.py', ['--storage_metrics', 'nmi', '--evaluation_metrics', 'e_recall@1'], '--storage_metrics', 'this'),
    ('main.py', ['--dataset', 'cub200', '--arch', 'resnet18', '--not_pretrained'], 'cub200', 'this'),
])
def test_bad_input_is_one_line_and_creates_nothing(tmp_path, script, args, needle, process):
    """main_original.py in a fresh process once (main.py: tests/test_bad_input.py's truncated hypa.pkl); the
    other cases call the same main() in this process."""
    args = ['--save_path', str(tmp_path / 'out'), '--source', str(tmp_path / 'nodata'), '--kernels', '0', *args]
    result = run_script(script, *args) if process == 'fresh' else run_trainer_in_process(args, script)
    assert result.returncode == 2
    error_lines = [line for line in result.stderr.splitlines() if line.startswith('error:')]
    assert len(error_lines) == 1 and needle in error_lines[0] and 'Traceback' not in result.stderr
    assert not os.path.exists(tmp_path / 'out' / 'cub200' / 'Sample_Group')
    assert not glob.glob(str(tmp_path / 'out' / '*' / '*'))
