"""Batch samplers: `select(name, opt, image_dict, image_list)` returns the training DataLoader's `batch_sampler`
(spec mining_sampling.md B.0)."""
from datasampler import (class_random_sampler, d2_coreset_sampler, disthist_batchmatch_sampler, fid_batchmatch_sampler,
                         greedy_coreset_sampler, random_sampler)
from datasampler.base import SamplerConfigError


class SamplerNotAvailableError(Exception):
    """`--data_sampler` names no sampler."""


def _module_for(name):
    """Substring precedence of the reference: 'batchmatch', then 'random' (+ 'class' / 'full'), then 'coreset'
    (+ 'greedy' / 'd2'). Names that hit a branch but none of its sub-keywords make the reference fail with
    UnboundLocalError (D-20); here they are "not available" like every other unknown name."""
    if 'batchmatch' in name:
        return {'disthist_batchmatch': disthist_batchmatch_sampler, 'fid_batchmatch': fid_batchmatch_sampler}.get(name)
    if 'random' in name:
        return class_random_sampler if 'class' in name else random_sampler if 'full' in name else None
    if 'coreset' in name:
        return greedy_coreset_sampler if 'greedy' in name else d2_coreset_sampler if 'd2' in name else None
    return None


def select(sampler_name, opt, image_dict, image_list=None, **extra):
    """Build the sampler named by `--data_sampler`; extra keyword arguments are ignored. `fid_batchmatch` is routed
    to the FID sampler (the reference raises NameError there, D-19)."""
    module = _module_for(sampler_name)
    if module is None:
        raise SamplerNotAvailableError(f'Minibatch sampler {sampler_name} not available!')
    return module.Sampler(opt, image_dict=image_dict, image_list=image_list)


__all__ = ['select', 'SamplerNotAvailableError', 'SamplerConfigError']
