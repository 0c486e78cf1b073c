"""Atomic file writes: a kill never leaves a half-written checkpoint or log (temp file + os.replace).

A write that fails (a full disk, a quota, a vanished folder) leaves the previous file as it was and
raises WriteError, whose message names the file and the system's error in one line.
"""
import errno
import os
import pickle
import tempfile
from contextlib import contextmanager


def current_umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class WriteError(OSError):
    """A file could not be written; `path` is the file the user knows (not the temporary one)."""

    def __init__(self, path, cause):
        code = cause.errno if isinstance(cause, OSError) else None
        reason = (cause.strerror or str(cause)) if isinstance(cause, OSError) else str(cause)
        super().__init__(code, 'cannot write {}: {}{}'.format(
            path, reason, ' (errno {}, {})'.format(code, errno.errorcode.get(code, '?')) if code else ''))
        self.path = path

    def __str__(self):
        return self.strerror


def os_error_behind(error):
    """The OSError that caused `error` (torch.save reports a full disk as a RuntimeError whose context is the
    OSError), or None when no system error is involved."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, OSError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


@contextmanager
def atomic_open(path, mode='w', **kwargs):
    """Open a temporary file beside `path`; on success it replaces `path` in one rename. The file gets
    the permissions a plain open() would give under the user's umask (mkstemp alone makes it 0600,
    unreadable to collaborators on a shared cluster). A system error on the way is a WriteError naming
    `path`; `path` itself is then untouched."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp_path = tempfile.mkstemp(dir=folder, prefix='.' + os.path.basename(path) + '.', suffix='.tmp')
        os.close(fd)
        os.chmod(tmp_path, 0o666 & ~current_umask())
    except OSError as error:
        raise WriteError(path, error) from error
    try:
        with open(tmp_path, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_path, path)
    except BaseException as error:
        try:
            os.remove(tmp_path)
        except OSError:
            pass
        cause = None if isinstance(error, WriteError) else os_error_behind(error)
        if cause is not None:
            raise WriteError(path, cause) from error
        raise


def atomic_torch_save(obj, path):
    import torch  # here, so that tools which only write text (the sweep launcher) start without torch
    with atomic_open(path, 'wb') as handle:
        torch.save(obj, handle)


def atomic_pickle_dump(obj, path):
    with atomic_open(path, 'wb') as handle:
        pickle.dump(obj, handle)


def atomic_write_text(text, path):
    with atomic_open(path, 'w', newline='') as handle:
        handle.write(text)


def atomic_write_bytes(data, path):
    with atomic_open(path, 'wb') as handle:
        handle.write(data)
