"""Confidence intervals of group means and paired baseline-vs-LSD comparisons (`--ci`, `--paired`).

Interval of a mean: Student's t-interval over the runs (seeds), half-width t_{(1+c)/2, n-1} · s/√n with s the
sample std (ddof 1); NaN below two runs. Paired comparison of a loss: its LSD group against its baseline
group over the seeds both have; per metric the mean of the per-seed differences (LSD − baseline), its
t-interval, and the two-sided paired t-test's p-value (scipy.stats.ttest_rel). A group's baseline is its
name without the LSD tag: `CUBlsd_MS` -> `CUB_MS`, `DIGnoisy30lsd_MS` -> `DIGnoisy30_MS`, `DIG_MS_lsd` -> `DIG_MS`.
"""
import math

import numpy as np

PAIRED_COLUMNS = ('loss', 'metric', 'n', 'mean_diff', 'ci_low', 'ci_high', 'p_value')


def t_half_width(values, confidence):
    """Half-width of the t-interval of the mean of `values` (NaN values dropped)."""
    from scipy import stats
    array = np.asarray(values, dtype=float)
    array = array[np.isfinite(array)]
    if len(array) < 2:
        return math.nan
    sem = stats.sem(array)
    if sem == 0:
        return 0.0
    low, high = stats.t.interval(confidence, len(array) - 1, loc=float(np.mean(array)), scale=sem)
    return float(high - low) / 2


def baseline_of(group):
    """The baseline group name of an LSD group, None for a group without the LSD tag."""
    if 'lsd_' in group:
        return group.replace('lsd_', '_', 1)
    if group.endswith('_lsd') or '_lsd_' in group:
        return group.replace('_lsd', '', 1)
    return None


def paired_difference(base, lsd, confidence=0.95):
    """(n, mean_diff, ci_low, ci_high, p_value) of LSD − baseline over paired values (NaN pairs dropped)."""
    from scipy import stats
    base, lsd = np.asarray(base, dtype=float), np.asarray(lsd, dtype=float)
    keep = np.isfinite(base) & np.isfinite(lsd)
    base, lsd = base[keep], lsd[keep]
    n = len(base)
    if n == 0:
        return 0, math.nan, math.nan, math.nan, math.nan
    diffs = lsd - base
    mean = float(np.mean(diffs))
    if n < 2:
        return n, mean, math.nan, math.nan, math.nan
    sem = stats.sem(diffs)
    if sem == 0:
        return n, mean, mean, mean, math.nan
    low, high = stats.t.interval(confidence, n - 1, loc=mean, scale=sem)
    return n, mean, float(low), float(high), float(stats.ttest_rel(lsd, base).pvalue)


def paired_rows(results, metrics, confidence=0.95):
    """One row (dict of PAIRED_COLUMNS) per (LSD group with a baseline group, metric), over common seeds."""
    rows = []
    for group in sorted(results):
        base_group = baseline_of(group)
        if base_group is None or base_group not in results:
            continue
        lsd, base = results[group], results[base_group]
        common = sorted(set(lsd.seeds) & set(base.seeds), key=str)
        for metric in metrics:
            if metric not in lsd.per_run or metric not in base.per_run:
                continue
            base_by_seed = dict(zip(base.seeds, base.per_run[metric]))
            lsd_by_seed = dict(zip(lsd.seeds, lsd.per_run[metric]))
            n, mean, low, high, p = paired_difference([base_by_seed[s] for s in common],
                                                      [lsd_by_seed[s] for s in common], confidence)
            rows.append(dict(loss=base_group, metric=metric, n=n, mean_diff=mean, ci_low=low, ci_high=high,
                             p_value=p))
    return rows


def markdown_table(rows, confidence, scale=100.0):
    level = '{:g} %'.format(confidence * 100)
    lines = ['| loss | metric | n | mean diff (LSD − base) | {} interval | p (paired t) |'.format(level),
             '|---|---|---|---|---|---|']
    for r in rows:
        lines.append('| {} | {} | {} | {} | {} | {} |'.format(
            r['loss'], r['metric'], r['n'], number(r['mean_diff'], scale, signed=True),
            '[{}, {}]'.format(number(r['ci_low'], scale, signed=True), number(r['ci_high'], scale, signed=True)),
            '-' if math.isnan(r['p_value']) else '{:.3g}'.format(r['p_value'])))
    return '\n'.join(lines) + '\n'


def latex_table(rows, confidence, scale=100.0):
    lines = ['% Paired LSD - baseline ({:g}% t-interval, paired t-test): loss & metric & n & diff & interval & p\n'
             .format(confidence * 100)]
    for r in rows:
        lines.append('{} & {} & {} & ${}$ & $[{}, {}]$ & {}\\\\\n'.format(
            r['loss'].replace('_', r'\_'), r['metric'], r['n'], number(r['mean_diff'], scale, signed=True),
            number(r['ci_low'], scale, signed=True), number(r['ci_high'], scale, signed=True),
            '-' if math.isnan(r['p_value']) else '{:.3g}'.format(r['p_value'])))
    return ''.join(lines)


def number(value, scale, signed=False):
    if value is None or math.isnan(value):
        return '-'
    return ('{:+.2f}' if signed else '{:.2f}').format(value * scale)


def paired_figure(rows, out_folder, confidence, scale=100.0):
    """paired.png / .svg: per metric, each loss's mean difference with its interval; None without rows."""
    import os
    if not rows:
        return None
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    metrics = list(dict.fromkeys(r['metric'] for r in rows))
    losses = list(dict.fromkeys(r['loss'] for r in rows))
    figure, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics) + 1.5, 0.35 * len(losses) + 1.5),
                                sharey=True, squeeze=False)
    for axis, metric in zip(axes[0], metrics):
        chosen = {r['loss']: r for r in rows if r['metric'] == metric}
        for y, loss in enumerate(losses):
            r = chosen.get(loss)
            if r is None or math.isnan(r['mean_diff']):
                continue
            low, high = r['ci_low'], r['ci_high']
            error = [[(r['mean_diff'] - low) * scale], [(high - r['mean_diff']) * scale]] if not math.isnan(low) \
                else None
            axis.errorbar(r['mean_diff'] * scale, y, xerr=error, fmt='o', capsize=3,
                          color='tab:green' if not math.isnan(low) and low > 0 else
                          'tab:red' if not math.isnan(high) and high < 0 else 'tab:gray')
        axis.axvline(0, color='black', linewidth=0.8)
        axis.set_title(metric)
        axis.set_xlabel('LSD − baseline (×100)')
    axes[0][0].set_yticks(range(len(losses)))
    axes[0][0].set_yticklabels(losses)
    axes[0][0].invert_yaxis()
    figure.suptitle('Paired difference over common seeds, {:g} % t-interval'.format(confidence * 100))
    figure.tight_layout()
    paths = []
    for extension in ('png', 'svg'):
        path = os.path.join(out_folder, 'paired.' + extension)
        figure.savefig(path)
        paths.append(path)
    plt.close(figure)
    return paths
