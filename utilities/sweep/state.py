"""The sweep's memory: one JSON file in the sweep folder, rewritten atomically after every change.

Per run (keyed by its command line): folder, log, status (pending / running / submitted / done /
failed / killed) and one record per attempt. A SIGKILL of the launcher can only leave a `running`
or `submitted` status behind, which the next launch re-checks against the run folder and the process
or job it names. A lock file keeps two launchers off one sweep folder.
"""
import fcntl
import json
import os
import socket
import time

from utilities.atomic import atomic_write_text

STATE_FILE = 'sweep_state.json'
LOCK_FILE = '.sweep.lock'
FORMAT = 1


class StateError(Exception):
    """Unreadable state, or a sweep folder held by another launcher: reported as one line."""


class SweepState:
    def __init__(self, folder):
        self.folder = os.path.abspath(folder)
        self.path = os.path.join(self.folder, STATE_FILE)
        self.data = {'format': FORMAT, 'runs': {}}
        if os.path.exists(self.path):
            try:
                with open(self.path) as handle:
                    self.data = json.load(handle)
            except (OSError, ValueError) as error:
                raise StateError('{}: unreadable sweep state ({})'.format(self.path, error))
            if self.data.get('format') != FORMAT:
                raise StateError('{}: unknown sweep state format {}'.format(self.path, self.data.get('format')))

    def entry(self, run):
        """The record of `run`, created as pending; folder and log follow the current naming."""
        record = self.data['runs'].setdefault(run.key, {'status': 'pending', 'attempts': []})
        record['line'] = run.command.line
        record['folder'] = run.folder
        return record

    def save(self):
        atomic_write_text(json.dumps(self.data, indent=1, sort_keys=True) + '\n', self.path)

    def start_attempt(self, record, action, **details):
        record['status'] = 'running'
        record['attempts'].append(dict(action=action, started=time.time(), host=socket.gethostname(), **details))
        self.save()

    def end_attempt(self, record, status, **details):
        record['status'] = status
        if record['attempts']:
            record['attempts'][-1].update(ended=time.time(), **details)
        self.save()


def lock_sweep(folder):
    """Hold an exclusive lock on the sweep folder for the launcher's life (released by the kernel on death)."""
    os.makedirs(folder, exist_ok=True)
    handle = open(os.path.join(folder, LOCK_FILE), 'a+')
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        raise StateError('{}: another launcher is running this sweep (pid {})'
                         .format(folder, handle.read().strip() or '?'))
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle
