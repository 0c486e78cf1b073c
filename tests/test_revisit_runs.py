"""Revisit_Runs.sh: the reference's sample runs (its Revisit_Runs.sh), their LSD counterparts and the
noisy-label groups; every command parses with the project's parser and names registered components."""
import copy
import functools
import os
import re
import shlex
import stat
import subprocess

import architectures
import batch_mining
import criteria
import datasampler
import datasets
import parameters
from utilities.results.aggregation import dataset_of
from utilities.results.runs import group_from_name
from utilities.results.tables import table_name

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, 'Revisit_Runs.sh')
DATAPATH = '/data/dml'
GUARD = ': "${datapath:?'

FN, F = 'resnet50_frozen_normalize', 'resnet50_frozen'
# The reference script's baseline groups: suffix -> (loss, miner or None, arch, datasets)
REFERENCE_BASELINES = {
    'Npair': ('npair', 'npair', F, 'CUB CARS SOP'),
    'GenLifted': ('lifted', 'lifted', F, 'CUB CARS SOP'),
    'ProxyNCA': ('proxynca', None, FN, 'CUB CARS'),
    'Histogram': ('histogram', None, FN, 'CUB CARS SOP'),
    'Contrastive': ('contrastive', 'distance', FN, 'CUB CARS SOP'),
    'SoftTriple': ('softtriplet', None, FN, 'CUB CARS'),
    'Angular': ('angular', 'npair', F, 'CUB CARS SOP'),
    'ArcFace': ('arcface', None, FN, 'CUB CARS SOP'),
    'Triplet_Random': ('triplet', 'random', FN, 'CUB CARS SOP'),
    'Triplet_Semihard': ('triplet', 'semihard', FN, 'CUB CARS SOP'),
    'Triplet_Softhard': ('triplet', 'softhard', FN, 'CUB CARS SOP'),
    'Triplet_Distance': ('triplet', 'distance', FN, 'CUB CARS SOP'),
    'Quadruplet_Distance': ('quadruplet', 'distance', FN, 'CUB CARS SOP'),
    'Margin_b06_Distance': ('margin', 'distance', FN, 'CUB CARS SOP'),
    'Margin_b12_Distance': ('margin', 'distance', FN, 'CUB CARS SOP'),
    'SNR_Distance': ('snr', 'distance', FN, 'CUB CARS SOP'),
    'MS': ('multisimilarity', None, FN, 'CUB CARS SOP'),
    'Softmax': ('softmax', 'distance', FN, 'CUB CARS SOP'),
}
# The reference script's regularised groups: group -> (loss, miner_rho_distance_cp, loss_margin_beta)
REFERENCE_REGULARISED = {
    'CUBreg_Contrastive': ('contrastive', 0.4, 1.2),
    'CUBreg_Margin_b06_Distance': ('margin', 0.4, 0.6),
    'CUBreg_Margin_b12_Distance_3': ('margin', 0.35, 1.2),
    'CUBreg_Triplet_Distance_3': ('triplet', 0.4, 1.2),
    'CUBreg_SNR_Distance_3': ('snr', 0.3, 1.2),
}
for tag, cp in (('CARreg', 0.35), ('SOPreg', 0.15)):
    REFERENCE_REGULARISED.update({
        tag + '_Contrastive': ('contrastive', cp, 1.2),
        tag + '_Margin_b06_Distance': ('margin', cp, 0.6),
        tag + '_Margin_b12_Distance': ('margin', cp, 1.2),
        tag + '_Triplet_Distance': ('triplet', cp, 1.2),
        tag + '_SNR_Distance': ('snr', cp, 1.2),
    })
PREFIX = {'CUB': 'CUB', 'CARS': 'CARS', 'SOP': 'SOP'}
LSD_PREFIX = {'CUB': 'CUBlsd', 'CARS': 'CARlsd', 'SOP': 'SOPlsd'}
NOISY_PREFIX = {'CUB': 'CUBnoisy', 'CARS': 'CARnoisy', 'SOP': 'SOPnoisy'}
DATASET = {'CUB': 'cub200', 'CARS': 'cars196', 'SOP': 'online_products'}
EPOCHS = {'CUB': 150, 'CARS': 150, 'SOP': 100}
NOISY_RATIOS = {0.1, 0.2, 0.3, 0.5}
# options that may differ between a group and its LSD counterpart
LSD_ONLY = ('group', 'loss', 'kd_alpha', 'kd_tau')


def script_lines():
    """Lines of the script with continuation lines joined."""
    with open(SCRIPT) as handle:
        return re.sub(r'\\\n', ' ', handle.read()).splitlines()


@functools.lru_cache(maxsize=None)
def parse_line(line):
    """(entry point, argv, opt) of one `python ...` line, `$datapath` substituted."""
    words = shlex.split(line.replace('$datapath', DATAPATH))
    return words[1], words[2:], parameters.read_arguments(words[2:])


def parsed_commands():
    """Every run of the script, in script order."""
    return [parse_line(line) for line in script_lines() if line.startswith('python ')]


