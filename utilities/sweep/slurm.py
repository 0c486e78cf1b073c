"""The cluster backend: every run is a submitit job (one job per run, or one job array), same state logic.

The job re-decides at start what its run needs (finished: nothing; an epoch completed: `--resume`;
else a fresh start), so a job that Slurm requeues after preemption or a timeout (submitit's
checkpoint/requeue) resumes instead of starting over. `--slurm_local` uses submitit's local executor
(a box without Slurm; the tests).
"""
import os
import signal
import subprocess
import time

import submitit
from submitit.helpers import Checkpointable

from utilities.sweep import children
from utilities.sweep.local import finish
from utilities.sweep.plan import RESUME, SUMMARY, clear_half_folder

ACTIVE = ('PENDING', 'RUNNING', 'REQUEUED', 'CONFIGURING', 'COMPLETING', 'SUSPENDED', 'RESIZING')


class SweepJob(Checkpointable):
    """The callable a job runs; its arguments are plain data so that it pickles."""
    def __init__(self, fresh_argv, resume_argv, folder, log, cwd):
        self.fresh_argv, self.resume_argv = fresh_argv, resume_argv
        self.folder, self.log, self.cwd = folder, log, cwd

    def __call__(self):
        if os.path.isfile(os.path.join(self.folder, SUMMARY)):
            return 0
        if os.path.isfile(os.path.join(self.folder, RESUME)):
            action, argv = 'resume', self.resume_argv
        else:
            if os.path.exists(self.folder):
                clear_half_folder(self.folder)
            action, argv = 'start', self.fresh_argv
        os.makedirs(os.path.dirname(self.log), exist_ok=True)
        with open(self.log, 'a') as log:
            log.write('# sweep: {} in job {} at {}: {}\n'.format(action, os.environ.get('SLURM_JOB_ID', '-'),
                                                               time.strftime('%Y-%m-%d %H:%M:%S'), ' '.join(argv)))
            log.flush()
            return subprocess.run(argv, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, env=dict(os.environ, PYTHONUNBUFFERED='1')).returncode


def minutes(text):
    """--slurm_time as minutes: `90`, `1:30:00` or `2-00:00:00`."""
    days, _, clock_text = text.rpartition('-')
    parts = [int(p) for p in clock_text.split(':')]
    if len(parts) == 1:
        total = parts[0]
    else:
        parts = [0] * (3 - len(parts)) + parts
        total = parts[0] * 60 + parts[1] + (1 if parts[2] else 0)
    return total + int(days or 0) * 24 * 60


def make_executor(options, sweep_folder):
    cluster = 'local' if options.slurm_local else 'slurm'
    executor = submitit.AutoExecutor(folder=os.path.join(sweep_folder, 'submitit', '%j'), cluster=cluster)
    parameters = dict(name=options.slurm_job_name, timeout_min=minutes(options.slurm_time),
                      gpus_per_node=options.slurm_gpus_per_node, cpus_per_task=options.slurm_cpus_per_task,
                      nodes=1, tasks_per_node=1)
    if options.slurm_mem_gb:
        parameters['mem_gb'] = options.slurm_mem_gb
    if not options.slurm_local:
        extra = {k: v for k, v in (('account', options.slurm_account), ('qos', options.slurm_qos),
                                   ('constraint', options.slurm_constraint)) if v}
        parameters.update(slurm_partition=options.slurm_partition or None,
                          slurm_array_parallelism=options.slurm_array_parallelism,
                          slurm_additional_parameters=extra, slurm_setup=options.slurm_setup)
        parameters = {k: v for k, v in parameters.items() if v is not None}
    executor.update_parameters(**parameters)
    return executor


def reattach(record, options, sweep_folder):
    """The job a previous launch submitted, if it is still queued or running; else None."""
    job_id = record.get('job_id')
    if not job_id:
        return None
    if options.slurm_local:
        attempt = record['attempts'][-1] if record['attempts'] else {}
        children.stop_survivor(attempt.get('pid'), attempt.get('pid_ticks'))
        return None
    job = submitit.SlurmJob(folder=os.path.join(sweep_folder, 'submitit', '%j'), job_id=job_id)
    return job if job.state.split()[0] in ACTIVE else None


def submit(queue, executor, python, state, progress, use_array):
    """Submit every queued run; returns [(item, job)]."""
    cwd = os.getcwd()
    calls = []
    for item in queue:
        run, record, action = item
        calls.append(SweepJob(run.fresh_argv(python), run.resume_argv(python), run.folder, record['log'], cwd))
    if use_array and calls:
        with executor.batch():
            jobs = [executor.submit(call) for call in calls]
    else:
        jobs = [executor.submit(call) for call in calls]
    submitted = []
    for item, job in zip(queue, jobs):
        run, record, action = item
        record['job_id'] = str(job.job_id)
        details = {'job_id': str(job.job_id)}
        if str(job.job_id).isdigit() and executor.cluster == 'local':
            details.update(pid=int(job.job_id), pid_ticks=children.start_ticks(int(job.job_id)))
        state.start_attempt(record, action, **details)
        record['status'] = 'submitted'
        progress.event('submit  [job {}] {}'.format(job.job_id, run.folder))
        submitted.append((item, job))
    state.save()
    return submitted


def watch(jobs, state, progress, counts, poll=1.0):
    """Wait for `jobs`; a stop signal cancels them (marked killed). Returns the launcher's exit status."""
    stopped = {'signum': None}

    def on_signal(signum, frame):
        stopped['signum'] = stopped['signum'] or signum
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    started = time.time()
    pending = list(jobs)
    counts['running'] += len(pending)
    counts['pending'] -= len(pending)
    try:
        while pending:
            if stopped['signum'] is not None and not stopped.get('cancelled'):
                stopped['cancelled'] = True
                for _, job in pending:
                    job.cancel(check=False)
            for entry in list(pending):
                (run, record, action), job = entry
                if not job.done():
                    continue
                pending.remove(entry)
                try:
                    returncode = job.result()
                except Exception as error:  # the job itself died: its message is in the submitit logs
                    returncode, note = -1 if stopped['signum'] else 1, str(error).splitlines()[0][:200]
                else:
                    note = ''
                finish((run, record, action), returncode, stopped['signum'] is not None, started, state, progress,
                       counts, note)
            progress.show(counts, [time.time() - started] * len(pending))
            if pending:
                time.sleep(poll)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        progress.close()
    if stopped['signum'] is not None:
        return 128 + stopped['signum']
    return 1 if counts['failed'] else 0
