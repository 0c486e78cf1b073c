"""Flags and defaults of the reference's parameters.py, and every command line of the paper repo's README."""
import os
import re
import shlex

import pytest

import parameters

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# a verbatim copy of the paper repo's README (shared/seed_README.md), so the test runs in any clone
SEED_README = os.path.join(ROOT, 'tests', 'data', 'seed_README.md')


def seed_readme_commands():
    """Every `python ...` command of the seed README's code blocks, continuation lines joined."""
    text = open(SEED_README).read()
    blocks = re.findall(r'```\n(.*?)```', text, flags=re.S)
    commands, basic = [], None
    for block in blocks:
        joined = re.sub(r'\\\n', ' ', block)
        for line in joined.splitlines():
            line = line.strip()
            if line.startswith('python '):
                commands.append(line)
                basic = basic or line
            elif line.startswith('... (basic command)'):
                commands.append(basic + line[len('... (basic command)'):])
    return commands


def test_seed_readme_has_the_three_documented_commands():
    commands = seed_readme_commands()
    assert [c.split()[1] for c in commands] == ['main_original.py', 'main.py', 'main_original.py']


@pytest.mark.parametrize('command', seed_readme_commands())
def test_every_seed_readme_command_parses(command):
    argv = shlex.split(command.replace('$datapath', '/data/dml'))[2:]
    opt = parameters.read_arguments(argv)
    assert opt.source_path == '/data/dml'
    assert opt.dataset == 'cub200' and opt.bs == 112 and opt.embed_dim == 128 and opt.n_epochs == 150
    assert opt.evaluate_on_gpu and opt.log_online and opt.gpu == [0]
    if '--kd_alpha' in argv:
        assert (opt.loss, opt.kd_alpha, opt.kd_tau) == ('triplet_lsd', 50.0, 1.0)
    if '--noisy_label' in argv:
        assert opt.noisy_label and opt.noisy_ratio == 0.3


def test_literal_defaults_are_kept():
    opt = parameters.read_arguments([])
    assert opt.fc_lr == -1 and isinstance(opt.fc_lr, int)
    assert isinstance(opt.data_d2_coreset_lambda, int) and isinstance(opt.loss_proxynca_lrmulti, int)
    assert opt.kd_beta == 1.0 and opt.kd_alpha == 200.0 and opt.kd_tau == 1.0
    assert opt.miner_parametric_mode == 'uniform' and opt.miner_parametric_n_support == 30
    assert opt.miner_parametric_support_lim == [0.1, 1.4]
    assert opt.tau == [1000] and opt.gpu == [0] and opt.wandb_key == 'Your_Key'
    assert opt.evaluation_metrics[:3] == ['e_recall@1', 'e_recall@5', 'e_recall@10']
    assert opt.noisy_type == 'symmetric' and not opt.f_distillation_standard
    assert parameters.read_arguments(['--fc_lr', '0']).fc_lr == 0.0


def test_only_source_path_starts_with_source():
    flags = [s for a in parameters.build_parser()._actions for s in a.option_strings]
    assert [f for f in flags if f.startswith('--source')] == ['--source_path']


def test_group_order_fixes_the_key_order():
    keys = list(vars(parameters.read_arguments([])))
    order = ['dataset', 'data_sampler', 'miner_distance_lower_cutoff', 'loss_contrastive_pos_margin',
             'log_online', 'kd_tau', 'noisy_label']
    assert [keys.index(k) for k in order] == sorted(keys.index(k) for k in order)
