"""Result_Evaluations.py: aggregation of run folders and W&B runs into the reference's tables.

The aggregation is checked against hand-computed numbers on hand-made run folders, and against an
independent slow re-implementation of the reference's aggregation on the replayed W&B responses of tests/data/wandb_api/.
"""
import argparse
import csv
import importlib
import json
import math
import os
import pickle
import sys
import types

import numpy as np
import pandas as pd
import pytest

import Result_Evaluations
from conftest import SWEPT_GROUPS as E2E_GROUPS
from utilities.results import aggregation, tables
from utilities.results.local_source import load_local_runs, read_history, split_csv_name
from utilities.results.runs import Run, group_from_name
from utilities.results.saved_options import load_pickled_options, parse_parameter_info
from utilities.results.wandb_source import load_wandb_runs

# the aggregation warns once per metric key that runs did not log; tests that check it use pytest.warns
pytestmark = pytest.mark.filterwarnings('ignore:not logged by .*:UserWarning')

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RECORDINGS = os.path.join(HERE, 'data', 'wandb_api')

# The reference's keys, written out here independently of the implementation.
KEYS = {
    'R@1': 'Test: discriminative_e_recall: e_recall@1',
    'R@2': 'Test: discriminative_e_recall: e_recall@2',
    'R@4': 'Test: discriminative_e_recall: e_recall@4',
    'NMI': 'Test: discriminative_nmi: nmi',
    'F1': 'Test: discriminative_f1: f1',
    'mAP': 'Test: discriminative_mAP: mAP',
}
STATS = {
    'Intra_over_Inter': 'Train: discriminative_dists: dists@intra_over_inter',
    'Intra': 'Train: discriminative_dists: dists@intra',
    'Inter': 'Train: discriminative_dists: dists@inter',
    'Rho1': 'Train: discriminative_rho_spectrum: rho_spectrum@-1',
    'Rho2': 'Train: discriminative_rho_spectrum: rho_spectrum@1',
    'Rho3': 'Train: discriminative_rho_spectrum: rho_spectrum@2',
    'Rho4': 'Train: discriminative_rho_spectrum: rho_spectrum@10',
}
FIGURES = ['comp_metric_relation', 'metric_correlation_matrix', 'Detailed_Rel_Recall_Rho_CUB',
           'Detailed_Rel_Recall_Rho_CAR', 'Detailed_Rel_Recall_Rho_SOP', 'FirstPage']


# ------------------------------------------------------------------------------------------------
# hand-made run folders in the logger's layout

def write_csv(path, header, rows):
    with open(path, 'w', newline='') as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def make_run(root, folder, group, seed, recall, nmi, intra, dataset='digits', pickled=True, info=True,
             finished=True, val_recall=None, options=None):
    """A run folder whose Test recall@1 / nmi and Train dists@intra follow the given per-epoch lists
    (a finished run has a training_summary.txt; `val_recall` adds a Val log)."""
    run = os.path.join(root, folder)
    os.makedirs(os.path.join(run, 'CSV_Logs'))
    if finished:
        with open(os.path.join(run, 'training_summary.txt'), 'w') as handle:
            handle.write('Training Time: 0.1 min.\n---------------\n')
    if val_recall is not None:
        write_csv(os.path.join(run, 'CSV_Logs', 'Data_Val_discriminative_e_recall.csv'), ['e_recall@1'],
                  [[v] for v in val_recall])
    epochs = len(recall)
    write_csv(os.path.join(run, 'CSV_Logs', 'Data_Train_epochs.csv'), ['epochs'], [[e] for e in range(epochs)])
    write_csv(os.path.join(run, 'CSV_Logs', 'Data_Train_loss.csv'), ['loss'], [[0.1]] * epochs)
    write_csv(os.path.join(run, 'CSV_Logs', 'Data_Test_discriminative_e_recall.csv'),
              ['e_recall@1', 'e_recall@5', 'e_recall@10'],
              [[r, r + 0.1, r + 0.2] if isinstance(r, float) else [r, r, r] for r in recall])
    write_csv(os.path.join(run, 'CSV_Logs', 'Data_Test_discriminative_nmi.csv'), ['nmi'], [[v] for v in nmi])
    write_csv(os.path.join(run, 'CSV_Logs', 'Data_Train_discriminative_dists.csv'),
              ['dists@intra', 'dists@inter', 'dists@intra_over_inter'],
              [[v, 2 * v, 0.5] for v in intra])
    write_csv(os.path.join(run, 'CSV_Logs', 'Data_Model Grad_L2.csv'), ['Grad L2'], [[1.0]] * (3 * epochs))
    opt = argparse.Namespace(dataset=dataset, group=group, seed=seed, n_epochs=epochs, source_path='/x/' + dataset,
                             save_path=run, savename=folder, evaluation_metrics=['e_recall@1', 'nmi'], **(options or {}))
    if pickled:
        with open(os.path.join(run, 'hypa.pkl'), 'wb') as handle:
            pickle.dump(opt, handle)
    if info:
        with open(os.path.join(run, 'Parameter_Info.txt'), 'w') as handle:
            handle.write(''.join('{}\n\t{}\n\n'.format(k, v) for k, v in vars(opt).items()))
    return run


