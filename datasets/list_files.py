"""Reading the plain-text image lists the benchmarks ship (In-Shop's partition, iNaturalist's split lists).

A malformed line is reported as one line naming the file and its 1-based line number, so a user can open
the file at that line; nothing is built from a file with a bad line.
"""
from datasets.errors import DatasetError


def malformed(path, line_number, what, layout):
    return DatasetError('{}, line {}: {}; expected layout: {}'.format(path, line_number, what, layout))


def numbered_lines(path):
    """(1-based line number, whitespace-split fields) of every non-blank line."""
    with open(path) as handle:
        return [(number, line.split()) for number, line in enumerate(handle, start=1) if line.strip()]
