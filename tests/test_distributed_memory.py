"""With a cross-batch memory, torchrun's first steps equal one process (float64, 2 CPU ranks, one launch):
every rank's memory holds the gathered global batches, identical to the single process's memory. The same
launch checks Proxy-Anchor's proxies, which every rank updates with the full gradient."""
import os
import subprocess
import sys

import pytest
import torch

import memory_distributed_worker as worker
from runtime import distributed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(ROOT, 'tests', 'memory_distributed_worker.py')


def torchrun(script, *arguments, timeout=240):
    environment = dict(os.environ, OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1')
    command = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2',
               script] + [str(argument) for argument in arguments]
    return subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope='module')
def ranks(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp('distributed_memory')
    result = torchrun(WORKER, out_dir)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return [torch.load(out_dir / 'rank{}.pt'.format(rank)) for rank in range(2)]


@pytest.mark.parametrize('loss', list(worker.CASES))
def test_steps_with_a_memory_equal_the_single_process_run(ranks, loss):
    reference = worker.steps(loss, distributed.World())
    for rank, results in enumerate(ranks):
        run = results[loss]
        for key in ('losses', 'weight', 'bias'):
            torch.testing.assert_close(run[key], reference[key], rtol=1e-10, atol=1e-12, msg=key)
        for got, expected in zip(run['criterion'], reference['criterion']):   # proxies: full gradient everywhere
            torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
        if 'memory' in reference:
            assert reference['filled'] == worker.MEMORY     # 3 enqueued batches of 8 wrapped the 12 slots
            assert run['filled'] == reference['filled']
            assert torch.equal(run['memory_labels'], reference['memory_labels']), rank
            torch.testing.assert_close(run['memory'], reference['memory'], rtol=1e-10, atol=1e-12)
