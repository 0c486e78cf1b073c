"""The sweep launcher: bash-like reading, deterministic folders, resumable scheduling, submitit backend.

The scheduler tests use a stand-in trainer (tests take seconds); the kill-and-rerun test checks the real
digits sweep of tests/conftest.py, trained with --slots 2 and SIGKILLed with its children mid-way.
"""
import csv
import glob
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from utilities.sweep.commands import CommandsError, parse_commands
from utilities.sweep.naming import NamingError, keep_recorded_folders, plan_runs
from utilities.sweep.plan import decide
from utilities.sweep.progress import Progress

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A stand-in trainer: same folder rules as the real one (`<save_path>/<dataset>/<savename>`, `--resume`),
# one "epoch" per --n_epochs lasting `--lr` seconds; it records its CUDA_VISIBLE_DEVICES and its lifetime.
FAKE_TRAINER = textwrap.dedent('''
    import os, sys, time, json
    sys.path.insert(0, {root!r})
    import parameters
    opt = parameters.read_arguments(sys.argv[1:])
    if opt.resume:
        folder = opt.resume
        opt = parameters.read_arguments(open(os.path.join(folder, 'argv')).read().split())
        first = int(open(os.path.join(folder, 'resume_state.pth.tar')).read()) + 1
    else:
        folder = os.path.join(opt.save_path, opt.dataset, opt.savename)
        os.makedirs(folder)
        open(os.path.join(folder, 'argv'), 'w').write(' '.join(sys.argv[1:]))
        first = 0
    with open(os.path.join(folder, 'lives'), 'a') as handle:
        handle.write(json.dumps([os.environ.get('CUDA_VISIBLE_DEVICES'), time.time(), os.getpid()]) + '\\n')
    for epoch in range(first, opt.n_epochs):
        time.sleep(opt.lr * float(os.environ.get('FAKE_SLOWDOWN', '1')))
        open(os.path.join(folder, 'resume_state.pth.tar'), 'w').write(str(epoch))
    open(os.path.join(folder, 'training_summary.txt'), 'w').write('done')
    with open(os.path.join(folder, 'lives'), 'a') as handle:
        handle.write(json.dumps(['end', time.time(), os.getpid()]) + '\\n')
''')


def sweep(*args, **kwargs):
    return subprocess.run([sys.executable, '-m', 'utilities.sweep'] + list(args), cwd=ROOT, capture_output=True,
                          text=True, timeout=kwargs.get('timeout', 300))


def fake_sweep_file(tmp_path, lines):
    trainer = tmp_path / 'fake_trainer.py'
    trainer.write_text(FAKE_TRAINER.format(root=ROOT))
    commands = tmp_path / 'commands.sh'
    commands.write_text(''.join('python {} --dataset digits {}\n'.format(trainer, line) for line in lines))
    return commands


def state_of(folder):
    with open(os.path.join(folder, 'sweep_state.json')) as handle:
        return json.load(handle)['runs']


# ---------------------------------------------------------------- reading the commands file

def test_commands_are_read_as_bash_reads_them():
    text = textwrap.dedent('''\
        #!/bin/bash
        : "${datapath:?set it}"
        export ROOT=/data/x   # trailing comment
        python main.py --source $ROOT --group 'G $ROOT' \\
              --seed 0 # note
        python3 main_original.py --source "${ROOT}/a b" --savename ${NAME:-fallback}\\
        --seed 1
        # python main.py --commented out
        ''')
    first, second = parse_commands(text, {'datapath': '/d'})
    assert (first.line, first.script) == (4, 'main.py')
    assert first.args == ['--source', '/data/x', '--group', 'G $ROOT', '--seed', '0']
    # bash removes backslash-newline entirely: "fallback" and "--seed" join into one word
    assert second.args == ['--source', '/data/x/a b', '--savename', 'fallback--seed', '1']


def test_unknown_variable_and_foreign_bash_are_one_line_errors():
    with pytest.raises(CommandsError, match=r'line 1: \$datapath is not set .*--set datapath='):
        parse_commands('python main.py --source $datapath\n', {})
    with pytest.raises(CommandsError, match='line 2: not a `python <script>.py'):
        parse_commands('x=1\nfor s in 1 2; do python main.py --seed $s; done\n', {})


