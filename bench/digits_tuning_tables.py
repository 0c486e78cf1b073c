"""The tables of docs/tuning.md from a `Digits_Tuning.sh` folder (default Sweeps/Digits_Tuning):

    python bench/digits_tuning_tables.py [Sweeps/Digits_Tuning]

Runs Result_Evaluations.py over the reproductions and the untuned reruns (--selection last, --ci 0.95,
--paired: LSD − baseline per loss, tuned and untuned) into <folder>/tables, then prints per loss and side
the tuned − untuned difference over common seeds (mean, 95 % t-interval, paired t-test p), the best
parameters of each study and the fold ensemble's Test R@1 and mAP@R."""
import glob
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import Result_Evaluations  # noqa: E402
from utilities.results import intervals  # noqa: E402

COLUMNS = ['R@1', 'R@5', 'NMI', 'F1', 'mAP@R', 'Seeds']


def main(folder='Sweeps/Digits_Tuning'):
    paths = sorted(glob.glob(os.path.join(folder, 'studies', '*', 'reproduce'))) + [os.path.join(folder, 'untuned')]
    results, _, _ = Result_Evaluations.evaluate(Result_Evaluations.build_parser().parse_args(
        ['--source', 'local', '--path', *paths, '--min_length', '0', '--selection', 'last', '--columns', *COLUMNS,
         '--ci', '0.95', '--paired', '--no_figures', '--out', os.path.join(folder, 'tables')]))
    print('\n| group | tuned − untuned R@1 | 95 % interval | p | tuned − untuned mAP@R | 95 % interval | p | n |')
    print('|---|---|---|---|---|---|---|---|')
    for tuned in sorted(g for g in results if g.startswith('DIGT')):
        untuned = 'DIGU' + tuned[4:]
        if untuned not in results:
            continue
        cells, n = [], 0
        for metric in ('R@1', 'mAP@R'):
            a, b = results[untuned], results[tuned]
            common = sorted(set(a.seeds) & set(b.seeds))
            n, mean, low, high, p = intervals.paired_difference(
                [dict(zip(a.seeds, a.per_run[metric]))[s] for s in common],
                [dict(zip(b.seeds, b.per_run[metric]))[s] for s in common])
            cells += ['{:+.1f}'.format(100 * mean), '[{:+.1f}, {:+.1f}]'.format(100 * low, 100 * high),
                      '-' if math.isnan(p) else '{:.3g}'.format(p)]
        print('| `{}` | {} | {} |'.format(tuned, ' | '.join(cells), n))
    print('\n| study | best Val mAP@R (mean of folds) | parameters | fold ensemble Test R@1 | mAP@R |')
    print('|---|---|---|---|---|')
    for study in sorted(glob.glob(os.path.join(folder, 'studies', '*'))):
        best, ensemble = os.path.join(study, 'best.json'), os.path.join(study, 'reproduce', 'ensemble.json')
        if not os.path.isfile(best):
            continue
        with open(best) as handle:
            record = json.load(handle)
        test = {}
        if os.path.isfile(ensemble):
            with open(ensemble) as handle:
                test = json.load(handle)['Test']
        print('| `{}` | {:.3f} | {} | {} | {} |'.format(
            os.path.basename(study), record['value'],
            ', '.join('{} {:.3g}'.format(k, v) for k, v in record['params'].items()),
            '{:.1f}'.format(100 * test['e_recall@1']) if test else '-',
            '{:.1f}'.format(100 * test['mAP_c']) if test else '-'))


if __name__ == '__main__':
    main(*sys.argv[1:])
