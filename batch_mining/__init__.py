"""Batch miners: `select(name, opt, loss)` builds the miner a tuple-based loss calls once per forward as
`miner(batch, labels, ref_embeddings=None, ref_labels=None)` (pytorch-metric-learning's interface; reference rows,
e.g. a cross-batch memory, widen the candidates to batch ∪ reference, see `batch_mining/common.py`);
`ignored_flag_notices(opt)` lists the start-up notices for miner flags it does not read.

Triplet-form miners return an int64 (T, 3) tensor of (anchor, positive, negative) positions in batch ∪ reference
(the batch's rows first; anchors are batch rows) on the batch's device (T may be 0); `npair` and `lifted` return the set form, a 3-tuple of
lists (see their modules). Sampling is vectorised over the batch with torch's global generator.
"""
from batch_mining import (distance, intra_random, lifted, npair, parametric, random, random_distance,
                          rho_distance, semihard, softhard)
from batch_mining.common import MiningError
from batch_mining.ignored_flags import ignored_flag_notices
from batch_mining.semihard import check_semihard

__all__ = ['BATCHMINING_METHODS', 'MiningError', 'check_semihard', 'ignored_flag_notices', 'select']

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


def select(batchminername, opt, loss=None):
    """The miner registered under `batchminername`, built from the option namespace `opt`; `loss` is the loss key
    it serves (default `opt.loss`; only semihard reads it, for its margin). Every miner's `key` attribute is its
    registry key, which can differ from the `name` the losses check (random_distance is named 'distance', intra_random
    'random', as in the reference)."""
    if batchminername not in BATCHMINING_METHODS:
        raise NotImplementedError('Batchmining {} not available!'.format(batchminername))
    module = BATCHMINING_METHODS[batchminername]
    return module.BatchMiner(opt, loss=loss) if module is semihard else module.BatchMiner(opt)
