"""`python -m utilities.tune`: Optuna over class-disjoint fold runs launched through utilities.sweep.

Most tests use tests/fake_trainer.py (every trainer flag, a known Val value per lr/fold/epoch, resume, exit
3 for a diverged run) so that a study's arithmetic and its resume can be checked in seconds; one test runs
the real trainer on the tiny network."""
import csv
import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, TINY_NETWORK, clean_environment
from tests.fake_trainer import fake_value
from utilities.tune.__main__ import main as tune_main

FAKE = os.path.join(ROOT, 'tests', 'fake_trainer.py')
FAKE_COMMAND = ['--', 'python', FAKE, '--dataset', 'digits', '--n_epochs', '3', '--storage_metrics', 'mAP_c',
                '--evaluation_metrics', 'mAP_c']
SPACE = ['--space', 'lr=log:1e-5:1e-1', 'kd_alpha=log:1:500']


def read_trials(folder):
    with open(os.path.join(str(folder), 'trials.csv'), newline='') as handle:
        return list(csv.DictReader(handle))


def study_trials(folder):
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    storage = JournalStorage(JournalFileBackend(os.path.join(str(folder), 'journal.log')))
    return optuna.load_study(study_name=os.path.basename(str(folder)), storage=storage).trials


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    monkeypatch.setenv('OMP_NUM_THREADS', '1')
    monkeypatch.delenv('FAKE_EPOCH_SECONDS', raising=False)
    monkeypatch.delenv('FAKE_DIVERGE_ABOVE', raising=False)


def test_the_objective_is_the_mean_of_the_fold_values_at_each_best_epoch(tmp_path):
    folder = tmp_path / 'study'
    assert tune_main([str(folder), '--trials', '2', '--folds', '2', '--slots', '2', '--no_figures'] + SPACE +
                     FAKE_COMMAND) == 0
    rows = read_trials(folder)
    assert [row['state'] for row in rows] == ['COMPLETE', 'COMPLETE']
    for row in rows:
        lr, alpha = float(row['lr']), float(row['kd_alpha'])
        expected = [fake_value(lr, alpha, fold, epoch=1) for fold in (0, 1)]   # the Val peak is at epoch 1
        assert [float(row['fold0']), float(row['fold1'])] == pytest.approx(expected)
        assert float(row['objective']) == pytest.approx(sum(expected) / 2)
        assert os.path.isfile(os.path.join(row['run_fold1'], 'training_summary.txt'))
    with open(folder / 'best.json') as handle:
        best = json.load(handle)
    assert best['value'] == pytest.approx(max(float(row['objective']) for row in rows))
    assert best['params']['lr'] == pytest.approx(float(max(rows, key=lambda r: float(r['objective']))['lr']))


def sequence(folder, seed, trials=3):
    assert tune_main([str(folder), '--trials', str(trials), '--folds', '2', '--slots', '2', '--seed', str(seed),
                      '--no_figures'] + SPACE + FAKE_COMMAND) == 0
    return [(float(row['lr']), float(row['kd_alpha'])) for row in read_trials(folder)]


def test_the_same_seed_gives_the_same_trial_sequence(tmp_path):
    first = sequence(tmp_path / 'a', seed=5)
    assert sequence(tmp_path / 'b', seed=5) == first
    assert sequence(tmp_path / 'c', seed=6) != first
    assert len(set(first)) == 3


def test_a_diverged_run_fails_its_trial_and_the_study_goes_on(tmp_path, monkeypatch):
    lrs = sorted(lr for lr, _ in sequence(tmp_path / 'reference', seed=5))
    threshold = (lrs[0] + lrs[1]) / 2   # the two larger learning rates diverge
    monkeypatch.setenv('FAKE_DIVERGE_ABOVE', repr(threshold))
    folder = tmp_path / 'diverging'
    sequence(folder, seed=5)
    states = {float(row['lr']): row['state'] for row in read_trials(folder)}
    assert states == {lr: 'COMPLETE' if lr < threshold else 'FAIL' for lr in lrs}
    assert [t.state.name for t in study_trials(folder)].count('FAIL') == 2