@pytest.fixture
def two_seeds(tmp_path):
    """Group X_Triplet_Softhard, seeds 0 and 1, three epochs each (min_length 2 lets them through)."""
    make_run(tmp_path, 'X_Triplet_Softhard_s0', 'X_Triplet_Softhard', 0,
             recall=[0.1, 0.5, 0.3], nmi=[0.7, 0.2, 0.1], intra=[0.11, 0.12, 0.13])
    make_run(tmp_path, 'X_Triplet_Softhard_s1', 'X_Triplet_Softhard', 1,
             recall=[0.2, 0.4, 0.6], nmi=[0.1, 0.1, 0.9], intra=[0.21, 0.22, 0.24])
    return tmp_path


def test_group_is_the_run_name_without_its_final_seed():
    assert group_from_name('X_Triplet_Softhard_s3') == 'X_Triplet_Softhard'
    assert group_from_name('CUB_Triplet_semihard_s0') == 'CUB_Triplet_semihard'
    assert group_from_name('CUBnoisy30lsd_MS_s12') == 'CUBnoisy30lsd_MS'
    assert group_from_name('NoSeed') == 'NoSeed'


def test_csv_file_names_and_history_keys(two_seeds):
    assert split_csv_name('Data_Model Grad_L2.csv') == ('Model Grad', 'L2')
    assert split_csv_name('Data_Test_discriminative_e_recall.csv') == ('Test', 'discriminative_e_recall')
    assert split_csv_name('Data_Val_discriminative_mAP_c.csv') == ('Val', 'discriminative_mAP_c')
    assert split_csv_name('Parameter_Info.txt') is None
    history = read_history(os.path.join(two_seeds, 'X_Triplet_Softhard_s0'))
    assert list(history['_step']) == [0, 1, 2]
    assert list(history['Test: discriminative_e_recall: e_recall@1']) == [0.1, 0.5, 0.3]
    assert list(history['Train: epochs']) == [0, 1, 2]
    assert 'Train: discriminative_dists: dists@intra_over_inter' in history
    assert not any(key.startswith('Model Grad') for key in history)  # per-iteration, not per-epoch


def test_best_values_mean_and_population_std_over_seeds(two_seeds):
    results = aggregation.aggregate(load_local_runs(str(two_seeds)), min_length=2)
    result = results['X_Triplet_Softhard']
    assert result.n_runs == 2 and sorted(result.seeds) == [0, 1]
    assert result.values['R@1'] == pytest.approx((0.55, 0.05))           # maxima 0.5, 0.6
    assert result.values['NMI'] == pytest.approx((0.8, 0.1))             # each metric's own maximum
    assert result.values['Max_Epoch'] == pytest.approx((1.5, 0.5))       # best R@1 at epochs 1 and 2
    assert result.values['Intra'] == pytest.approx((0.18, 0.06))         # 0.12 and 0.24, at those epochs
    assert result.values['Inter'] == pytest.approx((0.36, 0.12))
    assert result.values['R@5'] == pytest.approx((0.65, 0.05))           # optional key, logged
    assert math.isnan(result.values['R@2'][0]) and math.isnan(result.values['Rho3'][0])


def test_best_r1_selection_reads_every_metric_at_the_best_r1_epoch(two_seeds):
    results = aggregation.aggregate(load_local_runs(str(two_seeds)), min_length=2, selection='best_r1')
    assert results['X_Triplet_Softhard'].values['NMI'] == pytest.approx((0.55, 0.35))  # 0.2 and 0.9
    assert results['X_Triplet_Softhard'].values['R@1'] == pytest.approx((0.55, 0.05))


def test_only_runs_longer_than_min_length_count(two_seeds):
    make_run(two_seeds, 'X_Triplet_Softhard_s2', 'X_Triplet_Softhard', 2,
             recall=[0.9, 0.9], nmi=[0.9, 0.9], intra=[0.9, 0.9])
    result = aggregation.aggregate(load_local_runs(str(two_seeds)), min_length=2)['X_Triplet_Softhard']
    assert result.n_runs == 2 and result.values['R@1'] == pytest.approx((0.55, 0.05))
    with pytest.warns(UserWarning, match='no run has more than 3'):
        result = aggregation.aggregate(load_local_runs(str(two_seeds)), min_length=3)['X_Triplet_Softhard']
    assert result.n_runs == 0 and all(math.isnan(m) for m, _ in result.values.values())


def test_default_length_filter_is_more_than_40_rows():
    def run(rows, seed):
        history = pd.DataFrame({'_step': range(rows), KEYS['R@1']: np.linspace(0, 1, rows)})
        return Run('G_s{}'.format(seed), 'G', seed, history, {}, '')
    with pytest.warns(UserWarning):
        result = aggregation.aggregate([run(40, 0), run(41, 1)])['G']
    assert result.n_runs == 1 and result.seeds == [1] and result.values['Max_Epoch'] == (40.0, 0.0)


def test_nan_rows_are_ignored_and_counted(tmp_path):
    make_run(tmp_path, 'G_s0', 'G', 0, recall=[0.3, 'nan', 0.2], nmi=[0.5, 0.6, 'nan'], intra=[1, 2, 3])
    result = aggregation.aggregate(load_local_runs(str(tmp_path)), min_length=2)['G']
    assert result.values['R@1'] == (0.3, 0.0) and result.values['NMI'] == (0.6, 0.0)
    assert result.values['Max_Epoch'] == (0.0, 0.0) and result.values['Intra'] == (1.0, 0.0)


