import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

# Under pytest-xdist the workers share the cores: each worker, and every process its tests start, gets its
# share of threads instead of all of them (oversubscribed OpenMP threads spin and slow everything down).
# Set before torch is imported; tests that compare thread counts set them explicitly.
if os.environ.get('PYTEST_XDIST_WORKER_COUNT'):
    _threads = str(max(1, (os.cpu_count() or 1) // int(os.environ['PYTEST_XDIST_WORKER_COUNT'])))
    for _variable in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS'):
        os.environ.setdefault(_variable, _threads)

import glob  # noqa: E402
import json  # noqa: E402
import pickle  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

import pytest  # noqa: E402
from filelock import FileLock  # noqa: E402

# The network of the end-to-end tests that check what a trainer does around any network (outputs, logs, resume,
# LSD identities, sweeps, errors): timm's tiny test ResNet (373k weights, BatchNorm) trains a digits epoch about
# 4 times faster than resnet18 at the digits' 32 px (measured 4.1 s against 16.6 s on one core), and at 16 px
# (the 8 x 8 digits upsampled twice) an epoch with its evaluation takes 1.9 s against 2.7 s at 32 px. The README's
# resnet18_normalize keeps the recorded reference run (tests/test_speed_flags.py: the README's main job but for
# --kd_tau, one epoch) and the bf16 step.
TINY_NETWORK = ['--arch', 'timm/test_resnet_normalize', '--input_size', '16']
# the same with its BatchNorm frozen (the `_frozen` token), as the data-parallel tests on gloo need it
TINY_FROZEN_NETWORK = ['--arch', 'timm/test_resnet_frozen_normalize', '--input_size', '16']

# Trained runs shared by the tests that only need *a* finished run. Each is trained once per test session,
# also under pytest-xdist: the first worker that asks trains it under a file lock, the others reuse it.
# Tests that change files of a shared run work on a copy.

# The README's main job (its loss, miner, LSD settings and data) for 2 epochs on the tiny network, with the
# metrics that tests/test_evaluate.py re-evaluates, trained under umask 022 (tests/test_bad_input.py checks
# the modes).
README_JOB_ARGS = ['--dataset', 'digits', '--not_pretrained', '--loss', 'margin_lsd', '--batch_mining', 'distance',
                   '--kd_alpha', '50', '--kd_tau', '1', '--bs', '40', '--samples_per_class', '4', '--embed_dim', '8',
                   '--lr', '0.0003', '--kernels', '0', '--seed', '0', '--no_train_metrics']   # all but --arch
README_RUN_ARGS = README_JOB_ARGS + ['--arch', 'resnet18_normalize']
FINISHED_RUN_ARGS = README_JOB_ARGS + [*TINY_NETWORK, '--n_epochs', '2', '--evaluation_metrics', 'e_recall@1',
                                       'e_recall@2', 'nmi', 'mAP_c']


# Three epochs of margin_lsd with a learned beta and a step of the learning-rate schedule, every default metric
# on Test (the Train-set pass is the same evaluation of other images, checked by tests/test_training.py): the
# uninterrupted twin of tests/test_resume.py's killed run, and the every-epoch
# evaluation that tests/test_speed_flags.py compares --evaluate_every against.
THREE_EPOCH_RUN_ARGS = ['--dataset', 'digits', *TINY_NETWORK, '--not_pretrained', '--bs', '40',
                        '--samples_per_class', '4', '--kernels', '0', '--embed_dim', '32', '--lr', '0.001',
                        '--seed', '5', '--loss', 'margin_lsd', '--batch_mining', 'distance', '--kd_alpha', '20',
                        '--n_epochs', '3', '--tau', '2', '--gamma', '0.5', '--no_train_metrics', '--no_plots']


def clean_environment(**extra):
    """The environment of a trainer process a test starts: one thread, no torchrun variables inherited from
    an outer launch, no DML_TRACEBACK; plus `extra`."""
    env = dict(os.environ, PYTHONWARNINGS='ignore', OMP_NUM_THREADS='1', **extra)
    for name in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT', 'DML_TRACEBACK'):
        env.pop(name, None)
    return env


def csv_logs(folder, prefix=''):
    """{file name: rows} of a run folder's CSV_Logs whose names start with `prefix`."""
    import csv
    logs = {}
    for path in sorted(glob.glob(os.path.join(folder, 'CSV_Logs', prefix + '*.csv'))):
        with open(path, newline='') as handle:
            logs[os.path.basename(path)] = list(csv.reader(handle))
    return logs


@pytest.fixture(scope='module')
def single_thread():
    """One torch thread for a module of thousands of tiny calls: a thread pool only adds wake-up latency."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def logged_test_metrics(run_folder):
    """{column: value} of the last row of every Data_Test_* CSV log of a run folder."""
    values = {}
    for name, rows in csv_logs(run_folder, 'Data_Test_').items():
        header, last = rows[0], rows[-1]
        values.update({column: float(value) for column, value in zip(header, last)})
    return values


def run_trainer_in_process(args, script='main.py'):
    """`python <script> args` in this process: the same `main()` the scripts call, without a fresh interpreter's
    imports (~5.5 s a process on these machines). For start-up errors, and for runs compared only within bounds:
    runs compared exactly run in fresh processes (float results of CPU kernels may depend on a process's
    allocation history). Returns what a finished process gives: returncode, stdout, stderr."""
    import contextlib
    import io
    import types
    from training import loop
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            loop.main(list(args), lsd_trainer={'main.py': True, 'main_original.py': False}[script])
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else 1 if stop.code else 0
    return types.SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())


def session_root(tmp_path_factory):
    """A folder shared by every worker of this test session (pytest-xdist gives each worker its own basetemp
    under one common parent)."""
    root = tmp_path_factory.getbasetemp()
    return root.parent if os.environ.get('PYTEST_XDIST_WORKER') else root


def shared_run(tmp_path_factory, name, args, script='main.py', umask=0o022):
    """The run folder of `script args`, trained once per session (see above)."""
    save_path = session_root(tmp_path_factory) / 'shared_runs' / name
    folder = os.path.join(str(save_path), 'digits', 'run')
    marker = save_path / 'trained'
    save_path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(save_path) + '.lock'):
        if not marker.exists():
            environment = dict(os.environ, PYTHONWARNINGS='ignore')
            environment.pop('DML_TRACEBACK', None)
            done = subprocess.run([sys.executable, script] + list(args) + ['--save_path', str(save_path),
                                                                            '--savename', 'run'],
                                  cwd=ROOT, capture_output=True, text=True, env=environment, timeout=900,
                                  preexec_fn=lambda: os.umask(umask))
            assert done.returncode == 0, done.stderr[-3000:]
            marker.write_text('')
    return folder


@pytest.fixture(scope='session')
def finished_run(tmp_path_factory):
    """Path of the shared 2-epoch run folder of the README's job on the tiny network."""
    return shared_run(tmp_path_factory, 'finished_run', FINISHED_RUN_ARGS)


@pytest.fixture(scope='session')
def three_epoch_run(tmp_path_factory):
    """Path of the shared uninterrupted 3-epoch run folder."""
    return shared_run(tmp_path_factory, 'three_epoch_run', THREE_EPOCH_RUN_ARGS)


# Real digits runs through the sweep launcher with --slots 2, the launcher and its runs SIGKILLed once the
# baseline group has finished and the LSD group has completed its first epoch, then the sweep rerun.
# tests/test_sweep.py checks what the launcher did; tests/test_result_evaluations.py tables the runs.
SWEPT_METRICS = ['e_recall@1', 'e_recall@5', 'nmi', 'f1', 'mAP_c', 'dists@intra', 'dists@inter',
                 'dists@intra_over_inter', 'rho_spectrum@-1', 'rho_spectrum@1', 'rho_spectrum@2', 'rho_spectrum@10']
SWEPT_GROUPS = (('main_original.py', 'DIG_Triplet', 'triplet'), ('main.py', 'DIGlsd_Triplet', 'triplet_lsd'))
SWEPT_DIGITS = ('--dataset digits ' + ' '.join(TINY_NETWORK) + ' --not_pretrained --kernels 0 --bs 32 --n_epochs 2 '
                '--batch_mining distance --no_plots --evaluation_metrics ' + ' '.join(SWEPT_METRICS))


def sweep_state(folder):
    with open(os.path.join(folder, 'sweep_state.json')) as handle:
        return json.load(handle)['runs']


@pytest.fixture(scope='session')
def interrupted_sweep(tmp_path_factory):
    """What happened: the sweep folder, the launcher's state before the rerun, the finished runs' summary
    times before the rerun, the rerun's result and the seconds until the kill and of the rerun."""
    root = session_root(tmp_path_factory) / 'interrupted_sweep'
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root) + '.lock'):
        record = root / 'record.pkl'
        if record.exists():
            with open(record, 'rb') as handle:
                return pickle.load(handle)
        lines = ['python {} {} --loss {} --group {} --seed {}'.format(entry, SWEPT_DIGITS, loss, group, seed)
                 for entry, group, loss in SWEPT_GROUPS for seed in (0, 1)]
        commands = root / 'digits.sh'
        commands.write_text('\n'.join(lines) + '\n')
        folder = str(root / 'sw')
        runs = os.path.join(folder, 'runs', 'digits')
        began = time.time()
        launcher = subprocess.Popen([sys.executable, '-m', 'utilities.sweep', str(commands), '--slots', '2',
                                     '--sweep_dir', folder], cwd=ROOT, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
        deadline = time.time() + 1200
        while True:
            finished = glob.glob(runs + '/DIG_Triplet_s*/training_summary.txt')
            epoch_done = glob.glob(runs + '/DIGlsd_Triplet_s*/resume_state.pth.tar')
            if len(finished) == 2 and len(epoch_done) == 2:
                break
            assert launcher.poll() is None, 'the launcher ended before the kill'
            if time.time() > deadline:
                launcher.kill()
                raise AssertionError('the sweep did not reach the point of the kill in 20 minutes')
            time.sleep(0.2)
        children = [r['attempts'][-1]['pid'] for r in sweep_state(folder).values() if r['status'] == 'running']
        launcher.kill()
        for pid in children:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        launcher.wait()
        killed_at = time.time() - began
        summaries = {path: os.stat(path).st_mtime_ns for path in glob.glob(runs + '/*/training_summary.txt')}
        before = sweep_state(folder)
        rerun = subprocess.run([sys.executable, '-m', 'utilities.sweep', str(commands), '--slots', '2',
                                '--sweep_dir', folder], cwd=ROOT, capture_output=True, text=True, timeout=600)
        result = dict(folder=folder, runs=runs, summaries=summaries, before=before, rerun_returncode=rerun.returncode,
                      rerun_output=rerun.stdout + rerun.stderr, killed_at=killed_at,
                      rerun_seconds=time.time() - began - killed_at)
        with open(record, 'wb') as handle:
            pickle.dump(result, handle)
        return result


# Scheduling under pytest-xdist (pytest.ini: --dist loadgroup --no-loadscope-reorder). A test file is one unit of
# work, so its module fixtures are built once; files that share a trained run above form one unit, so one worker
# trains it while the other works instead of waiting on its lock. Units are handed out in collection order:
# the long ones first (measured, slowest first), so that no long unit starts when the other worker is done.
SHARED_RUN_UNITS = {'test_sweep': 'interrupted_sweep', 'test_result_evaluations': 'interrupted_sweep',
                    'test_resume': 'three_epoch_run', 'test_speed_flags': 'three_epoch_run',
                    'test_bad_input': 'finished_run', 'test_evaluate': 'finished_run'}
LONG_UNITS_FIRST = ['test_distributed_training', 'test_batch_chunk', 'three_epoch_run', 'interrupted_sweep', 'finished_run',
                    'test_training', 'test_training_timm', 'test_distributed', 'test_bench_gpu_epoch',
                    'test_batch_mining_distributions', 'test_training_write_errors', 'test_distributed_memory',
                    'test_batch_chunk_distributed',
                    'test_datasampler_training']


@pytest.hookimpl(tryfirst=True)   # before pytest-xdist's own hook, which reads the marks into the node ids
def pytest_collection_modifyitems(config, items):
    def unit(item):
        module = os.path.splitext(os.path.basename(str(item.fspath)))[0]
        return SHARED_RUN_UNITS.get(module, module)

    for item in items:
        item.add_marker(pytest.mark.xdist_group(unit(item)))
    rank = {name: position for position, name in enumerate(LONG_UNITS_FIRST)}
    items.sort(key=lambda item: rank.get(unit(item), len(rank)))   # stable: the rest keep their order