def test_a_killed_study_rerun_ends_with_exactly_n_trials_and_resumes_the_interrupted_one(tmp_path):
    folder = tmp_path / 'study'
    argv = [sys.executable, '-m', 'utilities.tune', str(folder), '--trials', '3', '--folds', '2', '--slots', '2',
            '--no_figures'] + SPACE + FAKE_COMMAND
    environment = clean_environment(FAKE_EPOCH_SECONDS='1')
    tuner = subprocess.Popen(argv, cwd=ROOT, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runs = folder / 'trials' / '0001' / 'runs' / 'digits'
    deadline = time.time() + 300
    while True:   # kill once trial 1's fold runs have completed an epoch but not finished
        states = [(os.path.isfile(run / 'resume_state.pth.tar'), os.path.isfile(run / 'training_summary.txt'))
                  for run in runs.glob('*')] if runs.is_dir() else []
        if len(states) == 2 and all(epoch and not done for epoch, done in states):
            break
        assert tuner.poll() is None and time.time() < deadline, 'the tuner ended before the kill'
        time.sleep(0.1)
    tuner.send_signal(signal.SIGKILL)
    tuner.wait()
    assert [t.state.name for t in study_trials(folder)] == ['COMPLETE', 'RUNNING']
    rerun = subprocess.run(argv, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    trials = study_trials(folder)
    assert [(t.number, t.state.name) for t in trials] == [(0, 'COMPLETE'), (1, 'COMPLETE'), (2, 'COMPLETE')]
    assert 'trial 1 resumed' in rerun.stdout
    assert rerun.stdout.count('COMPLETE') == 2   # trials 1 and 2 finish in the rerun; trial 0 is not redone
    for run in runs.glob('*'):
        attempts = (run / 'attempts.txt').read_text().split()
        assert attempts[0] == 'start' and 'resume' in attempts   # continued from its last epoch
    for run in (folder / 'trials' / '0000' / 'runs' / 'digits').glob('*'):
        assert (run / 'attempts.txt').read_text().split() == ['start']
    rows = read_trials(folder)
    assert [row['state'] for row in rows] == ['COMPLETE'] * 3
    assert float(rows[1]['objective']) == pytest.approx(
        sum(fake_value(float(rows[1]['lr']), float(rows[1]['kd_alpha']), fold, 1) for fold in (0, 1)) / 2)


@pytest.mark.parametrize('argv,message', [
    (['--space', 'no_such_flag=1:2'], '--space no_such_flag=1:2: --no_such_flag is not a trainer flag'),
    (['--space', 'lr=log:1e-3:1e-4'], 'empty range'),
    (['--space', 'lr=log:0:1'], 'a log range needs LOW > 0'),
    (['--space', 'lr=1e-3'], 'expected LOW:HIGH'),
    (['--space', 'lr=log:a:b'], "'a' is not a number"),
    (['--space', 'lr'], 'expected NAME=RANGE'),
    (['--space', 'use_tv_split=0:1'], 'is a switch'),
    (['--space', 'lr=log:1e-5:1e-1', '--', 'python', 'main.py', '--lr', '0.1'], 'also fixed in the trainer command'),
    (['--space', 'lr=log:1e-5:1e-1'], 'no trainer command'),
    (['--space', 'lr=log:1e-5:1e-1', '--', 'main.py'], 'expected python <script>.py'),
    (['--space', 'lr=log:1e-5:1e-1', '--', 'python', 'main.py', '--savename', 'x'], '--savename is set by the tuner'),
    (['--space', 'lr=log:1e-5:1e-1', '--', 'python', 'main.py', '--no_such'], 'unrecognized arguments'),
    (['--space', 'lr=log:1e-5:1e-1', '--objective', 'nmi', '--', 'python', 'main.py', '--evaluation_metrics', 'mAP_c'],
     '--objective nmi: not in'),
    (['--space', 'lr=log:1e-5:1e-1', '--folds', '1', '--', 'python', 'main.py'], '--folds 1: give at least 2'),
])
def test_bad_input_is_one_line_before_any_run(tmp_path, capsys, argv, message):
    folder = tmp_path / 'study'
    slots = [] if argv[0] == '--no_slots' else ['--slots', '2']
    assert tune_main([str(folder)] + slots + argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not folder.exists()


def test_no_slots_is_one_line(tmp_path, capsys):
    assert tune_main([str(tmp_path / 's'), '--space', 'lr=log:1e-5:1e-1', '--', 'python', 'main.py']) == 2
    assert 'give --slots N' in capsys.readouterr().err


def test_a_tiny_real_study_and_its_reproduction(tmp_path):
    """The real trainer on the tiny network: fold values read from its Val logs, the objective their mean,
    then one reproduction on all training classes and the fold models' ensemble on Test."""
    folder = tmp_path / 'real'
    fixed = ['--', 'python', 'main_original.py', '--dataset', 'digits', *TINY_NETWORK, '--not_pretrained',
             '--n_epochs', '1', '--bs', '40', '--samples_per_class', '4', '--embed_dim', '8', '--kernels', '0',
             '--no_train_metrics', '--no_plots', '--tv_split_by_samples', '--storage_metrics', 'mAP_c',
             '--evaluation_metrics', 'e_recall@1', 'mAP_c', '--loss', 'margin', '--batch_mining', 'distance']
    assert tune_main([str(folder), '--trials', '1', '--folds', '2', '--slots', '2', '--reproduce', '1',
                      '--space', 'lr=log:1e-4:1e-3'] + fixed) == 0
    row = read_trials(folder)[0]
    for fold in (0, 1):
        with open(os.path.join(row['run_fold{}'.format(fold)], 'CSV_Logs',
                               'Data_Val_discriminative_mAP_c.csv')) as handle:
            assert float(row['fold{}'.format(fold)]) == pytest.approx(float(handle.read().split()[1]))
        with open(os.path.join(row['run_fold{}'.format(fold)], 'training_summary.txt')) as handle:
            assert 'Val: cross-validation fold {} of 2 (split by samples)'.format(fold) in handle.read()
    assert float(row['objective']) == pytest.approx((float(row['fold0']) + float(row['fold1'])) / 2)
    reproduction = folder / 'reproduce' / 'runs' / 'digits' / 'real_s0'
    assert (reproduction / 'training_summary.txt').is_file()
    assert not list((reproduction / 'CSV_Logs').glob('Data_Val_*'))   # all training classes, no validation
    with open(folder / 'reproduce' / 'ensemble.json') as handle:
        ensemble = json.load(handle)
    assert ensemble['folds'] == 2 and 0 < ensemble['Test']['e_recall@1'] <= 1
    assert (folder / 'optimisation_history.png').is_file()
    assert not math.isnan(float(row['objective']))
