"""Offline aggregation of finished runs: the pieces behind `Result_Evaluations.py` (spec: data_metrics.md §E).

runs.py (one run, group parsing), wandb_source.py / local_source.py (where runs come from),
saved_options.py (reading a run folder's options), aggregation.py (§E.3-E.4), tables.py (§E.5-E.6),
figures.py (§E.7).
"""
