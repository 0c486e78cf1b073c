"""InShop_Runs.sh: In-Shop sample-run groups; every command parses, names registered components, passes the
trainers' start-up checks and asks for In-Shop's customary metrics; baseline and LSD groups pair up."""
import copy
import os
import shlex
import subprocess

import criteria
import metrics
import parameters
from training.setup import validate_options
from utilities.results.aggregation import dataset_of

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, 'InShop_Runs.sh')
CUSTOMARY = ['e_recall@1', 'e_recall@10', 'e_recall@20', 'e_recall@30', 'e_recall@40']


def commands():
    with open(SCRIPT) as handle:
        lines = [line for line in handle.read().splitlines() if line.startswith('python ')]
    parsed = []
    for line in lines:
        words = shlex.split(line.replace('$datapath', '/data/dml'))
        parsed.append((words[1], words[2:], parameters.read_arguments(words[2:])))
    return parsed


def test_script_is_valid_bash_and_stops_without_datapath():
    assert subprocess.run(['bash', '-n', SCRIPT]).returncode == 0
    done = subprocess.run(['bash', SCRIPT], capture_output=True, text=True, env={'PATH': os.environ['PATH']})
    assert done.returncode != 0 and 'datapath' in done.stderr


def test_every_command_is_a_valid_inshop_run():
    runs = commands()
    assert len(runs) == 60
    groups = {}
    for entry, argv, opt in runs:
        assert opt.dataset == 'inshop' and dataset_of(opt.group, vars(opt)) == 'InShop', argv
        assert opt.loss in criteria.LOSS_NAMES and criteria.is_lsd(opt.loss) == (entry == 'main.py'), argv
        assert opt.evaluation_metrics[:5] == CUSTOMARY and opt.storage_metrics == ['e_recall@1'], argv
        for name in opt.evaluation_metrics:
            metrics.select(name, opt)
        validate_options(copy.copy(opt), lsd_trainer=entry == 'main.py')
        groups.setdefault(opt.group, []).append(opt.seed)
    assert all(seeds == [0, 1, 2, 3, 4] for seeds in groups.values())
    baselines = {g[len('InShop_'):] for g in groups if g.startswith('InShop_')}
    assert baselines == {g[len('InShoplsd_'):] for g in groups if g.startswith('InShoplsd_')}
