"""The dict every builder returns, with the reference's keys.

Only `training` may carry noisy labels; `evaluation` is the training images with evaluation transforms
and clean labels (the per-epoch "Train" metrics run on it). A benchmark evaluated query against gallery
(In-Shop) gives `test_roles` = (query paths, gallery paths): its `testing` split then carries them as
`query_gallery` (datasets.query_gallery).
"""
from datasets.basic_dataset_scaffold import BaseDataset
from datasets.basic_dataset_scaffold_noisy import NoisyDataset
from datasets.query_gallery import QueryGallery


def print_setup(opt, n_train, n_val, n_test):
    print('\nDataset Setup:\nUsing Train-Val Split: {0}\n#Classes: Train ({1}) | Val ({2}) | Test ({3})\n'
          .format(opt.use_tv_split, n_train, 'X' if n_val is None else n_val, n_test))


def build_dataset_dict(opt, train_dict, val_dict, test_dict, conversions, pipeline,
                       super_dict=None, super_conversion=None, test_roles=None):
    """`conversions` maps 'training' / 'validation' / 'testing' to label -> name dicts."""
    print_setup(opt, len(train_dict), None if val_dict is None else len(val_dict), len(test_dict))
    training_class = NoisyDataset if opt.noisy_label else BaseDataset
    datasets = {
        'training': training_class(train_dict, opt, conversion=conversions['training'], pipeline=pipeline),
        'validation': None if val_dict is None else BaseDataset(
            val_dict, opt, is_validation=True, conversion=conversions['validation'], pipeline=pipeline),
        'testing': BaseDataset(test_dict, opt, is_validation=True, conversion=conversions['testing'],
                               pipeline=pipeline),
        'evaluation': BaseDataset(train_dict, opt, is_validation=True, conversion=conversions['training'],
                                  pipeline=pipeline),
        'evaluation_train': BaseDataset(train_dict, opt, conversion=conversions['training'], pipeline=pipeline),
    }
    if test_roles is not None:
        datasets['testing'].query_gallery = QueryGallery.from_paths(datasets['testing'].image_list, *test_roles)
    if super_dict is not None:
        datasets['super_evaluation'] = BaseDataset(super_dict, opt, is_validation=True,
                                                   conversion=super_conversion, pipeline=pipeline)
    return datasets
