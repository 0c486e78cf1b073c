"""`python -m utilities.sweep <commands file>`: run a file of trainer lines on every GPU of a box or on Slurm.

Rerunning the same command skips finished runs, resumes killed ones from their last completed epoch,
starts the rest and runs nothing twice; see docs/sweeps.md.
"""
import argparse
import os
import re
import sys

from utilities.atomic import WriteError
from utilities.sweep import children
from utilities.sweep.commands import CommandsError, read_commands
from utilities.sweep.local import make_slots, run_local, slot_label
from utilities.sweep.naming import NamingError, digest, keep_recorded_folders, plan_runs
from utilities.sweep.plan import decide
from utilities.sweep.progress import Progress
from utilities.sweep.state import StateError, SweepState, lock_sweep

RUNNABLE = ('start', 'resume', 'restart')


def build_parser():
    parser = argparse.ArgumentParser(prog='python -m utilities.sweep', description=__doc__.splitlines()[0])
    parser.add_argument('commands_file', help='Revisit_Runs.sh or any file of `python main.py ...` lines.')
    parser.add_argument('--sweep_dir', default='',
                        help='Sweep folder (state, logs/, runs/); default Sweeps/<file name without extension>.')
    parser.add_argument('--gpus', default='', help='Comma-separated GPU ids of this box, e.g. 0,1,2,3.')
    parser.add_argument('--per_gpu', default=1, type=int, help='Runs at a time on each GPU of --gpus.')
    parser.add_argument('--slots', default=0, type=int, help='Runs at a time on a machine without GPUs.')
    parser.add_argument('--grep', default='', help='Only the lines matching this regular expression.')
    parser.add_argument('--set', default=[], action='append', metavar='NAME=VALUE',
                        help='A variable of the file (e.g. datapath=/data); repeatable.')
    parser.add_argument('--dry_run', action='store_true', help='List what would run (and where); run nothing.')
    parser.add_argument('--retry_failed', action='store_true', help='Run failed runs again (resuming if possible).')
    parser.add_argument('--grace', default=30.0, type=float,
                        help='Seconds the runs get to stop after Ctrl-C/SIGTERM before SIGKILL.')
    parser.add_argument('--python', default=sys.executable,
                        help='Interpreter for the lines (default: the one running the launcher).')
    slurm = parser.add_argument_group('Slurm (through submitit)')
    slurm.add_argument('--slurm', action='store_true', help='Submit the runs to Slurm instead of running them here.')
    slurm.add_argument('--slurm_local', action='store_true',
                       help='With --slurm: use submitit\'s local executor (no Slurm needed; for testing).')
    slurm.add_argument('--slurm_partition', default='', help='Partition.')
    slurm.add_argument('--slurm_time', default='24:00:00', help='Time limit per job: minutes or [D-]HH:MM:SS.')
    slurm.add_argument('--slurm_gpus_per_node', default=1, type=int, help='GPUs per job.')
    slurm.add_argument('--slurm_cpus_per_task', default=8, type=int, help='CPUs per job.')
    slurm.add_argument('--slurm_mem_gb', default=0, type=int, help='Memory per job in GB (0: the cluster default).')
    slurm.add_argument('--slurm_account', default='', help='Account.')
    slurm.add_argument('--slurm_qos', default='', help='QOS.')
    slurm.add_argument('--slurm_constraint', default='', help='Node constraint.')
    slurm.add_argument('--slurm_setup', default=[], action='append',
                       help='A shell line run before each job (e.g. "module load cuda"); repeatable.')
    slurm.add_argument('--slurm_array', action='store_true', help='Submit all runs as one job array.')
    slurm.add_argument('--slurm_array_parallelism', default=256, type=int, help='Array jobs running at once.')
    slurm.add_argument('--slurm_job_name', default='sweep', help='Job name.')
    slurm.add_argument('--slurm_detach', action='store_true',
                       help='Submit and exit; a later run of the same command collects the results.')
    return parser


