"""Result_Evaluations.py --ci and --paired: the t-interval of each mean and, per loss, LSD against its
baseline over common seeds; the numbers are scipy.stats' own (t.interval, ttest_rel)."""
import csv
import math
import os

import numpy as np
import pytest
from scipy import stats

import Result_Evaluations
from tests.test_result_evaluations import make_run
from utilities.results import intervals


def test_half_width_is_scipys_t_interval():
    values = [0.61, 0.64, 0.58, 0.70, 0.66]
    low, high = stats.t.interval(0.95, 4, loc=np.mean(values), scale=stats.sem(values))
    assert intervals.t_half_width(values, 0.95) == pytest.approx((high - low) / 2, rel=1e-12)
    assert intervals.t_half_width(values + [math.nan], 0.9) == pytest.approx(
        stats.t.ppf(0.95, 4) * np.std(values, ddof=1) / math.sqrt(5), rel=1e-12)
    assert math.isnan(intervals.t_half_width([0.5], 0.95))


def test_paired_difference_is_scipys_paired_t_test():
    base = [0.60, 0.62, 0.55, 0.70, 0.65, 0.59]
    lsd = [0.66, 0.61, 0.60, 0.74, 0.69, 0.58]
    diffs = np.subtract(lsd, base)
    n, mean, low, high, p = intervals.paired_difference(base, lsd, 0.95)
    assert n == 6 and mean == pytest.approx(diffs.mean())
    assert (low, high) == pytest.approx(stats.t.interval(0.95, 5, loc=diffs.mean(), scale=stats.sem(diffs)))
    assert p == pytest.approx(stats.ttest_rel(lsd, base).pvalue, rel=1e-12)


@pytest.mark.parametrize('group,base', [('DIGlsd_MS', 'DIG_MS'), ('DIGnoisy30lsd_MS', 'DIGnoisy30_MS'),
                                        ('DIG_MS_lsd', 'DIG_MS'), ('DIG_MS', None)])
def test_the_baseline_of_a_group_is_its_name_without_the_lsd_tag(group, base):
    assert intervals.baseline_of(group) == base


def test_result_evaluations_writes_intervals_and_paired_comparisons(tmp_path):
    runs, out = tmp_path / 'runs', tmp_path / 'out'
    base = {0: 0.50, 1: 0.55, 2: 0.61, 3: 0.40}
    lsd = {0: 0.58, 1: 0.57, 2: 0.66, 4: 0.90}   # seed 3 / 4 have no partner and are left out of the pairs
    for group, values in (('DIG_MS', base), ('DIGlsd_MS', lsd)):
        for seed, last in values.items():
            make_run(str(runs), '{}_s{}'.format(group, seed), group, seed, recall=[0.1, last],
                     nmi=[0.2, last / 2], intra=[0.1, 0.1])
    Result_Evaluations.main(['--source', 'local', '--path', str(runs), '--out', str(out), '--min_length', '0',
                             '--selection', 'last', '--columns', 'R@1', 'NMI', 'Seeds', '--ci', '0.95', '--paired',
                             '--no_figures'])
    with open(out / 'paired.csv', newline='') as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ['loss', 'metric', 'n', 'mean_diff', 'ci_low', 'ci_high', 'p_value']
    assert [(r['loss'], r['metric'], r['n']) for r in rows] == [('DIG_MS', 'R@1', '3'), ('DIG_MS', 'NMI', '3')]
    b, l = [base[s] for s in (0, 1, 2)], [lsd[s] for s in (0, 1, 2)]
    diffs = np.subtract(l, b)
    assert float(rows[0]['mean_diff']) == pytest.approx(diffs.mean())
    assert (float(rows[0]['ci_low']), float(rows[0]['ci_high'])) == pytest.approx(
        stats.t.interval(0.95, 2, loc=diffs.mean(), scale=stats.sem(diffs)))
    assert float(rows[0]['p_value']) == pytest.approx(stats.ttest_rel(l, b).pvalue)
    assert float(rows[1]['p_value']) == pytest.approx(stats.ttest_rel(np.divide(l, 2), np.divide(b, 2)).pvalue)
    with open(out / 'summary.csv', newline='') as handle:
        summary = {row['group']: row for row in csv.DictReader(handle)}
    values = list(base.values())
    low, high = stats.t.interval(0.95, 3, loc=np.mean(values), scale=stats.sem(values))
    assert float(summary['DIG_MS']['R@1 ci']) == pytest.approx((high - low) / 2)
    assert float(summary['DIG_MS']['R@1 mean']) == pytest.approx(np.mean(values))   # --selection last
    tex = (out / 'result_tables.tex').read_text()
    assert r'\,[\pm{:2.2f}]$'.format((high - low) / 2 * 100) in tex and 'Paired LSD - baseline' in tex
    markdown = (out / 'result_tables.md').read_text()
    assert '| DIG_MS | R@1 | 3 | {:+.2f} |'.format(diffs.mean() * 100) in markdown
    assert os.path.isfile(out / 'paired.md')


def test_a_bad_confidence_level_is_one_line(tmp_path, capsys):
    make_run(str(tmp_path / 'runs'), 'DIG_MS_s0', 'DIG_MS', 0, recall=[0.1], nmi=[0.1], intra=[0.1])
    with pytest.raises(SystemExit):
        Result_Evaluations.main(['--source', 'local', '--path', str(tmp_path / 'runs'), '--ci', '95'])
    assert '--ci 95.0: give a confidence level between 0 and 1' in capsys.readouterr().err
