"""Display names and the LaTeX tables, in the reference's format.

Beyond the reference's `R-` prefix for spectrum-regularised groups (`reg_` in the name), LSD groups get
`L-` (an `lsd_` or `_lsd` anywhere in the name: `CUBlsd_MS`, `DIG_MS_lsd`) and noisy-label runs a noise
tag (`noisy<percent>` in the first name token, e.g. `CUBnoisy30lsd_Triplet_Distance`). Whatever the naming,
no two groups of one dataset share a display name: names that still collide get their group name added.
"""
import math
import re

from utilities.results.aggregation import VAL_EPOCH, VAL_SUFFIX

# group substring -> (table name, plot name); first match wins.
NAME_RULES = (
    ('Margin_b06_Distance', r'Margin (D, \beta=0.6)', r'Margin (D), \beta=0.6'),
    ('Margin_b12_Distance', r'Margin (D, \beta=1.2)', r'Margin (D), \beta=1.2'),
    ('Margin_Distance', 'Margin (D)', 'Margin (D)'),
    ('ArcFace', 'ArcFace', 'ArcFace'),
    ('Histogram', 'Histogram', 'Histogram'),
    ('SoftTriple', 'SoftTriple', 'SoftTriple'),
    ('Contrastive', 'Contrastive (D)', 'Contrastive (D)'),
    ('Triplet_Distance', 'Triplet (D)', 'Triplet (D)'),
    ('Quadruplet_Distance', 'Quadruplet (D)', 'Quadruplet (D)'),
    ('SNR_Distance', 'SNR (D)', 'SNR (D)'),
    ('Triplet_Random', 'Triplet (R)', 'Triplet (R)'),
    ('Triplet_Semihard', 'Triplet (S)', 'Triplet (S)'),
    ('Triplet_Softhard', 'Triplet (H)', 'Triplet (H)'),
    ('Softmax', 'Softmax', 'Softmax'),
    ('MS', 'Multisimilarity', 'Multisimilarity'),
)
DEFAULT_COLUMNS = ('R@1', 'R@2', 'F1', 'mAP', 'NMI', 'Max_Epoch')
UNSCALED = ('Max_Epoch', 'Intra_over_Inter', 'Intra', 'Inter', 'Rho1', 'Rho2', 'Rho3', 'Rho4')
SHARED_DATASETS = ('CUB', 'CARS', 'SOP')
SHARED_COLUMNS = ('R@1', 'NMI')
PREFIX_ORDER = ('', 'R-', 'L-')
SEEDS_COLUMN = 'Seeds'  # a column holding the number of runs (seeds) behind each row


def name_adjust(group, prefix='', suffix='', for_plot=False):
    for pattern, table_name, plot_name in NAME_RULES:
        if pattern in group:
            name = plot_name if for_plot else table_name
            break
    else:
        tokens = [token for token in group.split('_')[1:] if token != 'lsd']
        name = '_'.join(tokens) or group  # a one-token group keeps its name
    if for_plot:
        name = '$' + name + '$'
    return prefix + name + suffix


def group_prefix(group):
    if 'reg_' in group:
        return 'R-'
    if is_lsd_group(group):
        return 'L-'
    return ''


def is_lsd_group(group):
    """`lsd_` (the reference's `<DS>lsd_` naming) or `_lsd` anywhere in the group name."""
    return 'lsd_' in group or '_lsd' in group


def noise_suffix(group):
    match = re.search(r'noisy(\d+)', group.split('_')[0])
    return r' (noise {}\%)'.format(int(match.group(1))) if match else ''


def table_name(group):
    return name_adjust(group, prefix=group_prefix(group), suffix=noise_suffix(group))


def display_names(results):
    """{group: table name}, unique within each dataset: colliding names get ` [<group>]` appended."""
    names = {group: table_name(group) for group in results}
    seen = {}
    for group in results:
        seen.setdefault((results[group].dataset, names[group]), []).append(group)
    for (_, name), groups in seen.items():
        if len(groups) > 1:
            for group in groups:
                names[group] = '{} [{}]'.format(name, group)
    return names


