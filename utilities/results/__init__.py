"""Offline aggregation of finished runs: the pieces behind `Result_Evaluations.py` (the reference's Result_Evaluations, as a command line).

runs.py (one run, group parsing), wandb_source.py / local_source.py (where runs come from),
saved_options.py (reading a run folder's options), aggregation.py (best values, mean ± std), selection.py (the
epoch chosen on the validation split), tables.py (display names, LaTeX), figures.py (the figures).
"""
