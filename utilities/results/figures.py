"""The reference's four result figures, each saved as PNG and SVG.

Only the benchmark groups take part: "basic" groups contain `CUB_`, `CARS_` or `SOP_`, "regularised"
ones `CUBreg_`, `CARreg_` or `SOPreg_` (LSD and noisy-label groups of this project's sample runs are
in the tables only). Panels without enough groups stay empty: a fit line and its correlation need two
groups with distinct statistics. Label de-overlapping uses the optional `adjustText` package; without
it the labels stay where they are drawn (a warning says so).
"""
import os
import warnings

import numpy as np

from utilities.results.tables import name_adjust

DATASETS = ('CUB', 'CARS', 'SOP')
BASIC_TAGS = {'CUB': 'CUB_', 'CARS': 'CARS_', 'SOP': 'SOP_'}
REG_TAGS = {'CUB': 'CUBreg_', 'CARS': 'CARreg_', 'SOP': 'SOPreg_'}
MATRIX_METRICS = ('R@1', 'R@2', 'R@4', 'NMI', 'F1', 'mAP')
RELATION_STATS = ('Intra', 'Inter', 'Intra_over_Inter', 'Rho3')
RELATION_TITLES = (r'$\pi_{intra}$', r'$\pi_{inter}$', r'$\pi_{ratio}$', r'$\rho(\Phi)$')
RELATION_YLABELS = {'CUB': 'CUB200-2011 R@1', 'CARS': 'CARS196 R@1', 'SOP': 'SOP R@1'}
RELATION_YLIMS = {'CUB': (0.581, 0.638), 'CARS': (0.70, 0.82), 'SOP': (0.67, 0.79)}
MATRIX_TITLES = {'CUB': 'CUB200-2011', 'CARS': 'CARS196', 'SOP': 'Stanford Online Products'}
DETAIL_FILES = {'CUB': 'CUB', 'CARS': 'CAR', 'SOP': 'SOP'}
DETAIL_YLABELS = {'CUB': 'CUB200-2011, R@1', 'CARS': 'CARS196, R@1', 'SOP': 'SOP, R@1'}
DETAIL_YLIMS = {'CUB': (0.58, 0.66), 'CARS': (0.70, 0.84), 'SOP': (0.67, 0.81)}


def benchmark_groups(results, tags):
    """{dataset: sorted groups whose name contains the dataset's tag}."""
    return {d: sorted(g for g in results if tags[d] in g) for d in DATASETS}


def mean_of(results, group, name):
    return results[group].values.get(name, (np.nan, np.nan))[0]


def std_of(results, group, name):
    return results[group].values.get(name, (np.nan, np.nan))[1]


def new_figure(figsize):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    figure = Figure(figsize=figsize)
    FigureCanvasAgg(figure)
    return figure


def save(figure, out_dir, stem):
    paths = []
    for extension in ('png', 'svg'):
        path = os.path.join(out_dir, '{}.{}'.format(stem, extension))
        figure.savefig(path)
        paths.append(path)
    return paths


def relation_panel(axes, x, y, yerr, is_rho):
    """Groups as points with error bars, a degree-1 least-squares fit and its Pearson correlation."""
    colour = 'red' if is_rho else 'black'
    keep = np.isfinite(x) & np.isfinite(y)
    for xi, yi, ei in zip(x[keep], y[keep], yerr[keep]):
        axes.errorbar(xi, yi, yerr=ei, fmt='o', color=np.random.rand(3), ecolor='gray', elinewidth=3,
                      markersize=8)
    if keep.sum() < 2 or np.ptp(x[keep]) == 0:
        return
    lo, hi = 0.9 * np.min(x[keep]), 1.1 * np.max(x[keep])
    slope, intercept = np.polyfit(x[keep], y[keep], 1)
    grid = np.linspace(lo, hi, 50)
    axes.plot(grid, slope * grid + intercept, '--', color=colour, alpha=0.5, linewidth=3)
    correlation = np.corrcoef(x[keep], y[keep])[0, 1]
    y_lo, y_hi = axes.get_ylim()
    axes.text(hi - 0.7 * (hi - lo), y_lo + 0.05 * (y_hi - y_lo), 'Corr: {:.2f}'.format(correlation),
              bbox=dict(facecolor='red' if is_rho else 'gray', alpha=0.5), fontsize=26)


