"""One start-up notice per miner flag the user changed that the chosen `--batch_mining` does not read.

The upper cutoffs are read by no miner: the reference computes them but deliberately never applies them (cutting
far negatives made results slightly worse and can leave an anchor without negatives), and applying the default
1.4 would change every distance-miner run, so they stay accepted for compatibility and ignored.
"""
import parameters

# flag -> the registry keys of the miners that read it (an empty tuple: accepted, never read)
FLAG_READERS = {
    'miner_distance_lower_cutoff': ('distance', 'random_distance'),
    'miner_distance_upper_cutoff': (),
    'miner_rho_distance_lower_cutoff': ('rho_distance',),
    'miner_rho_distance_upper_cutoff': (),
    'miner_rho_distance_cp': ('rho_distance',),
    'miner_parametric_mode': ('parametric',),
    'miner_parametric_n_support': ('parametric',),
    'miner_parametric_support_lim': ('parametric',),
}


def notice(flag, readers, miner):
    """The one-line notice for `--flag`, which `--batch_mining miner` ignores."""
    if not readers:
        return 'Notice: --{} is accepted for compatibility and ignored by --batch_mining {}.'.format(flag, miner)
    return 'Notice: --{} is ignored by --batch_mining {} (only {} read it).'.format(flag, miner, ', '.join(readers))


def ignored_flag_notices(opt, miner=None):
    """Notices for the miner flags set to a non-default value that `miner` (default `opt.batch_mining`) ignores."""
    miner = opt.batch_mining if miner is None else miner
    defaults = vars(parameters.read_arguments([]))
    return [notice(flag, readers, miner) for flag, readers in FLAG_READERS.items()
            if hasattr(opt, flag) and getattr(opt, flag) != defaults[flag] and miner not in readers]
