"""Class-disjoint cross-validation folds (`--cv_folds K --cv_fold i`) in both trainers."""
import os

import pytest

import datasets
import parameters
from datasets import tv_split
from evaluation import checkpoint_eval
from tests.conftest import run_trainer_in_process
from utilities.sweep.commands import parse_commands
from utilities.sweep.naming import plan_runs


@pytest.mark.parametrize('n_keys,n_folds', [(5, 2), (7, 3), (100, 4), (4, 4)])
def test_class_folds_are_disjoint_and_cover_the_classes(n_keys, n_folds):
    keys = list(range(10, 10 + n_keys))
    validation = []
    for fold in range(n_folds):
        train, val = tv_split.split_classes(keys, 0.8, (n_folds, fold))
        assert sorted(train + val) == keys and not set(train) & set(val)
        assert val == keys[fold::n_folds]   # the documented rule: positions i, i+K, ...
        validation += val
    assert sorted(validation) == keys and len(validation) == len(set(validation))


def test_sample_folds_split_every_class_and_cover_its_images():
    paths = ['img{}.png'.format(i) for i in range(11)]
    validation = []
    for fold in range(3):
        train, val = tv_split.split_samples(paths, 0.8, tv_split.first_positions, (3, fold))
        assert sorted(train + val) == sorted(paths) and not set(train) & set(val)
        validation += val
    assert sorted(validation) == sorted(paths)


def digits_splits(*flags):
    opt = parameters.read_arguments(['--dataset', 'digits', '--arch', 'resnet18_frozen'] + list(flags))
    return datasets.select('digits', opt, '/no/such/source/digits')


def image_set(dataset):
    return {path for path, _ in dataset.image_list}


def test_digits_class_folds_through_the_dataset_builder():
    full = digits_splits()
    all_images = image_set(full['training'])
    seen = set()
    for fold in range(2):
        splits = digits_splits('--cv_folds', '2', '--cv_fold', str(fold))
        train, val = image_set(splits['training']), image_set(splits['validation'])
        assert train | val == all_images and not train & val
        val_classes = {full['training'].image_list[[p for p, _ in full['training'].image_list].index(path)][1]
                       for path in val}
        assert val_classes == set(range(fold, 5, 2))          # digits 0, 2, 4 / 1, 3
        assert image_set(splits['testing']) == image_set(full['testing'])   # the test split is untouched
        assert not seen & val
        seen |= val
    assert seen == all_images


def test_digits_sample_folds_through_the_dataset_builder():
    full = digits_splits()
    all_images = image_set(full['training'])
    seen = set()
    for fold in range(3):
        splits = digits_splits('--cv_folds', '3', '--cv_fold', str(fold), '--tv_split_by_samples')
        train, val = image_set(splits['training']), image_set(splits['validation'])
        assert train | val == all_images and not train & val
        assert splits['validation'].avail_classes == [0, 1, 2, 3, 4]   # every class keeps images for Val
        assert not seen & val
        seen |= val
    assert seen == all_images


def test_evaluate_split_val_follows_the_saved_fold():
    saved = parameters.read_arguments(['--dataset', 'digits', '--arch', 'resnet18_frozen', '--cv_folds', '2',
                                       '--cv_fold', '1'])
    cli = type('Cli', (), dict(source_path='', evaluation_metrics=None, evaluate_on_gpu=False, kernels=None))
    opt = checkpoint_eval.evaluation_options(saved, cli)
    dataset, _ = checkpoint_eval.build_split(opt, 'val')
    assert image_set(dataset) == image_set(digits_splits('--cv_folds', '2', '--cv_fold', '1')['validation'])


@pytest.mark.parametrize('flags,message', [
    (['--cv_folds', '1'], '--cv_folds 1: give at least 2 folds'),
    (['--cv_folds', '2', '--cv_fold', '2'], '--cv_fold 2 is not a fold of --cv_folds 2'),
    (['--cv_fold', '1'], '--cv_fold 1 needs --cv_folds K'),
    (['--cv_folds', '5'], '--cv_fold 0: the validation fold cannot rank (1 class, 5 folds by classes)'),
])
def test_bad_folds_are_one_line_before_any_folder(tmp_path, flags, message):
    done = run_trainer_in_process(['--dataset', 'digits', '--arch', 'resnet18_frozen', '--not_pretrained',
                                   '--kernels', '0', '--n_epochs', '1', '--save_path', str(tmp_path)] + flags)
    assert done.returncode == 2
    lines = [line for line in done.stderr.strip().splitlines() if not line.startswith('Notice:')]
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert not os.path.exists(tmp_path / 'digits') or not os.listdir(tmp_path / 'digits')


def test_sweep_names_follow_the_fold(tmp_path):
    text = ''.join('python main.py --dataset digits --cv_folds 2 --cv_fold {} {} --seed 3\n'.format(fold, extra)
                   for extra in ('--group G', '--loss margin') for fold in (0, 1))
    runs, _ = plan_runs(parse_commands(text), str(tmp_path))
    names = [run.savename for run in runs]
    assert names[:2] == ['G_fold0_s3', 'G_fold1_s3']
    stem = names[2][:-len('_fold0_s3')]
    assert names[2:] == [stem + '_fold0_s3', stem + '_fold1_s3'] and stem.startswith('main_margin_')
    plain, _ = plan_runs(parse_commands('python main.py --dataset digits --group G --seed 3\n'), str(tmp_path))
    assert plain[0].savename == 'G_s3'    # without folds: the names of before


@pytest.mark.parametrize('as_csv', [True, False], ids=['csv', 'folder'])
def test_own_data_class_folds_through_the_dataset_builder(tmp_path, as_csv):
    """--cv_folds splits the train rows of a user's CSV and the training classes of an image folder."""
    from datasets import write_digits
    source = write_digits.write(str(tmp_path / 'own'), as_csv, 6)
    name = 'csv' if as_csv else 'folder'

    def splits(*flags):
        opt = parameters.read_arguments(['--dataset', name, '--source_path', source, '--arch', 'resnet18_frozen']
                                        + list(flags))
        return datasets.select(name, opt, datasets.data_folder(name, source))

    full = splits()
    label_of = dict(full['training'].image_list)
    seen = set()
    for fold in range(2):
        folded = splits('--cv_folds', '2', '--cv_fold', str(fold))
        train, val = image_set(folded['training']), image_set(folded['validation'])
        assert train | val == set(label_of) and not train & val
        val_classes = {label_of[path] for path in val}
        assert not val_classes & {label_of[path] for path in train}     # class-disjoint
        assert image_set(folded['testing']) == image_set(full['testing'])
        seen |= val_classes
    assert seen == set(label_of.values())
