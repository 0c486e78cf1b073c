"""Aggregate finished runs into the paper's tables and figures.

    python Result_Evaluations.py --source wandb --project <entity>/<project> [--out DIR]
    python Result_Evaluations.py --source local --path <save_path> [--out DIR]

`wandb` reads every run of a W&B project (its name `<group>_s<seed>` gives the group); `local` reads
every run folder below `--path` (`CSV_Logs/`, options from `hypa.pkl` or `Parameter_Info.txt`; the
group and seed are the saved `--group`/`--seed`). Per group: mean ± std (ddof 0) over its runs of the
best R@1, R@2, R@4, NMI, F1, mAP (plus R@5, R@10, mAP@R = mAP_c, mAP@1000, mAP_lim when logged), the
epoch of the best R@1 and the Train embedding statistics at that epoch. Runs with at most
`--min_length` logged epochs are left out (reference: 40). Local run folders without
`training_summary.txt` have not finished (a sweep still running): they are left out unless
`--include_unfinished`; the overview printed after the tables gives, per row, the number of runs
(seeds) used and how many were left out.

Selection without the test set: for runs trained with `--use_tv_split`, the Test metrics are also read
at the epoch of the best Val value of the run's first `--storage_metrics` (first epoch of the maximum),
as `<name> at best Val` in summary.csv and in the overview, next to the best-over-epochs values (which
select on the test set). `--selection best_val` makes the LaTeX tables show those instead.

Written to `--out`: `--tex` (the per-dataset tables, then the shared CUB/CARS/SOP table; also printed),
`result_tables.md` (the per-dataset tables in Markdown), `summary.csv` (every aggregated value), and the
reference's figures as PNG and SVG.

Intervals (`--ci 0.95`): the half-width of each mean's Student t-interval over the runs, as `[± c]` after
`mean ± std` and as `<name> ci` in summary.csv. Paired comparisons (`--paired`): every LSD group against its
baseline group (its name without the LSD tag, e.g. `DIGlsd_MS` against `DIG_MS`) over the seeds both
have, per table column: mean difference, its t-interval and the paired t-test p-value, in `paired.csv`
(loss, metric, n, mean_diff, ci_low, ci_high, p_value), `paired.md`, the .tex and `paired.png`
(utilities/results/intervals.py).

Missing metrics: a key that a run did not log is NaN for that run and a warning names it; a table
cell whose value is NaN shows `$-\\pm-$`. This project's default recall ks are 1, 5, 10 and it logs
`mAP_c` instead of `mAP`, so for its runs pick columns with e.g.
`--columns R@1 R@5 F1 mAP@R NMI Max_Epoch`. In-Shop runs (groups tagged `InShop` or `--dataset inshop`)
report `--columns R@1 R@10 R@20 R@30 R@40 MAP@R`, iNaturalist runs (`iNat`) `--columns R@1 R@4 R@16 R@32
MAP@R`, when those metrics were logged (`MAP@R` is Musgrave et al.'s mAP@R; `mAP@R` above is mAP_c).
"""
import argparse
import os
import sys
import warnings

import pandas as pd

from utilities.results import aggregation, figures, intervals, tables
from utilities.results.local_source import load_local_runs
from utilities.results.runs import ResultsError
from utilities.results.wandb_source import load_wandb_runs

DEFAULT_PROJECT = 'confusezius/RevisitDML'


