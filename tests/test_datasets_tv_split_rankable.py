"""A validation split that cannot rank (one class, or no class with two images) is a start-up error."""
import os

import pytest

import datasets
from datasets.errors import DatasetError
from training import loop


@pytest.mark.parametrize('image_dict, problem', [
    ({0: ['a', 'b', 'c']}, '1 class'),
    ({}, '0 classes'),
    ({0: ['a'], 1: ['b'], 2: ['c']}, 'no class with two images'),
])
def test_splits_that_cannot_rank_are_refused(image_dict, problem):
    with pytest.raises(DatasetError, match=problem):
        datasets.check_rankable(image_dict, by_samples=False, perc=0.8)


@pytest.mark.parametrize('image_dict', [{0: ['a', 'b'], 1: ['c']}, {0: ['a', 'b'], 1: ['c', 'd'], 2: []}])
def test_two_classes_and_one_pair_can_rank(image_dict):
    datasets.check_rankable(image_dict, by_samples=True, perc=0.8)


def test_the_hint_fits_the_kind_of_split():
    with pytest.raises(DatasetError, match=r'use --tv_split_by_samples .* or a lower --tv_split_perc'):
        datasets.check_rankable({0: ['a', 'b']}, by_samples=False, perc=0.8)
    with pytest.raises(DatasetError, match=r'split by samples .*use a different --tv_split_perc\.$'):
        datasets.check_rankable({0: ['a'], 1: ['b']}, by_samples=True, perc=0.5)


def test_the_trainer_stops_with_one_line_before_any_folder(tmp_path, capsys, monkeypatch):
    """digits: 5 training digits × 0.8 leave one digit for validation."""
    monkeypatch.delenv('DML_TRACEBACK', raising=False)
    with pytest.raises(SystemExit) as stop:
        loop.main(['--dataset', 'digits', '--arch', 'resnet18_normalize', '--not_pretrained', '--use_tv_split',
                   '--kernels', '0', '--save_path', str(tmp_path / 'results')])
    assert stop.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith('error:')]
    assert lines == ['error: --use_tv_split: the validation split cannot rank (1 class, split by classes with '
                     '--tv_split_perc 0.8); use --tv_split_by_samples (every training class keeps images for '
                     'validation) or a lower --tv_split_perc.']
    assert not os.path.exists(tmp_path / 'results')
