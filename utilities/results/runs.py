"""One run as both sources deliver it, and the reference's run-name → group rule."""
import dataclasses
import re

import pandas as pd


class ResultsError(Exception):
    """Bad input to Result_Evaluations (a path, a project, a flag value): reported as one line."""


@dataclasses.dataclass
class Run:
    """`history` has one row per logged step, columns named by the W&B keys; `_step` = epoch."""
    name: str
    group: str
    seed: object
    history: pd.DataFrame
    config: dict
    origin: str
    finished: bool = True  # False for a local run folder without training_summary.txt (still running, or killed)


def group_from_name(name):
    """Cut the final `_s<seed>` (split at every `_s`, re-join all pieces but the last).

    A name without `_s` is its own group (the reference would give the empty string).
    """
    if '_s' not in name:
        return name
    return '_s'.join(name.split('_s')[:-1])


def seed_from_name(name):
    """The integer after the final `_s`, or None: informative only, the reference never parses seeds."""
    match = re.search(r'_s(\d+)$', name)
    return int(match.group(1)) if match else None