def test_missing_required_key_is_nan_with_one_warning(two_seeds):
    with pytest.warns(UserWarning) as caught:
        aggregation.aggregate(load_local_runs(str(two_seeds)), min_length=2)
    assert [str(w.message) for w in caught] == [
        'not logged by any of the 2 runs: R@2, R@4, F1, mAP, Rho1, Rho2, Rho3, Rho4 (NaN for those runs, shown '
        'as -; --metric_key names other keys)']


def test_datasets_by_group_tag_then_by_dataset_option():
    assert aggregation.dataset_of('CARreg_Contrastive', {'dataset': 'cub200'}) == 'CARS'
    assert aggregation.dataset_of('Sample_Group', {'dataset': 'online_products'}) == 'SOP'
    assert aggregation.dataset_of('G', {'dataset': 'digits'}) == 'digits'
    assert aggregation.dataset_of('G', {}) == 'other'


def test_mean_std_of_nothing_is_nan():
    assert all(math.isnan(v) for v in aggregation.mean_std([]))
    assert aggregation.mean_std([1.0, 2.0, 4.0]) == pytest.approx((7 / 3, math.sqrt(14 / 9)))


# ------------------------------------------------------------------------------------------------
# saved options

def test_options_come_from_hypa_pkl_even_with_unimportable_classes(tmp_path, monkeypatch):
    module_dir = tmp_path / 'mods'
    module_dir.mkdir()
    (module_dir / 'vanishing_module.py').write_text('class Device:\n    def __init__(self, kind):\n'
                                                    '        self.kind = kind\n')
    monkeypatch.syspath_prepend(str(module_dir))
    vanishing = importlib.import_module('vanishing_module')
    opt = argparse.Namespace(group='G', seed=3, device=vanishing.Device('cuda'), tau=[1000], lr=1e-5)
    path = tmp_path / 'hypa.pkl'
    path.write_bytes(pickle.dumps(opt))
    monkeypatch.delitem(sys.modules, 'vanishing_module')
    monkeypatch.setattr(sys, 'path', [p for p in sys.path if p != str(module_dir)])
    with pytest.raises(ModuleNotFoundError):
        pickle.loads(path.read_bytes())
    options = load_pickled_options(str(path))
    assert (options['group'], options['seed'], options['tau'], options['lr']) == ('G', 3, [1000], 1e-5)
    assert options['device'].state == {'kind': 'cuda'}
    assert 'vanishing_module' not in sys.modules


def test_hypa_pkl_cannot_run_code(tmp_path):
    class Payload:
        def __reduce__(self):
            return (os.remove, (str(tmp_path / 'victim'),))
    (tmp_path / 'victim').write_text('x')
    path = tmp_path / 'hypa.pkl'
    path.write_bytes(pickle.dumps(argparse.Namespace(group='G', payload=Payload())))
    options = load_pickled_options(str(path))
    assert options['group'] == 'G' and (tmp_path / 'victim').exists()


def test_parameter_info_parsing():
    text = 'dataset\n\tcub200\n\nseed\n\t4\n\ntau\n\t[1000]\n\nfc_lr\n\t-1\n\ndevice\n\tcpu\n\n' \
           'aux\n\ta: 1\n\tb: x\n\n'
    assert parse_parameter_info(text) == {'dataset': 'cub200', 'seed': 4, 'tau': [1000], 'fc_lr': -1,
                                          'device': 'cpu', 'aux': {'a': 1, 'b': 'x'}}


def test_group_and_seed_fall_back_to_parameter_info_then_folder_name(tmp_path):
    make_run(tmp_path, 'A_s0', 'GroupFromInfo', 7, recall=[0.1] * 3, nmi=[0.1] * 3, intra=[0.1] * 3, pickled=False)
    run = make_run(tmp_path, 'B_s5', 'ignored', 1, recall=[0.1] * 3, nmi=[0.1] * 3, intra=[0.1] * 3, info=False)
    with open(os.path.join(run, 'hypa.pkl'), 'wb') as handle:
        handle.write(b'damaged')
    make_run(tmp_path, 'C_Group_s2', 'ignored', 1, recall=[0.1] * 3, nmi=[0.1] * 3, intra=[0.1] * 3,
             pickled=False, info=False)
    runs = {run.name: run for run in load_local_runs(str(tmp_path))}
    assert (runs['A_s0'].group, runs['A_s0'].seed) == ('GroupFromInfo', 7)
    assert (runs['B_s5'].group, runs['B_s5'].seed) == ('B', 5)
    assert (runs['C_Group_s2'].group, runs['C_Group_s2'].seed) == ('C_Group', 2)


# ------------------------------------------------------------------------------------------------
# names and tables

def result(group, dataset, **values):
    return aggregation.GroupResult(group, dataset, 1, [0], values)


def test_display_names():
    assert tables.name_adjust('CUB_Margin_b06_Distance') == r'Margin (D, \beta=0.6)'
    assert tables.name_adjust('CUB_Margin_b12_Distance', for_plot=True) == r'$Margin (D), \beta=1.2$'
    assert tables.name_adjust('SOP_MS') == 'Multisimilarity'
    assert tables.name_adjust('CARS_Triplet_Softhard') == 'Triplet (H)'
    assert tables.name_adjust('CUB_Npair', prefix='R-', suffix='!') == 'R-Npair!'
    assert tables.name_adjust('Sample') == 'Sample'
    assert tables.table_name('CUBreg_SNR_Distance_3') == 'R-SNR (D)'
    assert tables.table_name('CARlsd_Triplet_Distance') == 'L-Triplet (D)'
    assert tables.table_name('SOPnoisy30lsd_MS') == r'L-Multisimilarity (noise 30\%)'
    assert tables.table_name('SOPnoisy30_MS') == r'Multisimilarity (noise 30\%)'
    assert tables.table_name('DIG_MS_lsd') == 'L-Multisimilarity' and tables.table_name('DIG_MS') == 'Multisimilarity'
    assert tables.table_name('DIGlsd_Margin_Distance') == 'L-Margin (D)'
    assert tables.table_name('DIG_Foo_lsd_x') == 'L-Foo_x' and tables.table_name('lsd_only') == 'L-only'


