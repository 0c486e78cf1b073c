"""Dataset registry (spec: data_metrics.md §A.1): `select(name, opt, data_path)` picks a builder by
substring, in the order cub200, cars196, online_products, then the embedded digits, and returns the
dict of §A.5 (training / validation / testing / evaluation / evaluation_train [/ super_evaluation]).
"""
from datasets import cars196, cub200, digits, stanford_online_products
from datasets.errors import DatasetError

__all__ = ['BUILDERS', 'DatasetError', 'select']

BUILDERS = (('cub200', cub200.give), ('cars196', cars196.give),
            ('online_products', stanford_online_products.give), ('digits', digits.give))


def select(name, opt, data_path):
    for key, give in BUILDERS:
        if key in name:
            return give(opt, data_path)
    raise NotImplementedError('Dataset {} not available! Choose one of {}.'
                              .format(name, ', '.join(key for key, _ in BUILDERS)))
