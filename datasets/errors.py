"""The one error a dataset raises for bad user input: a missing/empty folder, an unreadable image, a bad flag.

Messages are single lines naming the path (with the expected layout) or the flag, so the trainer can
print them instead of a traceback.
"""
import os


class DatasetError(Exception):
    """A dataset cannot be built or read; the message names the path or the flag."""


def require_folder(path, layout):
    """A missing or empty dataset folder is reported with the layout the builder expects, so the user sees
    how to lay the folder out."""
    if not os.path.isdir(path):
        raise DatasetError('Dataset folder {} not found; expected layout: {}'.format(path, layout))
    if not os.listdir(path):
        raise DatasetError('Dataset folder {} is empty; expected layout: {}'.format(path, layout))


def require_file(path, layout):
    if not os.path.isfile(path):
        raise DatasetError('Dataset file {} not found; expected layout: {}'.format(path, layout))
