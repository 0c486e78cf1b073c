"""Runs of one W&B project through the public API; wandb is imported here only."""
from utilities.results.runs import ResultsError, Run, group_from_name, seed_from_name


def open_api():
    try:
        import wandb
    except ImportError as error:
        raise ResultsError('--source wandb needs the wandb package (pip install wandb): {}'.format(error))
    return wandb.Api()


def load_wandb_runs(project, api=None, samples=500):
    """Name, sampled history (`run.history`, W&B's default 500 samples) and config minus `_` keys of every run."""
    api = open_api() if api is None else api
    runs = []
    try:
        for run in api.runs(project):
            history = run.history(samples=samples)
            config = {k: v for k, v in dict(run.config).items() if not k.startswith('_')}
            runs.append(Run(name=run.name, group=group_from_name(run.name), seed=seed_from_name(run.name),
                            history=history, config=config,
                            origin='wandb:{}/{}'.format(project, getattr(run, 'id', run.name))))
    except ResultsError:
        raise
    except Exception as error:
        raise ResultsError('--project {}: could not read the runs from W&B ({}: {})'.format(
            project, type(error).__name__, str(error).splitlines()[0] if str(error) else ''))
    if not runs:
        raise ResultsError('--project {}: the project has no runs'.format(project))
    return runs
