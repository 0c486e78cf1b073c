"""Aggregate finished runs into the paper's tables and figures (spec data_metrics.md §E).

    python Result_Evaluations.py --source wandb --project <entity>/<project> [--out DIR]
    python Result_Evaluations.py --source local --path <save_path> [--out DIR]

`wandb` reads every run of a W&B project (its name `<group>_s<seed>` gives the group); `local` reads
every run folder below `--path` (`CSV_Logs/`, options from `hypa.pkl` or `Parameter_Info.txt`; the
group and seed are the saved `--group`/`--seed`). Per group: mean ± std (ddof 0) over its runs of the
best R@1, R@2, R@4, NMI, F1, mAP (plus R@5, R@10, mAP@R = mAP_c, mAP@1000, mAP_lim when logged), the
epoch of the best R@1 and the Train embedding statistics at that epoch. Runs with at most
`--min_length` logged epochs are left out (reference: 40).

Written to `--out`: `--tex` (the per-dataset tables, then the shared CUB/CARS/SOP table; also printed),
`summary.csv` (every aggregated value), and the reference's figures as PNG and SVG.

Missing metrics: a key that a run did not log is NaN for that run and a warning names it; a table
cell whose value is NaN shows `$-\\pm-$`. This project's default recall ks are 1, 5, 10 and it logs
`mAP_c` instead of `mAP`, so for its runs pick columns with e.g.
`--columns R@1 R@5 F1 mAP@R NMI Max_Epoch`.
"""
import argparse
import os
import sys
import warnings

import pandas as pd

from utilities.results import aggregation, figures, tables
from utilities.results.local_source import load_local_runs
from utilities.results.runs import ResultsError
from utilities.results.wandb_source import load_wandb_runs

DEFAULT_PROJECT = 'confusezius/RevisitDML'


def build_parser():
    parser = argparse.ArgumentParser(description='Tables and figures from finished runs (W&B or local).')
    parser.add_argument('--source', choices=('wandb', 'local'), default='wandb',
                        help='Read runs from a W&B project or from local run folders.')
    parser.add_argument('--project', default=DEFAULT_PROJECT, help='W&B path <entity>/<project> (--source wandb).')
    parser.add_argument('--path', default=None,
                        help='Folder holding run folders, e.g. the --save_path of the training runs (--source local).')
    parser.add_argument('--out', default='.', help='Output folder for the .tex, summary.csv and the figures.')
    parser.add_argument('--tex', default='result_tables.tex', help='File name of the LaTeX tables inside --out.')
    parser.add_argument('--min_length', type=int, default=aggregation.MIN_LENGTH,
                        help='A run counts only if it logged more than this many epochs (reference: 40).')
    parser.add_argument('--selection', choices=aggregation.SELECTIONS, default='max',
                        help='max: every metric\'s own best epoch (reference); best_r1: all read at the best-R@1 epoch.')
    parser.add_argument('--columns', nargs='+', default=list(tables.DEFAULT_COLUMNS),
                        help='Columns of the per-dataset tables (names of summary.csv).')
    parser.add_argument('--metric_key', nargs='+', default=[], metavar='NAME=KEY',
                        help='Add or override a metric: short name = logged key, '
                             'e.g. "R@2=Test: discriminative_e_recall: e_recall@2".')
    parser.add_argument('--history_samples', type=int, default=500,
                        help='Rows W&B returns per run history (W&B default 500; more rows are sampled).')
    parser.add_argument('--no_figures', action='store_true', help='Skip the figures.')
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
        return load_local_runs(opt.path)
    return load_wandb_runs(opt.project, samples=opt.history_samples)


def summary_frame(results):
    rows = []
    for group, result in results.items():
        entry = {'group': group, 'dataset': result.dataset, 'n_runs': result.n_runs,
                 'seeds': ' '.join(str(s) for s in result.seeds)}
        for name, (mean, std) in result.values.items():
            entry[name + ' mean'], entry[name + ' std'] = mean, std
        rows.append(entry)
    return pd.DataFrame(rows)


def evaluate(opt):
    """Load, aggregate, write; returns (results, tex text, figure paths)."""
    metric_keys = metric_keys_from(opt.metric_key)
    available = set(metric_keys) | set(aggregation.OPTIONAL_METRIC_KEYS) | {'Max_Epoch'} | \
        set(aggregation.STAT_KEYS)
    unknown = [c for c in opt.columns if c not in available]
    if unknown:
        raise ResultsError('--columns {}: unknown; choose from {}'.format(
            ' '.join(unknown), ' '.join(sorted(available))))
    runs = load_runs(opt)
    results = aggregation.aggregate(runs, metric_keys=metric_keys, min_length=opt.min_length,
                                    selection=opt.selection)
    os.makedirs(opt.out, exist_ok=True)
    text = tables.all_tables(results, opt.columns)
    with open(os.path.join(opt.out, opt.tex), 'w') as handle:
        handle.write(text)
    summary_frame(results).to_csv(os.path.join(opt.out, 'summary.csv'), index=False)
    print(text)
    paths = [] if opt.no_figures else figures.make_figures(results, opt.out)
    if not opt.no_figures and not paths:
        print('No CUB/CARS/SOP benchmark groups (CUB_, CARS_, SOP_, ...reg_): figures skipped.')
    return results, text, paths


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
