"""Batch miners (spec mining_sampling.md part A): `select(name, opt)` builds the miner a
tuple-based loss calls once per forward as `miner(batch, labels)`.

Triplet-form miners return an int64 (T, 3) tensor of (anchor, positive, negative) batch positions
on the batch's device (T may be 0); `npair` and `lifted` return the spec's set form, a 3-tuple of
lists (see their modules). Sampling is vectorised over the batch with torch's global generator.
"""
from batch_mining import (distance, intra_random, lifted, npair, parametric, random, random_distance,
                          rho_distance, semihard, softhard)
from batch_mining.common import MiningError

__all__ = ['BATCHMINING_METHODS', 'MiningError', 'select']

BATCHMINING_METHODS = {
    'random': random,
    'semihard': semihard,
    'softhard': softhard,
    'distance': distance,
    'rho_distance': rho_distance,
    'npair': npair,
    'parametric': parametric,
    'lifted': lifted,
    'random_distance': random_distance,
    'intra_random': intra_random,
}


def select(batchminername, opt):
    """The miner registered under `batchminername`, built from the option namespace `opt` (§0.6)."""
    if batchminername not in BATCHMINING_METHODS:
        raise NotImplementedError('Batchmining {} not available!'.format(batchminername))
    return BATCHMINING_METHODS[batchminername].BatchMiner(opt)