def test_dry_run_lists_every_run_of_revisit_runs(tmp_path):
    with open(os.path.join(ROOT, 'Revisit_Runs.sh')) as handle:
        expected = [line for line in re.sub(r'\\\n', '', handle.read()).splitlines() if line.startswith('python ')]
    result = sweep('Revisit_Runs.sh', '--dry_run', '--set', 'datapath=/data/dml', '--gpus', '0,1,2,3',
                   '--sweep_dir', str(tmp_path / 'sw'))
    assert result.returncode == 0, result.stderr
    listed = re.findall(r'^line +(\d+) +start +gpu (\d) +(\S+)$', result.stdout, re.M)
    assert len(listed) == len(expected) == 985
    assert [gpu for _, gpu, _ in listed[:8]] == list('01230123')
    assert len({folder for _, _, folder in listed}) == 985
    assert listed[0][2] == str(tmp_path / 'sw' / 'runs' / 'cub200' / 'CUB_Npair_s0')
    assert '985 runs (985 start)' in result.stdout
    assert not os.path.exists(tmp_path / 'sw'), 'a dry run writes nothing'


# ---------------------------------------------------------------- folders and decisions

def test_folders_are_deterministic_and_never_shared(tmp_path):
    commands = parse_commands(textwrap.dedent('''\
        python main.py --dataset digits --loss margin --seed 0
        python main.py --dataset digits --loss margin --seed 1
        python main.py --dataset digits --group G --seed 3
        python main.py --dataset digits --group G --seed 3 --lr 0.1
        python main.py --dataset digits --loss margin --seed 0
        python main.py --dataset digits --savename mine --save_path /elsewhere
        '''), {})
    runs, duplicates = plan_runs(commands, str(tmp_path))
    assert duplicates == 1 and len(runs) == 5
    names = [run.savename for run in runs]
    assert re.fullmatch(r'main_margin_[0-9a-f]{8}_s0', names[0])
    assert names[1] == names[0][:-1] + '1', 'seeds of one configuration share the stem'
    assert re.fullmatch(r'G_s3_[0-9a-f]{6}', names[2]) and re.fullmatch(r'G_s3_[0-9a-f]{6}', names[3])
    assert names[2] != names[3]
    assert runs[0].folder == str(tmp_path / 'runs' / 'digits' / names[0])
    assert runs[4].folder == '/elsewhere/digits/mine'
    assert runs[4].fresh_argv('py')[-2:] != ['--savename', 'mine'], 'the line\'s own flags are kept as given'
    again, _ = plan_runs(commands, str(tmp_path))
    assert [run.folder for run in again] == [run.folder for run in runs]
    grown, _ = plan_runs(commands[2:3] + parse_commands('python main.py --dataset digits --group G --seed 3 '
                                                         '--lr 0.2\n', {}), str(tmp_path))
    keep_recorded_folders(grown, {runs[2].key: runs[2].folder})
    assert grown[0].folder == runs[2].folder, 'a known run keeps its folder when the file grows'
    clash = parse_commands('python main.py --savename a\npython main_original.py --savename a --seed 2\n', {})
    with pytest.raises(NamingError, match='lines 1, 2 all write'):
        plan_runs(clash, str(tmp_path))


def test_decide_reads_the_run_folder(tmp_path):
    folder = tmp_path / 'run'
    record = {'folder': str(folder), 'status': 'pending', 'attempts': []}
    assert decide(record, False) == 'start'
    folder.mkdir()
    assert decide(record, False) == 'conflict', 'a folder this sweep never started is not touched'
    record['attempts'] = [{'action': 'start'}]
    assert decide(record, False) == 'restart'
    (folder / 'resume_state.pth.tar').write_text('')
    assert decide(record, False) == 'resume'
    record['status'] = 'failed'
    assert decide(record, False) == 'failed' and decide(record, True) == 'resume'
    (folder / 'training_summary.txt').write_text('')
    assert decide(record, False) == 'done'


def test_remaining_time_is_mean_duration_times_work_left_over_slots():
    progress = Progress(slots=2)
    progress.finished(10)
    progress.finished(20)
    line = progress.line({'done': 2, 'running': 1, 'failed': 0, 'pending': 2}, [5])
    assert line.startswith('sweep: 2 done · 1 running · 0 failed · 2 pending · elapsed 0:00:0')
    assert line.endswith('remaining ~0:00:20')  # (2 * 15 + (15 - 5)) / 2


