"""One evaluation pass: embed, metrics, console block, checkpoint on improvement, W&B, progress log."""
import contextlib

import numpy as np

from evaluation.embedding import Embedder
from utilities.atomic import atomic_torch_save

__all__ = ['Embedder', 'evaluate', 'metric_group', 'result_block']


def evaluate(LOG, metric_computer, loader, embedder, *, evaltypes, storage_metrics, recorded_options, epoch,
             log_key='Test', log_online=False, n_threads=1, make_recall_plot=False, store_checkpoints=True,
             aux_store=None, log_epoch=False, write_files=True):
    """Evaluate one loader and log it under `log_key` (Test / Val / Train). `log_epoch` adds an `epochs`
    row (used with --evaluate_every > 1, where evaluated epochs are not every epoch)."""
    labels, features, _ = embedder(loader, evaltypes)
    if not write_files:      # a data-parallel helper process: the main process computes and logs
        return None
    world = embedder.world
    if world is not None and world.enabled:
        from runtime.distributed import preserved_random_state
        # work of the main process alone must not advance its random streams past the other processes'
        random_streams = preserved_random_state()
    else:
        random_streams = contextlib.nullcontext()
    with random_streams:
        return _metrics_and_logs(LOG, metric_computer, loader, embedder.model, labels, features, evaltypes,
                                 storage_metrics, recorded_options, epoch, log_key, log_online, n_threads,
                                 make_recall_plot, store_checkpoints, aux_store, log_epoch)


def _metrics_and_logs(LOG, metric_computer, loader, model, labels, features, evaltypes, storage_metrics,
                      recorded_options, epoch, log_key, log_online, n_threads, make_recall_plot, store_checkpoints,
                      aux_store, log_epoch):
    dataset = getattr(loader.dataset, 'dataset', loader.dataset)  # the whole split under torchrun's shards
    roles = getattr(dataset, 'query_gallery', None)  # a split evaluated query against gallery
    computed_metrics, extra_infos = metric_computer.compute_of_embeddings(
        labels, features, evaltypes, n_threads, getattr(dataset, 'image_paths', None),
        **({} if roles is None else {'query_gallery': roles}))
    numeric_metrics, histogram_metrics = split_metrics(computed_metrics)
    print(result_block(numeric_metrics))
    if store_checkpoints:
        save_improved_checkpoints(LOG, model, recorded_options, evaltypes, storage_metrics,
                                  numeric_metrics, aux_store, log_key)
    if log_online:
        log_histograms(histogram_metrics, epoch, log_key)
    saver = LOG.progress_saver[log_key]
    if log_epoch:
        saver.log('epochs', epoch)
    for evaltype, values in numeric_metrics.items():
        for name, value in values.items():
            saver.log(name, value, group=metric_group(evaltype, name))
    if make_recall_plot:
        from evaluation.recall_plot import save_sample_recoveries
        info = extra_infos[evaltypes[-1]]  # the reference overwrites one file per evaltype: the last one wins
        save_sample_recoveries(info['features'], info['image_paths'], LOG.save_path + '/sample_recoveries.png')
    return numeric_metrics


def metric_group(evaltype, metric_name):
    """Progress-saver group of a metric: `<evaltype>_<name before '@'>` ."""
    return '{}_{}'.format(evaltype, metric_name.split('@')[0])


def split_metrics(computed_metrics):
    """Array-valued results (rho_spectrum@0) are histograms, everything else a numeric metric."""
    numeric, histogram = {}, {}
    for evaltype, values in computed_metrics.items():
        for name, value in values.items():
            target = histogram if isinstance(value, np.ndarray) else numeric
            target.setdefault(evaltype, {})[name] = value
    return numeric, histogram


def result_block(numeric_metrics):
    """`Embed-Type: <evaltype>:` then `name: value` (4 decimals) joined by ' | ', per evaltype."""
    text = ''
    for evaltype, values in numeric_metrics.items():
        text += 'Embed-Type: {}:\n'.format(evaltype)
        text += ' | '.join('{}: {:4.4f}'.format(name, value) for name, value in values.items()) + '\n'
    return text


def save_improved_checkpoints(LOG, model, recorded_options, evaltypes, storage_metrics, numeric_metrics,
                              aux_store, log_key):
    """Checkpoint when a storage metric beats every value logged so far, strictly (a tie keeps the older)."""
    saver = LOG.progress_saver[log_key]
    for evaltype in evaltypes:
        for storage_metric in storage_metrics:
            group = metric_group(evaltype, storage_metric)
            if storage_metric not in numeric_metrics.get(evaltype, {}):
                raise ValueError('--storage_metrics {} is not a computed scalar metric; add it to '
                                 '--evaluation_metrics.'.format(storage_metric))
            new_value = numeric_metrics[evaltype][storage_metric]
            if group not in saver.groups or new_value > np.max(saver.groups[group][storage_metric]['content']):
                print('Saved weights for best {}: {}\n'.format(log_key, group))
                path = '{}/checkpoint_{}_{}_{}.pth.tar'.format(LOG.save_path, log_key, evaltype, storage_metric)
                atomic_torch_save({'state_dict': model.state_dict(), 'opt': recorded_options,
                                   'progress': LOG.progress_saver, 'aux': aux_store}, path)


def log_histograms(histogram_metrics, epoch, log_key):
    """Each array metric as two W&B histograms at step `epoch`: the values and ln(values) + 20 ."""
    import wandb

    for evaltype, values in histogram_metrics.items():
        for name, hist in values.items():
            edges = list(np.arange(len(hist) + 1))
            with np.errstate(divide='ignore'):
                log_hist = np.log(hist) + 20
            wandb.log({'{}: {}_{}'.format(log_key, evaltype, name): wandb.Histogram(np_histogram=(list(hist), edges))},
                      step=epoch)
            wandb.log({'{}: {}_LOG-{}'.format(log_key, evaltype, name):
                       wandb.Histogram(np_histogram=(list(log_hist), edges))}, step=epoch)
