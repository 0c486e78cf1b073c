"""Modern_Runs.sh: Proxy-Anchor with the authors' recipe and multi-similarity/contrastive + XBM, each with its
LSD twin, five seeds on CUB/CARS/SOP; every command parses with the project's parser, names registered
components, and the sweep launcher's dry run lists them. The ViT block needs the timm backbones' flags:
it is checked too once the parser knows them."""
import os
import re
import shlex

import pytest

import criteria
import parameters
from utilities.sweep.__main__ import main as sweep_main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, 'Modern_Runs.sh')
LARGE_BATCH_GROUP = re.compile(r'_Bs\d+$')   # LSD twins that differ in the batch size only
VIT_FLAGS_EXIST = all(flag in parameters.build_parser()._option_string_actions
                      for flag in ('--warmup_epochs', '--clip_grad'))


def commands():
    with open(SCRIPT) as handle:
        lines = [line.strip() for line in handle if line.startswith('python ')]
    return [line for line in lines if VIT_FLAGS_EXIST or 'vit' not in line]


def options_of(line):
    words = shlex.split(line.replace('$datapath', '/data'))
    return words[1], parameters.read_arguments(words[2:])


def test_groups_seeds_and_losses():
    groups = {}
    for line in commands():
        script, opt = options_of(line)
        groups.setdefault(opt.group, []).append(opt.seed)
        assert (script == 'main.py') == criteria.is_lsd(opt.loss), line
        assert opt.loss in criteria.LOSS_NAMES
        if 'XBM' in opt.group:
            assert opt.xbm_size > 0 and criteria.base_name(opt.loss) in criteria.memory_loss_names()
        if criteria.base_name(opt.loss) == 'proxyanchor' and 'vit' not in opt.group:
            assert (opt.embed_dim, opt.bs, opt.loss_proxyanchor_lrmulti, opt.loss_proxyanchor_warmup_epochs,
                    opt.optim, opt.decay, opt.n_epochs) == (512, 180, 100, 1, 'adamw', 1e-4, 60), line
    assert all(sorted(seeds) == [0, 1, 2, 3, 4] for seeds in groups.values())
    assert {'CUBlsd_ProxyAnchor', 'CARSlsd_ProxyAnchor', 'SOPlsd_ProxyAnchor'} <= set(groups)
    baseline = {g for g in groups if re.match(r'^(CUB|CARS|SOP)(vit)?_', g)}
    twins = {g.replace('lsd_', '_') for g in groups if 'lsd_' in g and not LARGE_BATCH_GROUP.search(g)}
    assert baseline == twins and len(baseline) == (15 if VIT_FLAGS_EXIST else 9)


def test_the_large_batch_group_differs_from_its_ordinary_twin_in_the_batch_only():
    """LSD on SOP with a batch of thousands (--batch_chunk) beside the same runs with the ordinary batch."""
    runs = {}
    for line in commands():
        _, opt = options_of(line)
        if LARGE_BATCH_GROUP.search(opt.group):
            runs.setdefault(opt.group, {})[opt.seed] = opt
    assert sorted(runs) == ['SOPlsd_Margin_Bs112', 'SOPlsd_Margin_Bs4000']
    ordinary, large = runs['SOPlsd_Margin_Bs112'], runs['SOPlsd_Margin_Bs4000']
    assert sorted(ordinary) == sorted(large) == [0, 1, 2, 3, 4]
    assert (ordinary[0].bs, ordinary[0].batch_chunk) == (112, 0)
    assert (large[0].bs, large[0].batch_chunk) == (4000, 250) and large[0].dataset == 'online_products'
    assert criteria.is_lsd(large[0].loss)
    for seed in ordinary:
        differing = {key for key, value in vars(ordinary[seed]).items() if getattr(large[seed], key) != value}
        assert differing == {'group', 'bs', 'batch_chunk'}


def test_the_sweep_dry_run_lists_every_run(tmp_path, capsys):
    script = tmp_path / 'Modern_Runs.sh'
    script.write_text('\n'.join(commands()) + '\n')
    assert sweep_main([str(script), '--set', 'datapath=/x', '--dry_run', '--sweep_dir', str(tmp_path / 's')]) == 0
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert summary.startswith('{0} runs ({0} start)'.format(len(commands())))


@pytest.mark.skipif(VIT_FLAGS_EXIST, reason='the ViT block parses: checked above')
def test_only_the_vit_block_waits_for_the_timm_flags():
    with open(SCRIPT) as handle:
        vit = [line for line in handle if line.startswith('python ') and 'vit' in line]
    assert len(vit) == 60 and all('--arch timm/vit_small_patch16_224.dino_normalize' in line for line in vit)
