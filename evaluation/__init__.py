"""One evaluation pass (spec D): metrics, console block, checkpoint on improvement, W&B, progress log."""
import numpy as np

from utilities.atomic import atomic_torch_save
from utilities.misc import redacted_namespace


def evaluate(dataset_name, LOG, metric_computer, loaders, model, opt, evaltypes, device,
             aux_store=None, make_recall_plot=False, store_checkpoints=True, log_key='Test'):
    computed_metrics, extra_infos = metric_computer.compute_standard(opt, model, loaders[0], evaltypes, device)
    numeric_metrics, histogram_metrics = split_metrics(computed_metrics)
    print(result_block(numeric_metrics))
    if store_checkpoints:
        save_improved_checkpoints(LOG, model, opt, evaltypes, numeric_metrics, aux_store, log_key)
    if opt.log_online:
        log_histograms(histogram_metrics, opt.epoch, log_key)
    saver = LOG.progress_saver[log_key]
    for evaltype, values in numeric_metrics.items():
        for name, value in values.items():
            saver.log(name, value, group=metric_group(evaltype, name))
    if make_recall_plot:
        from evaluation.recall_plot import save_sample_recoveries
        info = extra_infos[evaltypes[-1]]  # the reference overwrites one file per evaltype: the last one wins
        save_sample_recoveries(info['features'], info['image_paths'], opt.save_path + '/sample_recoveries.png')


def metric_group(evaltype, metric_name):
    """Progress-saver group of a metric: `<evaltype>_<name before '@'>` (spec D step 6)."""
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


def save_improved_checkpoints(LOG, model, opt, evaltypes, numeric_metrics, aux_store, log_key):
    """Checkpoint when a storage metric beats every value logged so far, strictly (spec D step 4)."""
    saver = LOG.progress_saver[log_key]
    for evaltype in evaltypes:
        for storage_metric in opt.storage_metrics:
            group = metric_group(evaltype, storage_metric)
            if storage_metric not in numeric_metrics.get(evaltype, {}):
                raise ValueError('--storage_metrics {} is not a computed scalar metric; add it to '
                                 '--evaluation_metrics.'.format(storage_metric))
            new_value = numeric_metrics[evaltype][storage_metric]
            if group not in saver.groups or new_value > np.max(saver.groups[group][storage_metric]['content']):
                print('Saved weights for best {}: {}\n'.format(log_key, group))
                path = '{}/checkpoint_{}_{}_{}.pth.tar'.format(LOG.prop.save_path, log_key, evaltype, storage_metric)
                atomic_torch_save({'state_dict': model.state_dict(), 'opt': redacted_namespace(opt),
                                   'progress': LOG.progress_saver, 'aux': aux_store}, path)


def log_histograms(histogram_metrics, epoch, log_key):
    """Each array metric as two W&B histograms at step `epoch`: the values and ln(values) + 20 (spec D step 5)."""
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