def test_no_two_groups_of_a_dataset_share_a_display_name():
    groups = ['DIG_MS', 'DIG_MS_lsd', 'DIGlsd_MS', 'DIG_Foo', 'DIGX_Foo', 'CUB_MS']
    datasets = ['digits'] * 5 + ['CUB']
    results = {group: result(group, dataset, **{'R@1': (0.5, 0.0)}) for group, dataset in zip(groups, datasets)}
    names = tables.display_names(results)
    assert names == {'DIG_MS': 'Multisimilarity', 'DIG_MS_lsd': 'L-Multisimilarity [DIG_MS_lsd]',
                     'DIGlsd_MS': 'L-Multisimilarity [DIGlsd_MS]', 'DIG_Foo': 'Foo [DIG_Foo]',
                     'DIGX_Foo': 'Foo [DIGX_Foo]', 'CUB_MS': 'Multisimilarity'}
    rows = [line.split(' & ')[0] for line in tables.dataset_table(results, 'digits').splitlines()[1:]]
    assert len(rows) == len(set(rows)) == 5


def test_dataset_table_rows():
    results = {
        'CUB_Triplet_Distance': result('CUB_Triplet_Distance', 'CUB', **{
            'R@1': (0.61234, 0.00456), 'R@2': (0.7, 0.01), 'F1': (0.3, 0.0), 'mAP': (math.nan, math.nan),
            'NMI': (0.65, 0.002), 'Max_Epoch': (87.4, 12.5)}),
        'CUBreg_Contrastive': result('CUBreg_Contrastive', 'CUB', **{'R@1': (0.5, 0.1)}),
        'CARS_MS': result('CARS_MS', 'CARS', **{'R@1': (0.8, 0.0)}),
    }
    text = tables.dataset_table(results, 'CUB')
    assert text.splitlines()[0] == '% CUB: name & R@1 & R@2 & F1 & mAP & NMI & Max_Epoch'
    assert text.splitlines(keepends=True)[1:] == [  # sorted group order: 'CUB_...' < 'CUBreg_...'
        'Triplet (D) & $61.23\\pm0.46$ & $70.00\\pm1.00$ & $30.00\\pm0.00$ & $-\\pm-$ & $65.00\\pm0.20$ & '
        '$87.40\\pm12.50$\\\\\n',
        'R-Contrastive (D) & $50.00\\pm10.00$ & $-\\pm-$ & $-\\pm-$ & $-\\pm-$ & $-\\pm-$ & $-\\pm-$\\\\\n']


def test_shared_table_order_missing_cells_and_collisions():
    results = {
        'CUB_Triplet_Distance': result('CUB_Triplet_Distance', 'CUB', **{'R@1': (0.6, 0.01), 'NMI': (0.7, 0.02)}),
        'CUBreg_Triplet_Distance_3': result('CUBreg_Triplet_Distance_3', 'CUB', **{'R@1': (0.62, 0.0), 'NMI': (0.7, 0.0)}),
        'SOP_ArcFace': result('SOP_ArcFace', 'SOP', **{'R@1': (0.8, 0.0), 'NMI': (0.9, 0.0)}),
        'CARS_ArcFace': result('CARS_ArcFace', 'CARS', **{'R@1': (0.1, 0.0), 'NMI': (0.1, 0.0)}),
        'CARS_ArcFace_v2': result('CARS_ArcFace_v2', 'CARS', **{'R@1': (0.2, 0.0), 'NMI': (0.2, 0.0)}),
        'digits_G': result('digits_G', 'digits', **{'R@1': (0.2, 0.0)}),
    }
    lines = tables.shared_table(results).splitlines()
    assert lines[0] == '% Shared: name & CUB R@1 & CUB NMI & CARS R@1 & CARS NMI & SOP R@1 & SOP NMI'
    assert lines[1:] == [  # the two CARS ArcFace groups would share a name: each keeps its own row
        'ArcFace & $-\\pm-$ & $-\\pm-$ & $-\\pm-$ & $-\\pm-$ & $80.00\\pm0.00$ & $90.00\\pm0.00$\\\\',
        'ArcFace [CARS_ArcFace] & $-\\pm-$ & $-\\pm-$ & $10.00\\pm0.00$ & $10.00\\pm0.00$ & $-\\pm-$ & $-\\pm-$\\\\',
        'ArcFace [CARS_ArcFace_v2] & $-\\pm-$ & $-\\pm-$ & $20.00\\pm0.00$ & $20.00\\pm0.00$ & $-\\pm-$ & $-\\pm-$\\\\',
        'Triplet (D) & $60.00\\pm1.00$ & $70.00\\pm2.00$ & $-\\pm-$ & $-\\pm-$ & $-\\pm-$ & $-\\pm-$\\\\',
        'R-Triplet (D) & $62.00\\pm0.00$ & $70.00\\pm0.00$ & $-\\pm-$ & $-\\pm-$ & $-\\pm-$ & $-\\pm-$\\\\']
    assert tables.dataset_order(results) == ['CUB', 'CARS', 'SOP', 'digits']


