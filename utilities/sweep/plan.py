"""What a run needs now, read from its run folder (the truth) and its state record (what we did).

done: `training_summary.txt` exists. resume: `resume_state.pth.tar` exists (an epoch was completed).
restart: a folder this sweep created but that holds no completed epoch; it is removed first, so the
trainer does not add `_1` beside it, and nothing is lost (the run's log lives in the sweep's logs/).
conflict: a folder this sweep never started and that cannot be resumed; it is left alone.
A failed run stays failed unless `--retry_failed`.
"""
import os
import shutil

SUMMARY = 'training_summary.txt'
RESUME = 'resume_state.pth.tar'


def decide(record, retry_failed):
    """One of done, failed, resume, restart, start, conflict."""
    folder = record['folder']
    if os.path.isfile(os.path.join(folder, SUMMARY)):
        return 'done'
    if record['status'] == 'failed' and not retry_failed:
        return 'failed'
    if os.path.isfile(os.path.join(folder, RESUME)):
        return 'resume'
    if os.path.exists(folder):
        return 'restart' if record['attempts'] else 'conflict'
    return 'start'


def clear_half_folder(folder):
    """Remove a run folder that holds no completed epoch (only called for folders this sweep started)."""
    if os.path.isfile(os.path.join(folder, RESUME)) or os.path.isfile(os.path.join(folder, SUMMARY)):
        raise RuntimeError('refusing to remove {}: it holds a completed epoch'.format(folder))
    shutil.rmtree(folder)