def fail(message):
    print('error: ' + message, file=sys.stderr)
    sys.exit(2)


def variables_of(pairs):
    result = {}
    for pair in pairs:
        name, sep, value = pair.partition('=')
        if not sep or not re.match(r'^[A-Za-z_][A-Za-z0-9_]*$', name):
            fail('--set {}: expected NAME=VALUE'.format(pair))
        result[name] = value
    return result


def slot_values(options):
    if options.gpus:
        gpus = [g.strip() for g in options.gpus.split(',') if g.strip()]
        if not all(re.match(r'^\d+$', g) for g in gpus) or options.per_gpu < 1:
            fail('--gpus {} / --per_gpu {}: expected GPU ids like 0,1,2 and --per_gpu >= 1'
                 .format(options.gpus, options.per_gpu))
        return make_slots(gpus, options.per_gpu, 0)
    if options.slots < 0:
        fail('--slots {}: expected a positive number'.format(options.slots))
    return make_slots([], 1, options.slots)


def log_paths(runs, sweep_folder):
    """logs/<dataset>/<savename>.log, with a digest where two runs of different save paths share one."""
    paths = {}
    for run in runs:
        paths.setdefault(os.path.join(sweep_folder, 'logs', run.dataset, run.savename + '.log'), []).append(run)
    result = {}
    for path, sharing in paths.items():
        for run in sharing:
            result[run.key] = path if len(sharing) == 1 else path[:-4] + '_' + digest(run.key, 6) + '.log'
    return result


EXIT_WRITE_ERROR = 74   # sysexits' EX_IOERR, as the trainers


def main(argv=None):
    """Exit status: 0 all done, 1 some failed, 2 bad input, 74 a file of the sweep could not be written
    (the state file, a log), 128 + N stopped by signal N."""
    try:
        return run_sweep(argv)
    except WriteError as error:
        print('error: {}; the runs in flight were stopped, rerun the same command to resume once that is fixed.'
              .format(error), file=sys.stderr)
        return EXIT_WRITE_ERROR


def run_sweep(argv=None):
    options = build_parser().parse_args(argv)
    sweep_folder = os.path.abspath(options.sweep_dir or os.path.join(
        'Sweeps', os.path.splitext(os.path.basename(options.commands_file))[0]))
    try:
        commands = read_commands(options.commands_file, variables_of(options.set))
        if options.grep:
            pattern = re.compile(options.grep)
            commands = [c for c in commands if pattern.search(' '.join([c.script] + c.args))]
        runs, duplicates = plan_runs(commands, sweep_folder)
    except (CommandsError, NamingError) as error:
        fail('{}: {}'.format(options.commands_file, error))
    except re.error as error:
        fail('--grep {}: {}'.format(options.grep, error))
    slots = slot_values(options)
    if not runs:
        fail('{}: no run selected'.format(options.commands_file))
    if options.dry_run:
        return dry_run(runs, duplicates, sweep_folder, slots, options)
    if not slots and not options.slurm:
        fail('give --gpus 0,1,... (this box\'s GPUs), --slots N (a box without GPUs) or --slurm')
    try:
        lock = lock_sweep(sweep_folder)
        state = SweepState(sweep_folder)
        state.lock = lock  # held (and released by the kernel) with the launcher's life
    except StateError as error:
        fail(str(error))
    try:
        keep_recorded_folders(runs, {key: r.get('folder') for key, r in state.data['runs'].items()})
    except NamingError as error:
        fail(str(error))
    logs = log_paths(runs, sweep_folder)
    items = []
    for run in runs:
        record = state.entry(run)
        record['log'] = logs[run.key]
        record['command'] = ' '.join([run.command.script] + run.command.args)
        items.append((run, record))
    state.save()
    progress = Progress(len(slots) if not options.slurm else len(runs))
    if options.slurm:
        from utilities.sweep import slurm
        return run_on_slurm(items, state, progress, options, sweep_folder, slurm)
    for run, record in items:
        if record['status'] == 'running' and record['attempts']:
            attempt = record['attempts'][-1]
            if children.stop_survivor(attempt.get('pid'), attempt.get('pid_ticks')):
                progress.event('stopped a run left over by a killed launcher: {}'.format(run.folder))
            record['status'] = 'killed'
    queue, counts = triage(items, state, progress, options)
    if duplicates:
        progress.event('sweep: {} duplicate line(s) counted once'.format(duplicates))
    return run_local(queue, slots, options.python, state, progress, counts, grace=options.grace)