# ------------------------------------------------------------------------------------------------
# W&B source: a fake public API replaying tests/data/wandb_api/

def recorded_nodes():
    with open(os.path.join(RECORDINGS, 'runs.json')) as handle:
        return [edge['node'] for edge in json.load(handle)['project']['runs']['edges']]


def recorded_rows(run_id):
    with open(os.path.join(RECORDINGS, 'history', run_id + '.json')) as handle:
        return [json.loads(line) for line in json.load(handle)['project']['run']['history']]


class FakeRun:
    """What wandb.apis.public.Run makes of a runs-query node and its history response."""

    def __init__(self, node):
        self.id, self.name, self.group = node['name'], node['displayName'], node['group']
        self.config = {key: entry['value'] for key, entry in json.loads(node['config']).items()}

    def history(self, samples=500, keys=None, x_axis='_step', pandas=True, stream='default'):
        rows = recorded_rows(self.id)
        assert len(rows) <= samples
        return pd.DataFrame.from_records(rows) if pandas else rows


class FakeApi:
    def __init__(self):
        self.paths = []

    def runs(self, path, filters=None, order='+created_at', per_page=50):
        self.paths.append(path)
        return [FakeRun(node) for node in recorded_nodes()]


def slow_expected(min_length=40):
    """The reference's aggregation straight from the recorded rows, with Python loops: {group: {name: (mean, std)}}."""
    collected = {}
    for node in recorded_nodes():
        rows = recorded_rows(node['name'])
        if len(rows) <= min_length:
            continue
        group = node['displayName'].rsplit('_s', 1)[0]
        values = collected.setdefault(group, {})
        for name, key in KEYS.items():
            column = [row[key] for row in rows if row.get(key) is not None]
            values.setdefault(name, []).append(max(column) if column else math.nan)
        recall = [(row[KEYS['R@1']], i) for i, row in enumerate(rows) if row.get(KEYS['R@1']) is not None]
        best = max(recall, key=lambda pair: (pair[0], -pair[1]))[1]
        values.setdefault('Max_Epoch', []).append(rows[best]['_step'])
        for name, key in STATS.items():
            values.setdefault(name, []).append(rows[best].get(key, math.nan))
    expected = {}
    for group, values in collected.items():
        expected[group] = {}
        for name, numbers in values.items():
            mean = sum(numbers) / len(numbers)
            expected[group][name] = (mean, math.sqrt(sum((x - mean) ** 2 for x in numbers) / len(numbers)))
    return expected


def test_wandb_runs_come_from_the_api():
    api = FakeApi()
    runs = load_wandb_runs('entity/RevisitDML', api=api)
    assert api.paths == ['entity/RevisitDML']
    assert len(runs) == 10
    names = [run.name for run in runs]
    assert names[0] == 'CUB_Triplet_Distance_s0' and runs[0].group == 'CUB_Triplet_Distance'
    assert all(run.group == node['group'] for run, node in zip(runs, recorded_nodes()))
    assert all(not key.startswith('_') for run in runs for key in run.config)
    assert runs[0].config['dataset'] == 'cub200'
    assert len(runs[-1].history) == 42 and '_step' in runs[-1].history


def test_wandb_aggregation_matches_a_slow_reimplementation():
    with pytest.warns(UserWarning):
        results = aggregation.aggregate(load_wandb_runs('e/p', api=FakeApi()))
    expected = slow_expected()
    assert sorted(results) == ['CARS_Margin_b12_Distance', 'CUB_Npair', 'CUB_Triplet_Distance',
                               'CUBreg_Triplet_Distance_3', 'SOP_MS']
    for group, values in expected.items():
        for name, pair in values.items():
            assert results[group].values[name] == pytest.approx(pair, nan_ok=True), (group, name)
    assert results['CARS_Margin_b12_Distance'].n_runs == 1                # the 30-row run is left out
    assert results['CUB_Triplet_Distance'].n_runs == 3
    assert results['CUB_Npair'].values['Max_Epoch'][0] % 3 == 0           # `_step` of a sampled history
    assert results['CUB_Npair'].values['Max_Epoch'][0] > 41
    assert math.isnan(results['SOP_MS'].values['R@2'][0]) and not math.isnan(results['SOP_MS'].values['mAP@R'][0])
    assert [results[g].dataset for g in sorted(results)] == ['CARS', 'CUB', 'CUB', 'CUB', 'SOP']


def fake_wandb(monkeypatch, api):
    monkeypatch.setitem(sys.modules, 'wandb', types.SimpleNamespace(Api=lambda: api))