def metric_relation_figure(results, basic, out_dir):
    """comp_metric_relation: Train statistics at the best epoch against test R@1 (3×4 panels)."""
    figure = new_figure((21, 15))
    grid = figure.subplots(3, 4)
    for r, dataset in enumerate(DATASETS):
        groups = basic[dataset]
        recall = np.array([mean_of(results, g, 'R@1') for g in groups], dtype=float)
        recall_std = np.array([std_of(results, g, 'R@1') for g in groups], dtype=float)
        for c, stat in enumerate(RELATION_STATS):
            axes = grid[r, c]
            axes.set_ylim(*RELATION_YLIMS[dataset])
            statistic = np.array([mean_of(results, g, stat) for g in groups], dtype=float)
            relation_panel(axes, statistic, recall, recall_std, is_rho=stat == 'Rho3')
            if r == 0:
                axes.set_title(RELATION_TITLES[c], fontsize=26, color='red' if stat == 'Rho3' else 'black')
            if c == 0:
                axes.set_ylabel(RELATION_YLABELS[dataset], fontsize=23)
            else:
                axes.set_yticklabels([])
            axes.tick_params(axis='both', which='major', labelsize=20)
    figure.tight_layout()
    return save(figure, out_dir, 'comp_metric_relation')


def correlation_figure(results, basic, out_dir):
    """metric_correlation_matrix: Pearson correlations of the six metric means across basic groups."""
    figure = new_figure((22, 8))
    panels = figure.subplots(1, 3)
    for axes, dataset in zip(panels, DATASETS):
        axes.set_title(MATRIX_TITLES[dataset], fontsize=22)
        if len(basic[dataset]) >= 2:
            means = np.array([[mean_of(results, g, m) for m in MATRIX_METRICS] for g in basic[dataset]],
                             dtype=float)
            with np.errstate(invalid='ignore', divide='ignore'):
                matrix = np.corrcoef(means.T)
            axes.imshow(matrix, cmap='plasma', vmin=0, vmax=1)
            for i in range(len(MATRIX_METRICS)):
                for j in range(len(MATRIX_METRICS)):
                    value = matrix[i, j]
                    axes.text(j, i, '-' if np.isnan(value) else '{:.2f}'.format(value),
                              ha='center', va='center', fontsize=18)
        ticks = np.arange(len(MATRIX_METRICS))
        axes.set_xticks(ticks)
        axes.set_xticklabels(MATRIX_METRICS)
        axes.set_yticks(ticks)
        axes.set_yticklabels(MATRIX_METRICS)
        axes.set_xlim(-0.5, 5.5)
        axes.set_ylim(-0.5, 5.5)
        axes.tick_params(axis='both', which='major', labelsize=18)
    figure.tight_layout()
    return save(figure, out_dir, 'metric_correlation_matrix')


def deoverlap(axes, texts):
    try:
        from adjustText import adjust_text
    except ImportError:
        warnings.warn('adjustText is not installed: figure labels are not de-overlapped '
                      '(pip install adjustText)', stacklevel=2)
        return
    if texts:
        adjust_text(texts, ax=axes, arrowprops=dict(arrowstyle='->', color='black'))


