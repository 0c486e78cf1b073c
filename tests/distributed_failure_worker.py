"""Launched by tests/test_distributed.py through torchrun: rank 1 fails in the middle of an epoch while rank 0
waits in a collective; the whole job must end quickly, with one clear line from the failing rank.

Usage: python -m torch.distributed.run --standalone --nproc_per_node 2 tests/distributed_failure_worker.py raise|sigkill
(only torch and runtime.distributed are imported, to keep the launch short)
"""
import os
import signal
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from runtime import distributed  # noqa: E402


def fail_mid_epoch(world, how):
    """A few synchronised steps, then rank 1 raises (or is SIGKILLed) and rank 0 blocks in an all_reduce."""
    for _ in range(3):
        torch.distributed.all_reduce(torch.ones(4))
    if world.rank == 1:
        if how == 'sigkill':
            os.kill(os.getpid(), signal.SIGKILL)
        raise RuntimeError('boom in the middle of epoch 0')
    torch.distributed.all_reduce(torch.ones(4))
    time.sleep(600)  # never reached while the peer is dead; a hang here would fail the test's time bound


if __name__ == '__main__':
    world = distributed.init_from_environment('cpu')  # the default, long collective timeout: not what ends it
    distributed.run_guarded(fail_mid_epoch, world, world, sys.argv[1])
    distributed.shutdown(world)