def by_group():
    groups = {}
    for entry, argv, opt in parsed_commands():
        groups.setdefault(opt.group, []).append((entry, argv, opt))
    return groups


def ds_of(opt):
    return {v: k for k, v in DATASET.items()}[opt.dataset]


def without(opt, names):
    return {k: v for k, v in vars(opt).items() if k not in names + ('seed',)}


def test_script_is_valid_bash():
    result = subprocess.run(['bash', '-n', SCRIPT], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


def test_every_line_is_a_comment_blank_guard_or_run():
    lines = script_lines()
    assert lines[0] == '#!/usr/bin/env bash'
    others = [l for l in lines[1:] if l.strip() and not l.startswith('#') and not l.startswith('python ')]
    assert len(others) == 1 and others[0].startswith(GUARD)
    runs = [l for l in lines if l.startswith('python ')]
    assert all(l.split()[1] in ('main.py', 'main_original.py') for l in runs)
    assert all('--source $datapath ' in l for l in runs)
    assert lines.index(others[0]) < lines.index(runs[0])


def test_script_stops_before_any_run_without_datapath(tmp_path):
    """A fake `python` on PATH records any call; none may happen when $datapath is unset."""
    marker = tmp_path / 'called'
    fake = tmp_path / 'python'
    fake.write_text('#!/bin/sh\ntouch {}\nexit 1\n'.format(marker))
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    env = {k: v for k, v in os.environ.items() if k != 'datapath'}
    env['PATH'] = str(tmp_path) + os.pathsep + env.get('PATH', '')
    result = subprocess.run(['bash', SCRIPT], capture_output=True, text=True, env=env, timeout=30)
    assert result.returncode != 0
    assert 'datapath' in result.stderr
    assert not marker.exists()


def test_every_command_parses_and_names_registered_components():
    dataset_names = [name for name, _ in datasets.BUILDERS]
    commands = parsed_commands()
    assert len(commands) > 900
    for entry, argv, opt in commands:
        assert opt.source_path == DATAPATH, argv
        assert opt.dataset in dataset_names
        assert opt.loss in criteria.LOSS_NAMES and opt.loss not in criteria.UNSUPPORTED, argv
        assert opt.batch_mining in batch_mining.BATCHMINING_METHODS, argv
        assert datasampler._module_for(opt.data_sampler) is not None, argv
        assert architectures.backbone_of(opt.arch) in architectures.BACKBONES
        assert opt.bs % opt.samples_per_class == 0
        assert criteria.is_lsd(opt.loss) == (entry == 'main.py'), argv
        if criteria.is_lsd(opt.loss):
            assert (opt.kd_alpha, opt.kd_tau) == (50.0, 1.0), argv


@functools.lru_cache(maxsize=None)
def miner_name(key):
    opt = parameters.read_arguments([])
    return batch_mining.select(key, opt).name


def test_every_loss_accepts_its_miner():
    """Through the registries: a loss that needs a miner gets one it allows."""
    checked = set()
    for _, argv, opt in parsed_commands():
        module = criteria.BASE_LOSSES[criteria.base_name(opt.loss)]
        if module.REQUIRES_BATCHMINER:
            assert miner_name(opt.batch_mining) in module.ALLOWED_MINING_OPS, argv
            checked.add(opt.loss)
            if opt.batch_mining == 'semihard':
                assert hasattr(opt, 'loss_{}_margin'.format(criteria.base_name(opt.loss)))
    assert {'npair', 'lifted', 'angular', 'triplet', 'contrastive', 'ap_loss_lsd'} <= checked


def test_every_command_passes_the_trainers_start_up_checks():
    from training.setup import validate_options
    seen = set()
    for entry, argv, opt in parsed_commands():
        key = (entry,) + tuple(sorted((k, repr(v)) for k, v in vars(opt).items() if k not in ('seed', 'group')))
        if key in seen:
            continue
        seen.add(key)
        validate_options(copy.copy(opt), lsd_trainer=entry == 'main.py')


def test_groups_are_blocks_of_seeds_0_to_4_separated_by_blank_lines():
    blocks, current = [], []
    for line in script_lines() + ['']:
        if line.startswith('python '):
            current.append(line)
        elif current:
            assert not line.strip() or line.startswith('#'), line
            blocks.append(current)
            current = []
    groups = []
    for block in blocks:
        parsed = [parse_line(l)[2] for l in block]
        assert [p.seed for p in parsed] == [0, 1, 2, 3, 4], block[0]
        assert len({p.group for p in parsed}) == 1
        assert len({re.sub(r'--seed \d', '', l) for l in block}) == 1
        groups.append(parsed[0].group)
    assert len(groups) == len(set(groups))


def test_reference_baseline_groups_match_the_reference_script():
    groups = by_group()
    for ds in ('CUB', 'CARS', 'SOP'):
        expected = {PREFIX[ds] + '_' + s for s, row in REFERENCE_BASELINES.items() if ds in row[3].split()}
        present = {g for g in groups if g.startswith(PREFIX[ds] + '_') and not g.endswith('_SmoothAP')}
        assert present == expected
        assert len(expected) == {'CUB': 18, 'CARS': 18, 'SOP': 16}[ds]
        for suffix, (loss, miner, arch, _) in REFERENCE_BASELINES.items():
            group = PREFIX[ds] + '_' + suffix
            for entry, argv, opt in groups.get(group, []):
                assert entry == 'main_original.py'
                assert (opt.loss, opt.arch, opt.dataset, opt.n_epochs) == (loss, arch, DATASET[ds], EPOCHS[ds])
                assert (('--batch_mining' in argv) == (miner is not None)) and opt.batch_mining == (miner or 'distance')
                assert ('--dataset' in argv) == (ds != 'CUB')
                assert (opt.bs, opt.samples_per_class, opt.gpu, opt.project) == (112, 2, [0], 'RevisitDML')
                assert opt.log_online and not opt.noisy_label
                assert opt.loss_margin_beta == (0.6 if 'b06' in suffix else 1.2)
                assert opt.loss_histogram_nbins == (11 if ds == 'SOP' and suffix == 'Histogram' else 65)
                assert opt.loss_softmax_lr == (0.002 if ds == 'SOP' and suffix == 'Softmax' else 0.00001)
                two = ds == 'SOP' and suffix in ('Margin_b12_Distance', 'SNR_Distance', 'MS', 'Softmax')
                assert opt.kernels == (2 if two else 6)
                for flag in ('--embed_dim', '--lr', '--data_sampler', '--evaluate_on_gpu'):
                    assert flag not in argv


def test_regularised_groups_match_the_reference_script():
    groups = by_group()
    present = {g for g in groups if 'reg_' in g}
    assert present == set(REFERENCE_REGULARISED)
    for group, (loss, cp, beta) in REFERENCE_REGULARISED.items():
        for entry, _, opt in groups[group]:
            assert entry == 'main_original.py'
            assert (opt.loss, opt.batch_mining, opt.arch) == (loss, 'rho_distance', FN)
            assert (opt.miner_rho_distance_cp, opt.loss_margin_beta) == (cp, beta)
            assert opt.n_epochs == EPOCHS[group[:3] if group[:3] != 'CAR' else 'CARS']


def test_every_baseline_group_has_an_lsd_counterpart():
    groups = by_group()
    for group, commands in groups.items():
        ds = ds_of(commands[0][2])
        if not group.startswith(PREFIX[ds] + '_'):
            continue
        counterpart = LSD_PREFIX[ds] + group[len(PREFIX[ds]):]
        assert counterpart in groups, group
        for (entry, _, base), (lsd_entry, _, lsd) in zip(commands, groups[counterpart]):
            assert (entry, lsd_entry) == ('main_original.py', 'main.py')
            assert lsd.loss == base.loss + '_lsd'
            assert without(lsd, LSD_ONLY) == without(base, LSD_ONLY)
    lsd_losses = {opt.loss for _, _, opt in parsed_commands() if criteria.is_lsd(opt.loss)}
    # Proxy-Anchor, added since, has its groups in Modern_Runs.sh (tests/test_modern_runs.py)
    assert lsd_losses == set(criteria.LSD_LOSS_NAMES) - {'proxyanchor_lsd'}


def test_noisy_groups_compare_baseline_and_lsd_at_several_ratios():
    groups = by_group()
    for ds in ('CUB', 'CARS', 'SOP'):
        noisy = {g: c for g, c in groups.items() if g.startswith(NOISY_PREFIX[ds])}
        ratios = set()
        for group, commands in noisy.items():
            tag = group.split('_')[0][len(NOISY_PREFIX[ds]):]
            percent = int(tag.replace('lsd', ''))
            for entry, _, opt in commands:
                assert opt.noisy_label and opt.noisy_ratio == percent / 100
                assert opt.dataset == DATASET[ds]
                ratios.add(opt.noisy_ratio)
            if not tag.endswith('lsd'):
                counterpart = '{}{}lsd_{}'.format(NOISY_PREFIX[ds], percent, group.split('_', 1)[1])
                assert counterpart in noisy
                for (_, _, base), (entry, _, lsd) in zip(commands, noisy[counterpart]):
                    assert entry == 'main.py' and lsd.loss == base.loss + '_lsd'
                    assert without(lsd, LSD_ONLY) == without(base, LSD_ONLY)
        assert ratios == NOISY_RATIOS
        assert len(noisy) >= 2 * len(NOISY_RATIOS)
    clean = [opt for _, _, opt in parsed_commands() if 'noisy' not in opt.group]
    assert not any(opt.noisy_label for opt in clean)


def test_group_names_aggregate_into_distinct_rows():
    """Result_Evaluations recovers each group from its W&B run name, files it under the run's dataset and
    gives every group of a dataset its own table row."""
    names = {}
    for _, _, opt in parsed_commands():
        assert group_from_name('{}_s{}'.format(opt.group, opt.seed)) == opt.group
        ds = dataset_of(opt.group, {})
        assert ds == ds_of(opt)
        names.setdefault(ds, {}).setdefault(table_name(opt.group), set()).add(opt.group)
    for ds, by_name in names.items():
        assert all(len(groups) == 1 for groups in by_name.values()), ds
