"""Resumable sweeps of trainer command lines: `python -m utilities.sweep <commands file> [options]`.

commands.py reads the file as bash would, naming.py gives each run a deterministic folder, state.py
remembers what was done, plan.py decides what each run needs, local.py / slurm.py run them,
progress.py draws the live line.
"""