# ---------------------------------------------------------------- the local scheduler (stand-in trainer)

def lives(folder):
    with open(os.path.join(folder, 'lives')) as handle:
        return [json.loads(line) for line in handle]


def test_gpus_and_per_gpu_bound_what_runs_where(tmp_path):
    commands = fake_sweep_file(tmp_path, ['--seed {} --n_epochs 2 --lr 0.4'.format(s) for s in range(6)])
    result = sweep(str(commands), '--gpus', '1,3', '--per_gpu', '2', '--sweep_dir', str(tmp_path / 'sw'))
    assert result.returncode == 0, result.stdout + result.stderr
    spans = []
    for record in state_of(tmp_path / 'sw').values():
        assert record['status'] == 'done' and len(record['attempts']) == 1
        (gpu, start, _), (_, end, _) = lives(record['folder'])
        spans.append((gpu, start, end))
    assert {gpu for gpu, _, _ in spans} == {'1', '3'}
    for gpu in ('1', '3'):
        for _, start, _ in spans:
            assert sum(1 for g, s, e in spans if g == gpu and s <= start < e) <= 2
    assert oct(os.stat(tmp_path / 'sw' / 'sweep_state.json').st_mode & 0o777) == oct(0o666 & ~current_umask())
    rerun = sweep(str(commands), '--gpus', '1,3', '--sweep_dir', str(tmp_path / 'sw'))
    assert rerun.returncode == 0 and 'start' not in rerun.stdout.replace('started', '')
    assert all(len(r['attempts']) == 1 for r in state_of(tmp_path / 'sw').values())