def triage(items, state, progress, options):
    """(queue of runnable (run, record, action), counts) after marking finished and conflicting runs."""
    queue, counts = [], {'done': 0, 'running': 0, 'failed': 0, 'pending': 0}
    for run, record in items:
        action = decide(record, options.retry_failed)
        if action == 'done':
            record['status'] = 'done'
            counts['done'] += 1
        elif action == 'failed':
            counts['failed'] += 1
            progress.event('failed earlier (not retried; --retry_failed): {} log {}'.format(run.folder, record['log']))
        elif action == 'conflict':
            record['status'] = 'failed'
            record['note'] = 'run folder existed before the sweep and holds no completed epoch'
            counts['failed'] += 1
            progress.event('FAILED  {}: {}; remove it or give the line another --savename'
                           .format(run.folder, record['note']))
        else:
            record['status'] = 'pending'
            queue.append((run, record, action))
            counts['pending'] += 1
    state.save()
    return queue, counts


def run_on_slurm(items, state, progress, options, sweep_folder, slurm):
    watching, rest = [], []
    for run, record in items:
        job = slurm.reattach(record, options, sweep_folder) if record['status'] in ('submitted', 'running') else None
        if job is not None:
            watching.append(((run, record, 'watch'), job))
        else:
            if record['status'] in ('submitted', 'running'):
                record['status'] = 'killed'
            rest.append((run, record))
    queue, counts = triage(rest, state, progress, options)
    counts['pending'] += len(watching)
    executor = slurm.make_executor(options, sweep_folder)
    jobs = watching + slurm.submit(queue, executor, options.python, state, progress, options.slurm_array)
    if options.slurm_detach:
        progress.event('sweep: {} job(s) queued or running; rerun the same command to collect them'.format(len(jobs)))
        return 0
    return slurm.watch(jobs, state, progress, counts)


def dry_run(runs, duplicates, sweep_folder, slots, options):
    """One line per run: what it would do, the slot it would get, its folder and command."""
    state = SweepState(sweep_folder) if os.path.exists(sweep_folder) else None
    if state:
        keep_recorded_folders(runs, {key: r.get('folder') for key, r in state.data['runs'].items()})
    tally, index = {}, 0
    for run in runs:
        record = dict(state.data['runs'].get(run.key, {})) if state else {}
        record.setdefault('status', 'pending')
        record.setdefault('attempts', [])
        record['folder'] = run.folder
        action = decide(record, options.retry_failed)
        tally[action] = tally.get(action, 0) + 1
        where = '-'
        if action in RUNNABLE:
            where = 'slurm' if options.slurm else (slot_label(slots[index % len(slots)]) if slots else '?')
            index += 1
        argv = run.resume_argv('python') if action == 'resume' else run.fresh_argv('python')
        print('line {:5} {:8} {:6} {}\n    {}'.format(run.command.line, action, where, run.folder, ' '.join(argv)))
    summary = ', '.join('{} {}'.format(n, a) for a, n in sorted(tally.items()))
    print('{} runs ({}){}; sweep folder {}'.format(len(runs), summary,
                                                  ', {} duplicate line(s) counted once'.format(duplicates)
                                                  if duplicates else '', sweep_folder))
    return 0


if __name__ == '__main__':
    sys.exit(main())