def build_parser():
    parser = argparse.ArgumentParser(description='Tables and figures from finished runs (W&B or local).')
    parser.add_argument('--source', choices=('wandb', 'local'), default='wandb',
                        help='Read runs from a W&B project or from local run folders.')
    parser.add_argument('--project', default=DEFAULT_PROJECT, help='W&B path <entity>/<project> (--source wandb).')
    parser.add_argument('--path', default=None, nargs='+',
                        help='Folder(s) holding run folders, e.g. the --save_path of the training runs (--source local).')
    parser.add_argument('--out', default='.', help='Output folder for the .tex, summary.csv and the figures.')
    parser.add_argument('--tex', default='result_tables.tex', help='File name of the LaTeX tables inside --out.')
    parser.add_argument('--min_length', type=int, default=aggregation.MIN_LENGTH,
                        help='A run counts only if it logged more than this many epochs (reference: 40).')
    parser.add_argument('--selection', choices=aggregation.SELECTIONS, default='max',
                        help='What the LaTeX tables show. max: every Test metric\'s own best epoch (reference); '
                             'best_r1: all read at the best Test R@1 epoch; best_val: all read at the epoch of the '
                             'best Val storage metric (runs trained with --use_tv_split; no selection on the test set); '
                             'last: every Test metric at the last logged epoch (e.g. `utilities.tune --reproduce` '
                             'runs, which train on all training classes).')
    parser.add_argument('--include_unfinished', action='store_true',
                        help='Also count local runs that have not finished (no training_summary.txt).')
    parser.add_argument('--columns', nargs='+', default=list(tables.DEFAULT_COLUMNS),
                        help='Columns of the per-dataset tables (names of summary.csv).')
    parser.add_argument('--metric_key', nargs='+', default=[], metavar='NAME=KEY',
                        help='Add or override a metric: short name = logged key, '
                             'e.g. "R@2=Test: discriminative_e_recall: e_recall@2".')
    parser.add_argument('--history_samples', type=int, default=500,
                        help='Rows W&B returns per run history (W&B default 500; more rows are sampled).')
    parser.add_argument('--no_figures', action='store_true', help='Skip the figures.')
    parser.add_argument('--ci', type=float, default=None, metavar='LEVEL',
                        help='Add the half-width of the t-interval of each mean at this confidence, e.g. 0.95: '
                             '"<name> ci" in summary.csv, [± half-width] in the tables.')
    parser.add_argument('--paired', action='store_true',
                        help='Per loss, its LSD group against its baseline group over their common seeds: mean '
                             'difference, its t-interval (--ci level, default 0.95) and the paired t-test p-value '
                             'per table column; paired.csv, paired.md, the .tex and paired.png.')
    return parser


def metric_keys_from(pairs):
    keys = dict(aggregation.METRIC_KEYS)
    for pair in pairs:
        name, sep, key = pair.partition('=')
        if not sep or not name.strip() or not key.strip():
            raise ResultsError('--metric_key {!r}: expected NAME=KEY'.format(pair))
        keys[name.strip()] = key.strip()
    return keys


def load_runs(opt):
    if opt.source == 'local':
        if not opt.path:
            raise ResultsError('--source local needs --path <folder with run folders>')
        paths = [opt.path] if isinstance(opt.path, str) else opt.path
        return [run for path in paths for run in load_local_runs(path)]
    return load_wandb_runs(opt.project, samples=opt.history_samples)


def summary_frame(results):
    rows = []
    for group, result in results.items():
        entry = {'group': group, 'dataset': result.dataset, 'n_runs': result.n_runs,
                 'seeds': ' '.join(str(s) for s in result.seeds), 'n_unfinished': result.n_unfinished,
                 'n_too_short': result.n_short}
        for name, (mean, std) in result.values.items():
            entry[name + ' mean'], entry[name + ' std'] = mean, std
            if result.ci:
                entry[name + ' ci'] = result.ci.get(name)
        rows.append(entry)
    return pd.DataFrame(rows)