def test_command_line_on_wandb_writes_tables_summary_and_figures(tmp_path, monkeypatch, capsys):
    fake_wandb(monkeypatch, FakeApi())
    Result_Evaluations.main(['--source', 'wandb', '--project', 'entity/RevisitDML', '--out', str(tmp_path)])
    out, err = capsys.readouterr()
    tex = (tmp_path / 'result_tables.tex').read_text()
    assert tex in out
    expected = slow_expected()['CUB_Triplet_Distance']
    cells = ['${:2.2f}\\pm{:2.2f}$'.format(expected[n][0] * 100, expected[n][1] * 100) for n in ('R@1', 'R@2', 'F1', 'mAP', 'NMI')]
    cells.append('${:2.2f}\\pm{:2.2f}$'.format(*expected['Max_Epoch']))
    assert 'Triplet (D) & ' + ' & '.join(cells) + '\\\\\n' in tex
    sop = [line for line in tex.splitlines() if line.startswith('Multisimilarity & ')]
    assert len(sop) == 2 and sop[0].split(' & ')[2] == '$-\\pm-$'   # R@2 not logged by the SOP runs
    assert [line for line in tex.splitlines() if line.startswith('%')] == [
        '% CUB: name & R@1 & R@2 & F1 & mAP & NMI & Max_Epoch', '% CARS: name & R@1 & R@2 & F1 & mAP & NMI & Max_Epoch',
        '% SOP: name & R@1 & R@2 & F1 & mAP & NMI & Max_Epoch',
        '% Shared: name & CUB R@1 & CUB NMI & CARS R@1 & CARS NMI & SOP R@1 & SOP NMI']
    assert 'Warning: not logged by some of the 9 runs: R@2 (2 of 9)' in err
    assert sum('not logged' in line for line in err.splitlines()) == 1
    summary = pd.read_csv(tmp_path / 'summary.csv')
    assert list(summary['group']) == sorted(summary['group']) and list(summary['n_runs']) == [1, 1, 3, 2, 2]
    for stem in FIGURES:
        assert (tmp_path / (stem + '.png')).read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
        assert '<svg' in (tmp_path / (stem + '.svg')).read_text()


def test_command_line_errors_are_one_line(tmp_path, monkeypatch, capsys):
    cases = [
        (['--source', 'local'], '--source local needs --path'),
        (['--source', 'local', '--path', str(tmp_path / 'missing')], 'no such folder'),
        (['--source', 'local', '--path', str(tmp_path)], 'no run folder'),
        (['--source', 'local', '--path', str(tmp_path), '--columns', 'R@3'], '--columns R@3: unknown'),
        (['--metric_key', 'R@3'], "--metric_key 'R@3': expected NAME=KEY"),
    ]
    for argv, message in cases:
        with pytest.raises(SystemExit) as stop:
            Result_Evaluations.main(argv + ['--out', str(tmp_path / 'out')])
        assert stop.value.code == 2
        err = capsys.readouterr().err
        assert message in err and err.count('\n') == 1, err
    monkeypatch.setitem(sys.modules, 'wandb', None)
    with pytest.raises(SystemExit):
        Result_Evaluations.main(['--source', 'wandb', '--project', 'e/p', '--out', str(tmp_path)])
    assert '--source wandb needs the wandb package' in capsys.readouterr().err

    class BrokenApi:
        def runs(self, path, **kwargs):
            raise ValueError('Could not find project p\nmore detail')
    fake_wandb(monkeypatch, BrokenApi())
    with pytest.raises(SystemExit):
        Result_Evaluations.main(['--source', 'wandb', '--project', 'e/p', '--out', str(tmp_path)])
    assert capsys.readouterr().err.endswith('--project e/p: could not read the runs from W&B '
                                            '(ValueError: Could not find project p)\n')


def test_command_line_on_local_runs_without_benchmark_groups(two_seeds, tmp_path, capsys):
    out_dir = tmp_path / 'out'
    results, text, paths = Result_Evaluations.main(
        ['--source', 'local', '--path', str(two_seeds), '--out', str(out_dir), '--min_length', '2',
         '--columns', 'R@1', 'R@5', 'NMI', 'Max_Epoch', 'Intra'])
    assert paths == [] and 'figures skipped' in capsys.readouterr().out
    assert text == ('% digits: name & R@1 & R@5 & NMI & Max_Epoch & Intra\n'
                    'Triplet (H) & $55.00\\pm5.00$ & $65.00\\pm5.00$ & $80.00\\pm10.00$ & $1.50\\pm0.50$ & '
                    '$0.18\\pm0.06$\\\\\n')


# ------------------------------------------------------------------------------------------------
# end to end: real run folders written by the trainers on the embedded digits dataset

@pytest.fixture(scope='module')
def trained(interrupted_sweep):
    """2 groups × 2 seeds × 2 epochs of real digits runs: the shared sweep of tests/conftest.py (killed once
    and resumed, which leaves the logs of an uninterrupted run)."""
    return interrupted_sweep['folder']


def csv_column(run, file_name, column):
    with open(os.path.join(run, 'CSV_Logs', file_name), newline='') as handle:
        rows = list(csv.DictReader(handle))
    return [float(row[column]) for row in rows]