def detail_figure(results, dataset, basic, regularised, out_dir):
    """Detailed_Rel_Recall_Rho_<CUB|CAR|SOP>: test R@1 against the Train ρ(Φ) per group."""
    figure = new_figure((25, 5))
    axes = figure.subplots(1, 1)
    axes.grid(True)
    axes.set_xlim(0, 0.59)
    axes.set_ylim(*DETAIL_YLIMS[dataset])
    texts, names = [], []
    for groups, marker_colour, error_colour, text_colour, prefix in (
            (basic, 'deepskyblue', 'deepskyblue', 'black', ''),
            (regularised, 'orange', 'gray', 'chocolate', 'R-')):
        for group in groups:
            x, y = mean_of(results, group, 'Rho3'), mean_of(results, group, 'R@1')
            if not (np.isfinite(x) and np.isfinite(y)):
                continue
            axes.errorbar(x, y, yerr=std_of(results, group, 'R@1'), fmt='o', color=marker_colour,
                          ecolor=error_colour, markersize=16, markeredgecolor='black', elinewidth=5)
            name = name_adjust(group, prefix=prefix, for_plot=True)
            names.append(name)
            texts.append(axes.text(x, y, name, fontsize=17, ha='left', va='top', color=text_colour))
    print(names)
    axes.set_xlabel(r'$\rho(\Phi)$', fontsize=20)
    axes.set_ylabel(DETAIL_YLABELS[dataset], fontsize=20)
    deoverlap(axes, texts)
    figure.tight_layout()
    return save(figure, out_dir, 'Detailed_Rel_Recall_Rho_' + DETAIL_FILES[dataset])


def seaborn_style():
    """The reference's "seaborn" style, renamed "seaborn-v0_8" in matplotlib 3.6."""
    import matplotlib.pyplot as plt
    return 'seaborn' if 'seaborn' in plt.style.available else 'seaborn-v0_8'


def first_page_figure(results, basic, regularised, out_dir):
    """FirstPage: CUB test R@1 of basic and regularised groups as sorted horizontal bars."""
    import matplotlib.pyplot as plt
    bars = [(g, False) for g in basic] + [(g, True) for g in regularised]
    bars = [(g, reg) for g, reg in bars if np.isfinite(mean_of(results, g, 'R@1'))]
    bars.sort(key=lambda bar: mean_of(results, bar[0], 'R@1'))
    with plt.style.context(seaborn_style()):
        figure = new_figure((15, 8))
        axes = figure.subplots(1, 1)
        labelled = set()
        for i, (group, is_reg) in enumerate(bars):
            colour, alpha, label = ('forestgreen', 0.8, 'Regularized Variant') if is_reg else \
                ('orange', 0.6, 'Basic DML Criteria')
            axes.barh(i, mean_of(results, group, 'R@1'), xerr=std_of(results, group, 'R@1'), color=colour,
                      alpha=alpha, label=None if label in labelled else label)
            labelled.add(label)
            axes.text(0.5703, i - 0.2, name_adjust(group, prefix='R-' if is_reg else '', for_plot=True),
                      fontsize=17)
        if bars:
            axes.legend(fontsize=20)
        axes.set_yticks([])
        axes.set_xticks([0.58, 0.60, 0.62, 0.64])
        axes.tick_params(axis='both', which='major', labelsize=22)
        axes.set_title('CUB200-2011, R@1', fontsize=20)
        axes.set_ylim(-0.5, 22.5)
        axes.set_xlim(0.57, 0.655)
        return save(figure, out_dir, 'FirstPage')


def make_figures(results, out_dir):
    """All figures the available groups allow; returns the written paths (empty without benchmark groups)."""
    basic = benchmark_groups(results, BASIC_TAGS)
    regularised = benchmark_groups(results, REG_TAGS)
    if not any(basic[d] or regularised[d] for d in DATASETS):
        return []
    paths = metric_relation_figure(results, basic, out_dir)
    paths += correlation_figure(results, basic, out_dir)
    for dataset in DATASETS:
        if basic[dataset] or regularised[dataset]:
            paths += detail_figure(results, dataset, basic[dataset], regularised[dataset], out_dir)
    if basic['CUB'] or regularised['CUB']:
        paths += first_page_figure(results, basic['CUB'], regularised['CUB'], out_dir)
    return paths