def current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_sigterm_stops_the_children_and_a_rerun_resumes_them(tmp_path):
    commands = fake_sweep_file(tmp_path, ['--seed {} --n_epochs 12 --lr 0.25'.format(s) for s in range(2)])
    folder = str(tmp_path / 'sw')
    launcher = subprocess.Popen([sys.executable, '-m', 'utilities.sweep', str(commands), '--slots', '3',
                                 '--sweep_dir', folder, '--grace', '5'], cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and len(glob.glob(folder + '/runs/digits/*/resume_state.pth.tar')) < 2:
        time.sleep(0.1)
    launcher.send_signal(signal.SIGTERM)
    output = launcher.communicate(timeout=60)[0]
    assert launcher.returncode == 128 + signal.SIGTERM, output
    records = state_of(folder)
    killed = [r for r in records.values() if r['status'] == 'killed']
    assert len(killed) == 2 and 'killed ' in output
    for record in killed:
        pid = lives(record['folder'])[-1][2]
        assert not os.path.exists('/proc/{}'.format(pid)) or 'zombie' in open('/proc/{}/status'.format(pid)).read()
    rerun = sweep(str(commands), '--slots', '3', '--sweep_dir', folder)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    for record in state_of(folder).values():
        assert record['status'] == 'done'
        assert [a['action'] for a in record['attempts']] == ['start', 'resume']
        assert [g for g, _, _ in lives(record['folder']) if g != 'end'] == ['', ''], 'CPU slots hide the GPUs'


def test_runs_die_with_a_sigkilled_launcher_and_a_rerun_resumes_them(tmp_path):
    commands = fake_sweep_file(tmp_path, ['--seed {} --n_epochs 12 --lr 0.25'.format(s) for s in range(2)])
    folder = str(tmp_path / 'sw')
    launcher = subprocess.Popen([sys.executable, '-m', 'utilities.sweep', str(commands), '--slots', '2',
                                 '--sweep_dir', folder], cwd=ROOT, stdout=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and len(glob.glob(folder + '/runs/digits/*/resume_state.pth.tar')) < 2:
        time.sleep(0.1)
    launcher.kill()
    launcher.wait()
    pids = [lives(r['folder'])[0][2] for r in state_of(folder).values()]
    deadline = time.time() + 20
    while time.time() < deadline and any(os.path.exists('/proc/{}'.format(pid)) for pid in pids):
        time.sleep(0.1)
    assert not any(os.path.exists('/proc/{}'.format(pid)) for pid in pids), 'no orphan keeps training'
    assert all(r['status'] == 'running' for r in state_of(folder).values())
    rerun = sweep(str(commands), '--slots', '2', '--sweep_dir', folder)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    for record in state_of(folder).values():
        assert record['status'] == 'done' and [a['action'] for a in record['attempts']] == ['start', 'resume']


def test_a_run_killed_before_its_first_epoch_restarts_in_the_same_folder(tmp_path):
    commands = fake_sweep_file(tmp_path, ['--seed 0 --n_epochs 1 --lr 0.1'])
    folder = str(tmp_path / 'sw')
    launcher = subprocess.Popen([sys.executable, '-m', 'utilities.sweep', str(commands), '--slots', '1',
                                 '--sweep_dir', folder], cwd=ROOT, stdout=subprocess.DEVNULL,
                                env=dict(os.environ, FAKE_SLOWDOWN='600'))
    deadline = time.time() + 60
    while time.time() < deadline and not glob.glob(folder + '/runs/digits/*/lives'):
        time.sleep(0.1)
    launcher.send_signal(signal.SIGINT)
    assert launcher.wait(timeout=60) == 128 + signal.SIGINT
    record = next(iter(state_of(folder).values()))
    assert record['status'] == 'killed' and os.path.isdir(record['folder'])
    assert not os.path.exists(os.path.join(record['folder'], 'resume_state.pth.tar'))
    rerun = sweep(str(commands), '--slots', '1', '--sweep_dir', folder)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    record = next(iter(state_of(folder).values()))
    # the stand-in trainer's makedirs fails on an existing folder: the half folder must have been removed
    assert [a['action'] for a in record['attempts']] == ['start', 'restart'] and record['status'] == 'done'
    assert os.listdir(os.path.dirname(record['folder'])) == [os.path.basename(record['folder'])]
    assert len(lives(record['folder'])) == 2, 'the new folder holds only the second life'


def test_failed_run_is_reported_with_its_log_and_kept_failed(tmp_path):
    trainer = tmp_path / 'broken.py'
    trainer.write_text('import sys\nprint("boom")\nsys.exit(3)\n')
    commands = tmp_path / 'c.sh'
    commands.write_text('python {} --seed 0\n'.format(trainer))
    folder = str(tmp_path / 'sw')
    first = sweep(str(commands), '--slots', '1', '--sweep_dir', folder)
    log = next(iter(state_of(folder).values()))['log']
    assert first.returncode == 1 and 'FAILED' in first.stdout and 'exit 3; log ' + log in first.stdout
    assert 'boom' in open(log).read()
    again = sweep(str(commands), '--slots', '1', '--sweep_dir', folder)
    assert again.returncode == 1 and len(next(iter(state_of(folder).values()))['attempts']) == 1
    retried = sweep(str(commands), '--slots', '1', '--sweep_dir', folder, '--retry_failed')
    assert retried.returncode == 1 and len(next(iter(state_of(folder).values()))['attempts']) == 2


# ---------------------------------------------------------------- submitit

def test_slurm_flags_reach_the_slurm_executor(tmp_path, monkeypatch):
    pytest.importorskip('submitit')
    from utilities.sweep.__main__ import build_parser
    from utilities.sweep.slurm import make_executor, minutes
    assert (minutes('90'), minutes('1:30:00'), minutes('2-00:00:00')) == (90, 90, 2880)
    (tmp_path / 'srun').write_text('#!/bin/sh\nexit 0\n')  # submitit only checks that Slurm is there
    os.chmod(tmp_path / 'srun', 0o755)
    monkeypatch.setenv('PATH', '{}:{}'.format(tmp_path, os.environ['PATH']))
    options = build_parser().parse_args(['c.sh', '--slurm', '--slurm_partition', 'gpu', '--slurm_time', '2:00:00',
                                         '--slurm_gpus_per_node', '2', '--slurm_account', 'lab',
                                         '--slurm_setup', 'module load cuda', '--slurm_array_parallelism', '16'])
    parameters = make_executor(options, str(tmp_path))._executor.parameters
    assert (parameters['partition'], parameters['time'], parameters['gpus_per_node']) == ('gpu', 120, 2)
    assert parameters['additional_parameters'] == {'account': 'lab'}
    assert parameters['setup'] == ['module load cuda'] and parameters['array_parallelism'] == 16


def test_two_line_sweep_through_submitits_local_executor(tmp_path):
    pytest.importorskip('submitit')
    commands = fake_sweep_file(tmp_path, ['--seed {} --n_epochs 2 --lr 0.2'.format(s) for s in range(2)])
    folder = str(tmp_path / 'sw')
    result = sweep(str(commands), '--slurm', '--slurm_local', '--slurm_time', '5', '--sweep_dir', folder)
    assert result.returncode == 0, result.stdout + result.stderr
    records = state_of(folder)
    assert len(records) == 2
    for record in records.values():
        assert record['status'] == 'done' and record['job_id'] and len(record['attempts']) == 1
        assert os.path.isfile(os.path.join(record['folder'], 'training_summary.txt'))
        assert '# sweep: start in job' in open(record['log']).read()
    again = sweep(str(commands), '--slurm', '--slurm_local', '--sweep_dir', folder)
    assert again.returncode == 0 and 'submit ' not in again.stdout
    assert all(len(r['attempts']) == 1 for r in state_of(folder).values())


# ---------------------------------------------------------------- real digits runs, SIGKILLed mid-way

def csv_rows(folder, name):
    with open(os.path.join(folder, 'CSV_Logs', name), newline='') as handle:
        return list(csv.reader(handle))[1:]


def test_sigkill_mid_sweep_then_rerun_ends_every_run_exactly_once(interrupted_sweep, tmp_path):
    """The shared interrupted sweep (tests/conftest.py): 2 baseline and 2 LSD digits runs of 2 epochs with
    --slots 2, the launcher and its runs SIGKILLed after the baseline runs ended and the LSD runs completed an
    epoch, then the sweep rerun."""
    folder, runs, summaries = interrupted_sweep['folder'], interrupted_sweep['runs'], interrupted_sweep['summaries']
    assert sorted(os.path.basename(os.path.dirname(p)) for p in summaries) == ['DIG_Triplet_s0', 'DIG_Triplet_s1']
    before = interrupted_sweep['before']
    assert sorted(r['status'] for r in before.values()) == ['done', 'done', 'running', 'running']
    assert interrupted_sweep['rerun_returncode'] == 0, interrupted_sweep['rerun_output']
    names = ['DIG_Triplet_s0', 'DIG_Triplet_s1', 'DIGlsd_Triplet_s0', 'DIGlsd_Triplet_s1']
    assert sorted(os.listdir(runs)) == names, 'no _1 folder, nothing started twice'
    after = state_of(folder)
    actions = {os.path.basename(r['folder']): [a['action'] for a in r['attempts']] for r in after.values()}
    assert actions['DIG_Triplet_s0'] == actions['DIG_Triplet_s1'] == ['start']
    assert actions['DIGlsd_Triplet_s0'] == actions['DIGlsd_Triplet_s1'] == ['start', 'resume']
    assert {path: os.stat(path).st_mtime_ns for path in summaries} == summaries, 'finished runs untouched'
    for name in names:
        run = os.path.join(runs, name)
        assert os.path.isfile(os.path.join(run, 'training_summary.txt'))
        assert csv_rows(run, 'Data_Train_epochs.csv') == [['0'], ['1']]
        assert len(csv_rows(run, 'Data_Test_discriminative_e_recall.csv')) == 2
    print('kill-and-rerun: killed after {:.0f} s, rerun took {:.0f} s, actions {}'.format(
        interrupted_sweep['killed_at'], interrupted_sweep['rerun_seconds'], actions))

    tables = subprocess.run([sys.executable, 'Result_Evaluations.py', '--source', 'local', '--path', folder,
                             '--out', str(tmp_path / 'tables'), '--no_figures', '--min_length', '0'],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert tables.returncode == 0, tables.stdout + tables.stderr
    with open(tmp_path / 'tables' / 'summary.csv', newline='') as handle:
        groups = {row['group']: row for row in csv.DictReader(handle)}
    assert set(groups) == {'DIG_Triplet', 'DIGlsd_Triplet'}
    assert groups['DIG_Triplet']['seeds'] == groups['DIGlsd_Triplet']['seeds'] == '0 1'