def test_end_to_end_on_runs_written_by_the_trainers(trained, tmp_path, capsys):
    results, text, paths = Result_Evaluations.main(
        ['--source', 'local', '--path', str(trained), '--out', str(tmp_path), '--min_length', '1',
         '--columns', 'R@1', 'R@5', 'NMI', 'F1', 'mAP@R', 'Max_Epoch'])
    assert sorted(results) == ['DIG_Triplet', 'DIGlsd_Triplet']
    for _, group, _ in E2E_GROUPS:
        result = results[group]
        assert (result.dataset, result.n_runs, sorted(result.seeds)) == ('digits', 2, [0, 1])
        best, epochs, intra = [], [], []
        for seed in (0, 1):
            run = os.path.join(trained, 'runs', 'digits', '{}_s{}'.format(group, seed))
            recall = csv_column(run, 'Data_Test_discriminative_e_recall.csv', 'e_recall@1')
            assert len(recall) == 2
            epoch = recall.index(max(recall))
            best.append(max(recall))
            epochs.append(epoch)
            intra.append(csv_column(run, 'Data_Train_discriminative_dists.csv', 'dists@intra')[epoch])
        assert result.values['R@1'] == pytest.approx((np.mean(best), np.std(best)))
        assert result.values['Max_Epoch'] == pytest.approx((np.mean(epochs), np.std(epochs)))
        assert result.values['Intra'] == pytest.approx((np.mean(intra), np.std(intra)))
        assert all(not math.isnan(result.values[name][0]) for name in ('R@5', 'NMI', 'F1', 'mAP@R', 'Rho3', 'Inter'))
        assert math.isnan(result.values['R@2'][0]) and 'R@10' not in result.values
    lines = text.splitlines()
    assert lines[0] == '% digits: name & R@1 & R@5 & NMI & F1 & mAP@R & Max_Epoch'
    assert [line.split(' & ')[0] for line in lines[1:]] == ['Triplet', 'L-Triplet']
    assert '$-\\pm-$' not in text and paths == []
    assert 'figures skipped' in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------
# selection without the test set: Test values at the epoch of the best Val value

from utilities.logger import LOGGER, Progress_Saver  # noqa: E402
from utilities.results import selection  # noqa: E402


def test_best_val_epoch_is_the_first_maximum_and_reads_test_at_that_epoch():
    chosen = selection.select_by_validation([0.2, 0.5, 0.4, 0.5], None, {'R@1': ([0.1, 0.3, 0.6, 0.2], None)})
    assert (chosen.epoch, chosen.val_value, chosen.test_values) == (1, 0.5, {'R@1': 0.3})
    assert selection.best_epoch([math.nan, 0.3, 0.3]) == (1, 0.3)
    assert selection.best_epoch([math.nan, math.nan])[0] is None
    # evaluated every 2nd epoch: the logs' `epochs` give the epoch of each row
    chosen = selection.select_by_validation([0.1, 0.4, 0.2, 0.4], [1, 3, 5, 7],
                                            {'with epochs': ([0.5, 0.6, 0.7, 0.8], [1, 3, 5, 7]),
                                             'per epoch': ([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7], None),
                                             'not logged then': ([0.9, 0.9], [0, 1])})
    assert chosen.epoch == 3 and chosen.test_values['with epochs'] == 0.6 and chosen.test_values['per epoch'] == 0.3
    assert math.isnan(chosen.test_values['not logged then'])
    nothing = selection.select_by_validation([math.nan], None, {'R@1': ([0.4], None)})
    assert nothing.epoch is None and math.isnan(nothing.test_values['R@1'])


def progress(rows, **extra):
    saver = Progress_Saver()
    for name, values in rows.items():
        for value in values:
            saver.log(name, value, group='discriminative_' + name.split('@')[0])
    for group, values in extra.items():
        for value in values:
            saver.log(group, value)
    return saver


def test_training_summary_gives_test_at_the_best_val_epoch_next_to_the_best_over_epochs(tmp_path):
    log = LOGGER(str(tmp_path), sub_loggers=['Train', 'Test', 'Model Grad', 'Val'], make_plots=False,
                 write_files=False)
    log.progress_saver['Test'] = progress({'e_recall@1': [0.50, 0.70, 0.60, 0.65], 'e_recall@2': [0.6, 0.8, 0.9, 0.7],
                                           'nmi': [0.3, 0.2, 0.4, 0.1]})
    log.progress_saver['Val'] = progress({'e_recall@1': [0.40, 0.45, 0.52, 0.52]})
    lines = log.summary_lines('e_recall@1', 'discriminative')
    assert 'TEST metrics: discriminative_e_recall: e_recall@1: 0.7000  |  e_recall@2: 0.9000' in lines
    assert lines[-3:] == [
        "SELECTION: TEST lines above are each metric's best over the epochs (chosen on the test set); TEST AT BEST "
        "VAL lines are the Test values at epoch 2 (first epoch of the best Val discriminative_e_recall: "
        "e_recall@1: 0.5200)",
        'TEST AT BEST VAL metrics (epoch 2): discriminative_e_recall: e_recall@1: 0.6000  |  e_recall@2: 0.9000',
        'TEST AT BEST VAL metrics (epoch 2): discriminative_nmi: nmi: 0.4000']
    # --evaluate_every 2: the Val and Test logs carry `epochs`
    log.progress_saver['Test'] = progress({'e_recall@1': [0.5, 0.7, 0.6]}, epochs=[1, 3, 4])
    log.progress_saver['Val'] = progress({'e_recall@1': [0.2, 0.1, 0.3]}, epochs=[1, 3, 4])
    assert log.summary_lines()[-1] == 'TEST AT BEST VAL metrics (epoch 4): discriminative_e_recall: e_recall@1: 0.6000'
    test_only = LOGGER(str(tmp_path), sub_loggers=['Train', 'Test', 'Model Grad'], make_plots=False, write_files=False)
    test_only.progress_saver['Test'] = log.progress_saver['Test']
    assert test_only.summary_lines() == ['TEST metrics: discriminative_e_recall: e_recall@1: 0.7000']  # as before


