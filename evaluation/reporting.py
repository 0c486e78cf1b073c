"""Consumers of an evaluation result that only report it: the console block, the progress log (turned
into CSV rows, plots and W&B scalars by utilities.logger.LOGGER.update) and the W&B histograms."""
import numpy as np


def metric_group(evaltype, metric_name):
    """Progress-saver group of a metric: `<evaltype>_<name before '@'>` ."""
    return '{}_{}'.format(evaltype, metric_name.split('@')[0])


def result_block(metrics):
    """`Embed-Type: <evaltype>:` then `name: value` (4 decimals) joined by ' | ', per evaltype."""
    text = ''
    for evaltype, values in metrics.items():
        text += 'Embed-Type: {}:\n'.format(evaltype)
        text += ' | '.join('{}: {:4.4f}'.format(name, value) for name, value in values.items()) + '\n'
    return text


def log_metrics(progress_saver, metrics, *, epoch=None):
    """Every scalar into `progress_saver` (segment: its name, group: metric_group); first an `epochs` row
    when `epoch` is given (with --evaluate_every > 1, where evaluated epochs are not every epoch)."""
    if epoch is not None:
        progress_saver.log('epochs', epoch)
    for evaltype, values in metrics.items():
        for name, value in values.items():
            progress_saver.log(name, value, group=metric_group(evaltype, name))


def log_histograms(histograms, *, epoch, log_key):
    """Each array metric as two W&B histograms at step `epoch`: the values and ln(values) + 20 ."""
    import wandb

    for evaltype, values in histograms.items():
        for name, hist in values.items():
            edges = list(np.arange(len(hist) + 1))
            with np.errstate(divide='ignore'):
                log_hist = np.log(hist) + 20
            wandb.log({'{}: {}_{}'.format(log_key, evaltype, name): wandb.Histogram(np_histogram=(list(hist), edges))},
                      step=epoch)
            wandb.log({'{}: {}_LOG-{}'.format(log_key, evaltype, name):
                       wandb.Histogram(np_histogram=(list(log_hist), edges))}, step=epoch)