def evaluate(opt):
    """Load, aggregate, write; returns (results, tex text, figure paths)."""
    metric_keys = metric_keys_from(opt.metric_key)
    available = set(metric_keys) | set(aggregation.OPTIONAL_METRIC_KEYS) | {'Max_Epoch'} | \
        set(aggregation.STAT_KEYS)
    available |= {name + aggregation.VAL_SUFFIX for name in available - {'Max_Epoch'}} | \
        {aggregation.VAL_EPOCH, tables.SEEDS_COLUMN}
    unknown = [c for c in opt.columns if c not in available]
    if unknown:
        raise ResultsError('--columns {}: unknown; choose from {}'.format(
            ' '.join(unknown), ' '.join(sorted(available))))
    if opt.ci is not None and not 0 < opt.ci < 1:
        raise ResultsError('--ci {}: give a confidence level between 0 and 1, e.g. 0.95'.format(opt.ci))
    runs = load_runs(opt)
    results = aggregation.aggregate(runs, metric_keys=metric_keys, min_length=opt.min_length,
                                    selection=opt.selection, include_unfinished=opt.include_unfinished)
    if opt.ci is not None:
        for result in results.values():
            result.ci = {name: intervals.t_half_width(values, opt.ci) for name, values in result.per_run.items()}
    os.makedirs(opt.out, exist_ok=True)
    text = tables.all_tables(results, opt.columns, TABLE_LABELS[opt.selection])
    markdown = tables.markdown_tables(results, opt.columns, TABLE_LABELS[opt.selection])
    if opt.paired:
        level = opt.ci or 0.95
        metrics = [c for c in opt.columns if c not in ('Max_Epoch', aggregation.VAL_EPOCH, tables.SEEDS_COLUMN)]
        rows = intervals.paired_rows(results, metrics, level)
        pd.DataFrame(rows, columns=list(intervals.PAIRED_COLUMNS)).to_csv(os.path.join(opt.out, 'paired.csv'),
                                                                          index=False)
        text += '\n' + intervals.latex_table(rows, level)
        paired_markdown = intervals.markdown_table(rows, level)
        markdown += '\n### Paired: LSD − baseline over common seeds\n\n' + paired_markdown
        with open(os.path.join(opt.out, 'paired.md'), 'w') as handle:
            handle.write(paired_markdown)
        if not opt.no_figures:
            intervals.paired_figure(rows, opt.out, level)
    with open(os.path.join(opt.out, opt.tex), 'w') as handle:
        handle.write(text)
    with open(os.path.join(opt.out, 'result_tables.md'), 'w') as handle:
        handle.write(markdown)
    summary_frame(results).to_csv(os.path.join(opt.out, 'summary.csv'), index=False)
    print(text)
    print(overview(results, opt.selection, opt.include_unfinished))
    paths = [] if opt.no_figures else figures.make_figures(results, opt.out)
    if not opt.no_figures and not paths:
        print('No CUB/CARS/SOP benchmark groups (CUB_, CARS_, SOP_, ...reg_): figures skipped.')
    return results, text, paths


TABLE_LABELS = {'max': '', 'best_r1': ' (Test values at the best Test R@1 epoch)',
                'best_val': ' (Test values at the best-Val epoch)', 'last': ' (Test values at the last epoch)'}


def overview(results, selection, include_unfinished):
    """Per group: runs (seeds) used, runs left out, and R@1 both ways: best over the epochs (chosen on the
    test set) and at the best-Val epoch (when the runs have a Val log)."""
    best, at_val = aggregation.BEST_OVER_EPOCHS, aggregation.BEST_METRIC + aggregation.VAL_SUFFIX
    lines = ['Runs per row (tables: {}; {}):'.format(
        {'max': 'each Test metric at its best epoch', 'best_r1': 'Test values at the best Test R@1 epoch',
         'best_val': 'Test values at the best-Val epoch', 'last': 'Test values at the last epoch'}[selection],
        'unfinished runs counted' if include_unfinished else 'unfinished runs left out')]
    names = tables.display_names(results)
    for group in sorted(results):
        result = results[group]
        text = '  {} [{}]: {} run{} (seeds {})'.format(
            names[group], group, result.n_runs, '' if result.n_runs == 1 else 's',
            ' '.join(str(s) for s in result.seeds) or '-')
        if result.n_unfinished:
            text += ', {} unfinished left out'.format(result.n_unfinished)
        if result.n_short:
            text += ', {} with too few epochs left out'.format(result.n_short)
        if best in result.values:
            text += '; {} (selected on the test set) {}'.format(best, plain(result.values[best]))
        if at_val in result.values:
            text += '; {} {} (Val_Epoch {})'.format(at_val, 
                plain(result.values[at_val]), plain(result.values[aggregation.VAL_EPOCH], scale=1.0))
        lines.append(text)
    return '\n'.join(lines)


def plain(pair, scale=100.0):
    mean, std = pair
    if mean != mean:  # NaN
        return '-'
    return '{:.2f} ± {:.2f}'.format(mean * scale, std * scale)


def show_warning(message, category, filename, lineno, file=None, line=None):
    print('Warning: {}'.format(message), file=sys.stderr)


def main(argv=None):
    parser = build_parser()
    opt = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('always')
            warnings.showwarning = show_warning
            return evaluate(opt)
    except (ResultsError, OSError) as error:  # bad paths or projects: one line, no traceback
        parser.exit(2, '{}: error: {}\n'.format(parser.prog, error))


if __name__ == '__main__':
    main(sys.argv[1:])
