"""Child processes of the local scheduler: own process group, die with the launcher, identity checks.

Each trainer runs in its own process group so that a stop reaches it and its data-loader workers
and nothing else. PR_SET_PDEATHSIG makes the kernel send it SIGTERM if the launcher dies, even by
SIGKILL, so no orphan keeps training while a rerun resumes the same run folder. The pid and the
kernel start time are recorded so a rerun can recognise a survivor (no PDEATHSIG outside Linux).
"""
import ctypes
import os
import signal
import time

PR_SET_PDEATHSIG = 1


def _detach_and_tie_to_parent():
    os.setpgrp()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):
        pass


def preexec_function():
    return _detach_and_tie_to_parent


def start_ticks(pid):
    """Kernel start time of `pid` (field 22 of /proc/<pid>/stat), None if unknown or gone."""
    try:
        with open('/proc/{}/stat'.format(pid)) as handle:
            return int(handle.read().rsplit(')', 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def stop_survivor(pid, ticks, grace=10.0):
    """If the process recorded as (pid, ticks) still runs, stop its group: SIGTERM, then SIGKILL."""
    if not pid or ticks is None or start_ticks(pid) != ticks:
        return False
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except OSError:
            return True
        deadline = time.time() + wait
        while time.time() < deadline and start_ticks(pid) == ticks:
            time.sleep(0.1)
        if start_ticks(pid) != ticks:
            return True
    return True