def cell(mean, std, scale=100.0, half_width=None):
    """`$a\\pm b$`, numbers as '{:2.2f}'; `$-\\pm-$` when the value is missing; with a confidence interval's
    `half_width` (--ci), `$a\\pm b\\,[\\pm c]$`."""
    if mean is None or math.isnan(mean):
        return r'$-\pm-$'
    if half_width is not None:
        shown = '-' if math.isnan(half_width) else '{:2.2f}'.format(half_width * scale)
        return '${:2.2f}\\pm{:2.2f}\\,[\\pm{}]$'.format(mean * scale, std * scale, shown)
    return '${:2.2f}\\pm{:2.2f}$'.format(mean * scale, std * scale)


def row(name, cells):
    return name + ' & ' + ' & '.join(cells) + '\\\\\n'


def unscaled(column):
    """Epochs and embedding statistics are shown as they are; metrics ×100."""
    base = column[:-len(VAL_SUFFIX)] if column.endswith(VAL_SUFFIX) else column
    return base in UNSCALED or base == VAL_EPOCH


def value_cell(result, column):
    if column == SEEDS_COLUMN:
        return str(result.n_runs)
    mean, std = result.values.get(column, (math.nan, math.nan))
    return cell(mean, std, 1.0 if unscaled(column) else 100.0, result.ci.get(column) if result.ci else None)


def markdown_tables(results, columns, label=''):
    """The per-dataset tables as Markdown: `mean ± std` (×100 for metrics), `[± half-width]` with --ci."""
    names = display_names(results)
    parts = []
    for dataset in dataset_order(results):
        lines = ['### {}{}'.format(dataset, label), '',
                 '| group | name | ' + ' | '.join(columns) + ' |', '|---|---|' + '---|' * len(columns)]
        for group in sorted(g for g, r in results.items() if r.dataset == dataset):
            cells = [value_cell(results[group], c).replace('$', '').replace('\\pm', ' ± ').replace('\\,', ' ')
                     for c in columns]
            lines.append('| `{}` | {} | {} |'.format(group, names[group].replace('\\%', '%'), ' | '.join(cells)))
        parts.append('\n'.join(lines) + '\n')
    return '\n'.join(parts)


def dataset_order(results):
    """CUB, CARS, SOP, then any other dataset in sorted order; only datasets that have groups."""
    present = {r.dataset for r in results.values()}
    return [d for d in SHARED_DATASETS if d in present] + sorted(present - set(SHARED_DATASETS))


def dataset_table(results, dataset, columns=DEFAULT_COLUMNS, label=''):
    """Rows of one dataset's table, groups in sorted order; `label` goes into its header comment."""
    lines = ['% {}{}: name & {}\n'.format(dataset, label, ' & '.join(columns))]
    names = display_names(results)
    for group in sorted(g for g, r in results.items() if r.dataset == dataset):
        lines.append(row(names[group], [value_cell(results[group], c) for c in columns]))
    return ''.join(lines)


def shared_table(results, label=''):
    """CUB/CARS/SOP R@1 and NMI side by side, one row per display name."""
    by_dataset = {dataset: {} for dataset in SHARED_DATASETS}
    names = display_names(results)
    for group in sorted(results):
        if results[group].dataset in by_dataset:
            by_dataset[results[group].dataset][names[group]] = results[group]
    names = set().union(*(named.keys() for named in by_dataset.values()))
    prefix_rank = {prefix: rank for rank, prefix in enumerate(PREFIX_ORDER)}

    def order(name):
        prefix = next((p for p in PREFIX_ORDER[1:] if name.startswith(p)), '')
        return prefix_rank[prefix], name

    header = ' & '.join('{} {}'.format(d, c) for d in SHARED_DATASETS for c in SHARED_COLUMNS)
    lines = ['% Shared{}: name & {}\n'.format(label, header)]
    for name in sorted(names, key=order):
        cells = []
        for dataset in SHARED_DATASETS:
            result = by_dataset[dataset].get(name)
            cells += [value_cell(result, c) if result else cell(math.nan, math.nan) for c in SHARED_COLUMNS]
        lines.append(row(name, cells))
    return ''.join(lines)


def all_tables(results, columns=DEFAULT_COLUMNS, label=''):
    """Per-dataset tables (CUB, CARS, SOP, others), then the shared table."""
    parts = [dataset_table(results, dataset, columns, label) for dataset in dataset_order(results)]
    if any(r.dataset in SHARED_DATASETS for r in results.values()):
        parts.append(shared_table(results, label))
    return '\n'.join(parts)
