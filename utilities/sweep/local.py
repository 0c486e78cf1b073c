"""The one-box scheduler: each run is its own process on one slot (a GPU via CUDA_VISIBLE_DEVICES, or a CPU slot).

Slots are filled in file order. CPU slots share the cores (OMP_NUM_THREADS = cores / slots unless set:
torch's default of one thread per core in every run makes N runs far slower than N times one). SIGINT/SIGTERM to the launcher are forwarded to every child's
process group; after `grace` seconds the rest are SIGKILLed; the runs stopped this way are marked
killed (resumable) and the launcher exits with 128 + the signal number.
"""
import os
import signal
import subprocess
import time

from utilities.atomic import WriteError
from utilities.sweep import children
from utilities.sweep.plan import SUMMARY, clear_half_folder
from utilities.sweep.progress import clock


def make_slots(gpus, per_gpu, slots):
    """CUDA_VISIBLE_DEVICES value of every slot: GPUs interleaved (0,1,0,1), '' for CPU slots."""
    if gpus:
        return [gpu for _ in range(per_gpu) for gpu in gpus]
    return [''] * slots


def slot_label(value):
    return 'gpu {}'.format(value) if value != '' else 'cpu'


class Stop:
    """Remembers the first stop signal; the main loop acts on it (handlers only set a flag)."""
    def __init__(self):
        self.signum = None
        self.count = 0

    def __call__(self, signum, frame):
        self.signum = self.signum or signum
        self.count += 1

    def install(self):
        return {sig: signal.signal(sig, self) for sig in (signal.SIGINT, signal.SIGTERM)}


def outcome(returncode, folder, stopped):
    """(status, note) of a child that exited."""
    finished = os.path.isfile(os.path.join(folder, SUMMARY))
    if returncode == 0 and finished:
        return 'done', ''
    if stopped or returncode < 0:
        return 'killed', 'signal {}'.format(-returncode) if returncode < 0 else 'stopped'
    if returncode == 0:
        return 'failed', 'exit 0 without {}'.format(SUMMARY)
    return 'failed', 'exit {}'.format(returncode)


STOP_GRACE = 30.0   # seconds a run gets to stop after SIGTERM when the launcher cannot go on


def launch(item, slot, python, state, progress, threads_per_cpu_slot=1):
    run, record, action = item
    if action == 'restart':
        clear_half_folder(run.folder)
    argv = run.resume_argv(python) if action == 'resume' else run.fresh_argv(python)
    env = dict(os.environ, CUDA_VISIBLE_DEVICES=slot, PYTHONUNBUFFERED='1')
    if slot == '' and 'OMP_NUM_THREADS' not in os.environ:
        env['OMP_NUM_THREADS'] = str(threads_per_cpu_slot)
    os.makedirs(os.path.dirname(record['log']), exist_ok=True)
    # recorded before the child exists: a launcher killed right after the fork still owns the folder
    state.start_attempt(record, action, slot=slot_label(slot))
    try:
        log = open(record['log'], 'a')
        log.write('# sweep: {} attempt {} on {} at {}: {}\n'.format(
            action, len(record['attempts']), slot_label(slot), time.strftime('%Y-%m-%d %H:%M:%S'),
            ' '.join(argv)))
        log.flush()
    except OSError as error:   # a full disk or a quota: the launcher stops with one line
        raise WriteError(record['log'], error) from error
    with log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=env, preexec_fn=children.preexec_function())
    record['attempts'][-1].update(pid=process.pid, pid_ticks=children.start_ticks(process.pid))
    try:
        state.save()
    except BaseException:   # the state cannot record this run: it must not outlive the launcher
        stop_all({0: (item, process, time.time())}, STOP_GRACE)
        raise
    progress.event('{:7} [{}] {}'.format(action, slot_label(slot), run.folder))
    return process


def run_local(queue, slot_values, python, state, progress, counts, grace=30.0, poll=0.5):
    """Run `queue` (list of (run, record, action)); returns the exit status of the launcher."""
    stop = Stop()
    previous = stop.install()
    free = list(range(len(slot_values)))
    running = {}  # slot index -> (item, process, start time)
    queue = list(queue)
    threads = max(1, (os.cpu_count() or 1) // max(len(slot_values), 1))
    try:
        while queue or running:
            if stop.signum is None:
                while free and queue:
                    index = free.pop(0)
                    item = queue.pop(0)
                    counts['pending'] -= 1
                    counts['running'] += 1
                    process = launch(item, slot_values[index], python, state, progress, threads)
                    running[index] = (item, process, time.time())
            else:
                forward(stop, running, grace)
            for index in list(running):
                item, process, started = running[index]
                if process.poll() is None:
                    continue
                del running[index]
                free.append(index)
                free.sort()
                finish(item, process.returncode, stop.signum is not None, started, state, progress, counts)
            if stop.signum is not None and not running:
                break
            progress.show(counts, [time.time() - s for _, _, s in running.values()])
            time.sleep(poll)
    except BaseException:
        stop_all(running, grace)   # e.g. the state file cannot be written: no run outlives the launcher
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        progress.close()
    if stop.signum is not None:
        progress.event('sweep: stopped by signal {}; rerun the same command to resume.'.format(stop.signum))
        return 128 + stop.signum
    return 1 if counts['failed'] else 0


def stop_all(running, grace):
    """SIGTERM to every running child's group (each saves nothing half-written and stops resumable), then
    SIGKILL after `grace` seconds."""
    for _, process, _ in running.values():
        signal_group(process, signal.SIGTERM)
    deadline = time.time() + grace
    for _, process, _ in running.values():
        try:
            process.wait(max(0.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            signal_group(process, signal.SIGKILL)


def forward(stop, running, grace):
    """Send the stop signal to every child group once, then SIGKILL whatever outlives `grace`."""
    if not hasattr(stop, 'sent'):
        stop.sent = time.time()
        for _, process, _ in running.values():
            signal_group(process, stop.signum)
    elif time.time() - stop.sent > grace or stop.count > 1:
        for _, process, _ in running.values():
            signal_group(process, signal.SIGKILL)


def signal_group(process, signum):
    try:
        os.killpg(process.pid, signum)
    except OSError:
        pass


def finish(item, returncode, stopped, started, state, progress, counts, note=''):
    """Record a run's end in the state file and the progress line; `note` overrides the outcome's reason."""
    run, record, action = item
    status, why = outcome(returncode, run.folder, stopped)
    note = note or why
    state.end_attempt(record, status, returncode=returncode, note=note)
    counts['running'] -= 1
    if status == 'done':
        counts['done'] += 1
        progress.finished(time.time() - started)
        progress.event('done    {} ({})'.format(run.folder, clock(time.time() - started)))
    elif status == 'failed':
        counts['failed'] += 1
        progress.event('FAILED  {}: {}; log {}'.format(run.folder, note, record['log']))
    else:
        counts['killed'] = counts.get('killed', 0) + 1
        progress.event('killed  {} ({}); a rerun resumes it'.format(run.folder, note))

