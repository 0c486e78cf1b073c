"""Result_Evaluations reads In-Shop's and iNaturalist's customary columns and names the two benchmarks."""
import warnings

import pandas as pd

from utilities.results import aggregation
from utilities.results.runs import Run


def test_benchmark_tags_from_group_or_dataset_option():
    assert aggregation.dataset_of('InShop_Margin_Distance', {}) == 'InShop'
    assert aggregation.dataset_of('iNat_Margin_Distance', {}) == 'iNat'
    assert aggregation.dataset_of('G', {'dataset': 'inshop'}) == 'InShop'
    assert aggregation.dataset_of('G', {'dataset': 'inaturalist'}) == 'iNat'


def test_inshop_recall_ks_and_map_at_r_are_aggregated_when_logged():
    keys = {name: aggregation.OPTIONAL_METRIC_KEYS[name] for name in ('R@20', 'R@30', 'R@40', 'MAP@R')}
    keys['R@1'] = aggregation.METRIC_KEYS['R@1']
    history = pd.DataFrame({'_step': [0, 1], keys['R@1']: [0.5, 0.75], keys['R@20']: [0.875, 0.9375],
                            keys['R@30']: [0.9, 1.0], keys['R@40']: [1.0, 1.0], keys['MAP@R']: [0.25, 0.5]})
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # R@2, NMI ... were not logged
        result = aggregation.aggregate([Run('InShop_s0', 'InShop', 0, history, {}, '')], min_length=1)['InShop']
    assert result.dataset == 'InShop'
    assert {name: result.values[name][0] for name in ('R@20', 'R@30', 'R@40', 'MAP@R')} == \
        {'R@20': 0.9375, 'R@30': 1.0, 'R@40': 1.0, 'MAP@R': 0.5}
