"""Batch samplers: `select(name, opt, image_dict, image_list)` returns the training DataLoader's `batch_sampler`;
`ignored_flag_notices(opt)` lists the start-up notices for sampler flags the chosen sampler does not read."""
from datasampler import (class_random_sampler, d2_coreset_sampler, disthist_batchmatch_sampler, fid_batchmatch_sampler,
                         greedy_coreset_sampler, ignored_flags, random_sampler)
from datasampler.base import SamplerConfigError


class SamplerNotAvailableError(Exception):
    """`--data_sampler` names no sampler."""


def _module_for(name):
    """Substring precedence of the reference: 'batchmatch', then 'random' (+ 'class' / 'full'), then 'coreset'
    (+ 'greedy' / 'd2'). Names that hit a branch but none of its sub-keywords crash the reference with an
    UnboundLocalError; here they are "not available" like every other unknown name."""
    if 'batchmatch' in name:
        return {'disthist_batchmatch': disthist_batchmatch_sampler, 'fid_batchmatch': fid_batchmatch_sampler}.get(name)
    if 'random' in name:
        return class_random_sampler if 'class' in name else random_sampler if 'full' in name else None
    if 'coreset' in name:
        return greedy_coreset_sampler if 'greedy' in name else d2_coreset_sampler if 'd2' in name else None
    return None


def select(sampler_name, opt, image_dict, image_list=None, **extra):
    """Build the sampler named by `--data_sampler`; extra keyword arguments are ignored. `fid_batchmatch` is routed
    to the FID sampler (the reference names a module that does not exist there, so it cannot be reached)."""
    module = _module_for(sampler_name)
    if module is None:
        raise SamplerNotAvailableError(f'Minibatch sampler {sampler_name} not available!')
    return module.Sampler(opt, image_dict=image_dict, image_list=image_list)


def ignored_flag_notices(opt):
    """One 'Notice: ...' line per sampler flag set to a non-default value that `--data_sampler` ignores
    (none for a name select rejects: that error comes first)."""
    module = _module_for(opt.data_sampler)
    if module is None:
        return []
    key = ignored_flags.SAMPLER_KEYS[module.__name__.rsplit('.', 1)[-1]]
    return ignored_flags.ignored_flag_notices(opt, key, opt.data_sampler)


__all__ = ['select', 'ignored_flag_notices', 'SamplerNotAvailableError', 'SamplerConfigError']