@pytest.fixture
def with_val(tmp_path):
    """Two seeds with Val logs: best Val at epoch 1 (first of two maxima) and at epoch 0."""
    make_run(tmp_path, 'X_Triplet_Softhard_s0', 'X_Triplet_Softhard', 0, recall=[0.1, 0.5, 0.3], nmi=[0.7, 0.2, 0.1],
             intra=[0.11, 0.12, 0.13], val_recall=[0.2, 0.3, 0.3])
    make_run(tmp_path, 'X_Triplet_Softhard_s1', 'X_Triplet_Softhard', 1, recall=[0.2, 0.4, 0.6], nmi=[0.1, 0.1, 0.9],
             intra=[0.21, 0.22, 0.24], val_recall=[0.9, 0.1, 0.2])
    return tmp_path


def test_aggregation_reports_test_at_the_best_val_epoch_next_to_the_best_over_epochs(with_val):
    result = aggregation.aggregate(load_local_runs(str(with_val)), min_length=2)['X_Triplet_Softhard']
    assert result.values['R@1'] == pytest.approx((0.55, 0.05))               # today's: best over epochs
    assert result.values['R@1 at best Val'] == pytest.approx((0.35, 0.15))   # 0.5 (epoch 1) and 0.2 (epoch 0)
    assert result.values['NMI at best Val'] == pytest.approx((0.15, 0.05))   # 0.2 and 0.1
    assert result.values['Intra at best Val'] == pytest.approx((0.165, 0.045))
    assert result.values['Val_Epoch'] == pytest.approx((0.5, 0.5))
    chosen = aggregation.aggregate(load_local_runs(str(with_val)), min_length=2, selection='best_val')
    values = chosen['X_Triplet_Softhard'].values
    assert values['R@1'] == pytest.approx((0.35, 0.15)) and values['Max_Epoch'] == pytest.approx((0.5, 0.5))
    assert values['R@1 best over epochs'] == pytest.approx((0.55, 0.05))


def test_command_line_chooses_what_the_table_shows(with_val, tmp_path, capsys):
    common = ['--source', 'local', '--path', str(with_val), '--min_length', '2', '--columns', 'R@1', 'NMI',
              'Max_Epoch', '--no_figures']
    _, text, _ = Result_Evaluations.main(common + ['--out', str(tmp_path / 'a')])
    assert text.splitlines()[1] == 'Triplet (H) & $55.00\\pm5.00$ & $80.00\\pm10.00$ & $1.50\\pm0.50$\\\\'
    out = capsys.readouterr().out
    assert ('Triplet (H) [X_Triplet_Softhard]: 2 runs (seeds 0 1); R@1 best over epochs (selected on the test set) '
            '55.00 ± 5.00; R@1 at best Val 35.00 ± 15.00 (Val_Epoch 0.50 ± 0.50)') in out
    _, text, _ = Result_Evaluations.main(common + ['--out', str(tmp_path / 'b'), '--selection', 'best_val'])
    assert text.splitlines() == ['% digits (Test values at the best-Val epoch): name & R@1 & NMI & Max_Epoch',
                                 'Triplet (H) & $35.00\\pm15.00$ & $15.00\\pm5.00$ & $0.50\\pm0.50$\\\\']
    summary = pd.read_csv(tmp_path / 'b' / 'summary.csv')
    assert summary['R@1 at best Val mean'][0] == pytest.approx(0.35) and summary['R@1 best over epochs mean'][0] == 0.55


def test_a_partly_finished_sweep_gives_mean_std_with_the_seed_count_per_row(tmp_path, capsys):
    runs = tmp_path / 'sweep' / 'runs'
    for seed, recall, finished in ((0, [0.1, 0.5], True), (1, [0.3, 0.4], True), (2, [0.9, 0.9], False)):
        make_run(runs, 'main_margin_ab12cd_s{}'.format(seed), 'Sample_Group', seed, recall=recall, nmi=[0.1, 0.2],
                 intra=[0.1, 0.1], finished=finished)
    make_run(runs, 'main_triplet_ef34gh_s0', 'Sample_Group', 0, recall=[0.2, 0.3], nmi=[0.1, 0.2], intra=[0.1, 0.1])
    argv = ['--source', 'local', '--path', str(tmp_path / 'sweep'), '--min_length', '1', '--no_figures',
            '--columns', 'R@1', 'Seeds', '--out', str(tmp_path / 'out')]
    results, text, _ = Result_Evaluations.main(argv)
    assert sorted(results) == ['main_margin_ab12cd', 'main_triplet_ef34gh']   # grouped by configuration
    margin = results['main_margin_ab12cd']
    assert (margin.n_runs, margin.seeds, margin.n_unfinished) == (2, [0, 1], 1)
    assert margin.values['R@1'] == pytest.approx((0.45, 0.05))               # the unfinished seed 2 is left out
    assert text.splitlines()[1:] == ['margin_ab12cd & $45.00\\pm5.00$ & 2\\\\', 'triplet_ef34gh & $30.00\\pm0.00$ & 1\\\\']
    out = capsys.readouterr().out
    assert 'margin_ab12cd [main_margin_ab12cd]: 2 runs (seeds 0 1), 1 unfinished left out' in out
    assert 'triplet_ef34gh [main_triplet_ef34gh]: 1 run (seeds 0);' in out
    results, _, _ = Result_Evaluations.main(argv + ['--include_unfinished'])
    assert results['main_margin_ab12cd'].n_runs == 3
    assert pd.read_csv(tmp_path / 'out' / 'summary.csv')['n_unfinished'].tolist() == [0, 0]
