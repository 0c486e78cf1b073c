"""Regenerate the replayed W&B API responses in this folder (see README.md); deterministic.

    python tests/data/wandb_api/make_recordings.py
"""
import json
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REFERENCE_RECALL = (1, 2, 4)      # R's --evaluation_metrics: e_recall@1/2/4, nmi, f1, mAP
PROJECT_RECALL = (1, 5, 10)       # this project's defaults: also mAP_1000, mAP_lim, mAP_c; no mAP

# display name, run id, logged epochs, step stride (3 = a history W&B sampled), metric style, base R@1
RUNS = (
    ('CUB_Triplet_Distance_s0', 'a1b2c3d0', 42, 1, 'reference', 0.600),
    ('CUB_Triplet_Distance_s1', 'a1b2c3d1', 42, 1, 'reference', 0.605),
    ('CUB_Triplet_Distance_s2', 'a1b2c3d2', 42, 1, 'reference', 0.598),
    ('CUB_Npair_s3', 'b7e1f0a3', 42, 3, 'reference', 0.585),
    ('CUBreg_Triplet_Distance_3_s0', 'c4d5e6f0', 42, 1, 'reference', 0.620),
    ('CUBreg_Triplet_Distance_3_s1', 'c4d5e6f1', 42, 1, 'reference', 0.625),
    ('CARS_Margin_b12_Distance_s0', 'd9a8b7c0', 42, 1, 'reference', 0.790),
    ('CARS_Margin_b12_Distance_s1', 'd9a8b7c1', 30, 1, 'reference', 0.780),
    ('SOP_MS_s0', 'e0f1a2b0', 42, 1, 'project', 0.760),
    ('SOP_MS_s1', 'e0f1a2b1', 42, 1, 'project', 0.765),
)


def config_of(name, style):
    group, _, seed = name.rpartition('_s')
    dataset = {'CUB': 'cub200', 'CAR': 'cars196', 'SOP': 'online_products'}[name[:3]]
    values = {'dataset': dataset, 'group': group, 'seed': int(seed), 'n_epochs': 150, 'project': 'RevisitDML',
              'loss': 'triplet', 'savename': name, 'evaluation_metrics': (
                  ['e_recall@1', 'e_recall@2', 'e_recall@4', 'nmi', 'f1', 'mAP'] if style == 'reference' else
                  ['e_recall@1', 'e_recall@5', 'e_recall@10', 'nmi', 'f1', 'mAP_1000', 'mAP_lim', 'mAP_c'])}
    config = {key: {'desc': None, 'value': value} for key, value in values.items()}
    config['_wandb'] = {'desc': None, 'value': {'cli_version': '0.31.0', 'python_version': '3.11.7'}}
    return json.dumps(config)


def history_of(rng, epochs, stride, style, base):
    lines = []
    for row in range(epochs):
        step = row * stride
        progress = 1 - np.exp(-step / 12.0)
        recall = base * (0.7 + 0.3 * progress) + rng.normal(0, 0.004)
        entry = {'_step': step, '_runtime': round(61.5 * (step + 1), 3), '_timestamp': 1656000000 + 62 * step,
                 'Train: epochs': step, 'Train: loss': round(0.2 * np.exp(-step / 20) + 0.01, 6),
                 'Train: time': round(55 + rng.normal(0, 1), 4)}
        ks = REFERENCE_RECALL if style == 'reference' else PROJECT_RECALL
        for i, k in enumerate(ks):
            entry['Test: discriminative_e_recall: e_recall@{}'.format(k)] = recall + 0.06 * i
        entry['Test: discriminative_nmi: nmi'] = 0.55 + 0.1 * progress + rng.normal(0, 0.004)
        entry['Test: discriminative_f1: f1'] = 0.25 + 0.1 * progress + rng.normal(0, 0.004)
        if style == 'reference':
            entry['Test: discriminative_mAP: mAP'] = 0.20 + 0.1 * progress + rng.normal(0, 0.004)
        else:
            for key in ('mAP_1000', 'mAP_lim', 'mAP_c'):
                entry['Test: discriminative_{0}: {0}'.format(key)] = 0.20 + 0.1 * progress + rng.normal(0, 0.004)
        intra, inter = 0.3 + 0.1 * progress, 0.9 + 0.1 * progress
        entry['Train: discriminative_dists: dists@intra'] = intra + rng.normal(0, 0.003)
        entry['Train: discriminative_dists: dists@inter'] = inter + rng.normal(0, 0.003)
        entry['Train: discriminative_dists: dists@intra_over_inter'] = intra / inter
        for k, scale in ((-1, 0.3), (1, 0.32), (2, 0.2), (10, 0.05)):
            entry['Train: discriminative_rho_spectrum: rho_spectrum@{}'.format(k)] = \
                scale * (0.5 + progress) + rng.normal(0, 0.002)
        spectrum = np.sort(rng.random(8))[::-1]
        entry['Test: discriminative_rho_spectrum@0'] = {
            '_type': 'histogram', 'values': [round(float(v), 4) for v in spectrum / spectrum.sum()],
            'bins': list(range(9))}
        lines.append({k: round(float(v), 4) if isinstance(v, (float, np.floating)) else v for k, v in entry.items()})
    return lines


def main():
    rng = np.random.RandomState(0)
    edges = []
    for name, run_id, epochs, stride, style, base in RUNS:
        edges.append({'node': {'id': 'UnVuOnYx' + run_id, 'name': run_id, 'displayName': name,
                               'group': name.rpartition('_s')[0], 'state': 'finished',
                               'config': config_of(name, style)}})
        lines = history_of(rng, epochs, stride, style, base)
        if name == 'CUB_Triplet_Distance_s2':
            # a step at which only the histogram was logged: the scalar columns are NaN in that row
            lines.append({'_step': epochs, 'Test: discriminative_rho_spectrum@0': lines[-1][
                'Test: discriminative_rho_spectrum@0']})
        response = {'project': {'run': {'history': [json.dumps(line) for line in lines]}}}
        with open(os.path.join(HERE, 'history', run_id + '.json'), 'w') as handle:
            json.dump(response, handle, indent=0)
    with open(os.path.join(HERE, 'runs.json'), 'w') as handle:
        json.dump({'project': {'runs': {'edges': edges, 'pageInfo': {'hasNextPage': False}}}}, handle, indent=1)


if __name__ == '__main__':
    main()
