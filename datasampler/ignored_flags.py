"""One start-up notice per sampler flag the user changed that the chosen `--data_sampler` does not read.

`--data_sim_measure` and `--data_gc_coreset_lim` are read by no sampler (the reference defines them and never uses
them; every sampler measures Euclidean distances and the greedy coreset has no stopping limit), so they stay
accepted for compatibility and ignored. `--data_batchmatch_ncomps` only sizes the candidate set of the two
batch-matching samplers; the coreset samplers pick their anchors directly and have no candidates to count.
"""
import parameters

STORAGE_SAMPLERS = ('greedy_coreset', 'd2_coreset', 'disthist_batchmatch', 'fid_batchmatch')

# sampler module -> the key its notices name
SAMPLER_KEYS = {
    'class_random_sampler': 'class_random', 'random_sampler': 'full_random',
    'greedy_coreset_sampler': 'greedy_coreset', 'd2_coreset_sampler': 'd2_coreset',
    'disthist_batchmatch_sampler': 'disthist_batchmatch', 'fid_batchmatch_sampler': 'fid_batchmatch',
}

# flag -> the samplers that read it (an empty tuple: accepted, never read)
FLAG_READERS = {
    'data_batchmatch_bigbs': STORAGE_SAMPLERS,
    'data_batchmatch_ncomps': ('disthist_batchmatch', 'fid_batchmatch'),
    'data_storage_no_update': STORAGE_SAMPLERS,
    'data_d2_coreset_lambda': ('d2_coreset',),
    'data_gc_coreset_lim': (),
    'data_sampler_lowproj_dim': STORAGE_SAMPLERS,
    'data_sim_measure': (),
    'data_gc_softened': ('greedy_coreset',),
    'data_idx_full_prec': STORAGE_SAMPLERS,
    'data_mb_mom': STORAGE_SAMPLERS,
    'data_mb_lr': STORAGE_SAMPLERS,
}

# flags that only take effect together with another flag
NEEDS_FLAG = {'data_mb_mom': 'data_idx_full_prec', 'data_mb_lr': 'data_idx_full_prec'}


def notice(flag, readers, sampler):
    """The one-line notice for `--flag`, which `--data_sampler sampler` ignores."""
    if not readers:
        return 'Notice: --{} is accepted for compatibility and ignored by --data_sampler {}.'.format(flag, sampler)
    return 'Notice: --{} is ignored by --data_sampler {} (only {} read it).'.format(flag, sampler, ', '.join(readers))


def ignored_flag_notices(opt, sampler_key, sampler_name=None):
    """Notices for the sampler flags set to a non-default value that the sampler `sampler_key` ignores;
    `sampler_name` is the --data_sampler value the notices quote (default: the key)."""
    sampler_name = sampler_key if sampler_name is None else sampler_name
    defaults = vars(parameters.read_arguments([]))
    notices = []
    for flag, readers in FLAG_READERS.items():
        if not hasattr(opt, flag) or getattr(opt, flag) == defaults[flag]:
            continue
        if sampler_key not in readers:
            notices.append(notice(flag, readers, sampler_name))
        elif flag in NEEDS_FLAG and not getattr(opt, NEEDS_FLAG[flag], False):
            notices.append('Notice: --{} is ignored without --{}.'.format(flag, NEEDS_FLAG[flag]))
    return notices
