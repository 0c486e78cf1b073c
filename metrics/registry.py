"""Metric registry: a metric name of --evaluation_metrics -> a metric object."""
from metrics import dists, f1, map_at_r, mean_average_precision, nmi, recall, rho_spectrum
from metrics.errors import UnknownMetricError

DEFAULT_METRICS = ['e_recall@1', 'e_recall@5', 'e_recall@10', 'nmi', 'f1', 'mAP_1000', 'mAP_lim', 'mAP_c',
                   'dists@intra', 'dists@inter', 'dists@intra_over_inter', 'rho_spectrum@0',
                   'rho_spectrum@-1', 'rho_spectrum@1', 'rho_spectrum@2', 'rho_spectrum@10']


def parameter(name, what):
    """The integer after the last '@' (k of recall@k, mode of rho_spectrum@k)."""
    try:
        return int(name.split('@')[-1])
    except ValueError:
        raise UnknownMetricError('Metric {} not available! ({} after "@" must be an integer)'
                                 .format(name, what)) from None


def select(name, opt):
    if 'e_recall' in name or 'c_recall' in name:
        k = parameter(name, 'k')
        if k < 1:
            raise UnknownMetricError('Metric {} not available! (k must be at least 1)'.format(name))
        return recall.Metric(k, cosine='e_recall' not in name)
    if name in ('nmi', 'c_nmi'):
        return nmi.Metric(cosine=name == 'c_nmi')
    if name in ('f1', 'c_f1'):
        return f1.Metric(cosine=name == 'c_f1')
    for variant in mean_average_precision.VARIANTS:
        if name in (variant, 'c_' + variant):
            return mean_average_precision.Metric(variant, cosine=name.startswith('c_'))
    if name in ('mAP@R', 'r_precision', 'c_mAP@R', 'c_r_precision'):
        return map_at_r.Metric(name[2:] if name.startswith('c_') else name, cosine=name.startswith('c_'))
    if 'dists' in name:
        mode = name.split('@')[-1]
        if mode not in dists.MODES:
            raise UnknownMetricError('Metric {} not available! (mode must be one of {})'
                                     .format(name, ', '.join(dists.MODES)))
        return dists.Metric(mode)
    if 'rho_spectrum' in name:
        return rho_spectrum.Metric(parameter(name, 'k'), getattr(opt, 'rho_spectrum_embed_dim', None))
    raise UnknownMetricError('Metric {} not available!'.format(name))

