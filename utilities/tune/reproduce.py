"""`--reproduce R`: the best parameters trained on all training classes with seeds 0..R-1 (one group that
Result_Evaluations.py reads), and the best trial's K fold models as one ensemble on Test.

The reproductions drop the trainer command's validation split (--use_tv_split, --tv_split_by_samples,
--tv_split_perc) and its --seed/--group; their epoch is the last one (Result_Evaluations.py --selection last).
The ensemble (Musgrave et al., "A Metric Learning Reality Check"): each fold model's best-Val checkpoint
embeds Test, each embedding is L2-normalised, and the K embeddings are concatenated (K x embed_dim).
"""
import json
import os
import shlex
import types

from utilities.atomic import atomic_write_text
from utilities.tune.space import trial_arguments
from utilities.tune.study_files import best_trial, fold_runs, trial_folder

DROPPED = ('use_tv_split', 'tv_split_by_samples', 'tv_split_perc', 'seed', 'group')


def without_flags(args, names):
    """`args` minus each `--name` of `names` and the values after it."""
    kept, skipping = [], False
    for arg in args:
        if arg.startswith('--'):
            skipping = arg[2:].split('=')[0] in names
        if not skipping:
            kept.append(arg)
    return kept


def reproduction_lines(command, params, seeds, group):
    args = without_flags(command.args, DROPPED) + trial_arguments(params)
    return [shlex.join([command.interpreter, command.script] + args + ['--seed', str(seed), '--group', group])
            for seed in seeds]


def ensemble_metrics(run_folders):
    """{metric: value} of the concatenated, normalised Test embeddings of the runs' preferred checkpoints."""
    import torch
    import metrics
    from evaluation import checkpoint_eval, split_metrics
    cli = types.SimpleNamespace(source_path='', evaluation_metrics=None, evaluate_on_gpu=False, kernels=None)
    device = checkpoint_eval.select_device()
    parts, labels, opt, dataset, n_classes = [], None, None, None, None
    for folder in run_folders:
        checkpoint = checkpoint_eval.load_checkpoint(checkpoint_eval.resolve_checkpoint(folder))
        opt = checkpoint_eval.evaluation_options(checkpoint['opt'], cli)
        dataset, n_classes = checkpoint_eval.build_split(opt, 'test')
        model = checkpoint_eval.build_network(opt, checkpoint['state_dict'], device)
        labels, features = checkpoint_eval.embed(opt, model, dataset, device)
        parts.append(torch.nn.functional.normalize(features[opt.evaltypes[0]].float(), dim=-1))
    joined = {opt.evaltypes[0]: torch.cat(parts, dim=1)}
    computer = metrics.MetricComputer(opt.evaluation_metrics, opt, n_classes=n_classes)
    computed = computer.compute_of_embeddings(labels, joined, opt.evaltypes[:1], n_threads=opt.kernels,
                                              query_gallery=getattr(dataset, 'query_gallery', None))
    numeric, _ = split_metrics(computed)
    return {name: float(value) for name, value in numeric[opt.evaltypes[0]].items()}


def reproduce(study, options, command, passed, run_sweep):
    best = best_trial(study)
    if best is None:
        print('error: --reproduce: the study has no complete trial', flush=True)
        return 1
    folder = os.path.join(options.study_folder, 'reproduce')
    os.makedirs(folder, exist_ok=True)
    group = options.reproduce_group or os.path.basename(os.path.abspath(options.study_folder))
    commands = os.path.join(folder, 'commands.sh')
    atomic_write_text('\n'.join(reproduction_lines(command, best.params, range(options.reproduce), group)) + '\n',
                      commands)
    code = run_sweep(commands, folder, passed)
    runs = fold_runs(trial_folder(options.study_folder, best.number))
    ensemble_path = os.path.join(folder, 'ensemble.json')
    if not os.path.isfile(ensemble_path):
        values = ensemble_metrics([runs[fold][0] for fold in sorted(runs)])
        record = {'trial': best.number, 'folds': len(runs), 'params': best.params, 'Test': values}
        atomic_write_text(json.dumps(record, indent=2) + '\n', ensemble_path)
    with open(ensemble_path) as handle:
        record = json.load(handle)
    print('reproduce: group {} ({} seeds) in {}; ensemble of the {} fold models on Test: {}'.format(
        group, options.reproduce, os.path.join(folder, 'runs'), record['folds'],
        ' '.join('{} {:.4f}'.format(k, v) for k, v in record['Test'].items())), flush=True)
    return code
