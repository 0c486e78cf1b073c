"""Atomic file writes: a kill never leaves a half-written checkpoint or log (temp file + os.replace)."""
import os
import pickle
import tempfile
from contextlib import contextmanager


def current_umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_open(path, mode='w', **kwargs):
    """Open a temporary file beside `path`; on success it replaces `path` in one rename. The file gets
    the permissions a plain open() would give under the user's umask (mkstemp alone makes it 0600,
    unreadable to collaborators on a shared cluster)."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp_path = tempfile.mkstemp(dir=folder, prefix='.' + os.path.basename(path) + '.', suffix='.tmp')
    os.close(fd)
    os.chmod(tmp_path, 0o666 & ~current_umask())
    try:
        with open(tmp_path, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
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
