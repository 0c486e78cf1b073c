"""torchrun, 2 ranks x chunks = one process: each rank embeds its slice of the global batch in chunks, the loss
runs once on the gathered global batch, each rank back-propagates its own rows chunk by chunk, and the backbone's
gradients are all-reduced once per step (float64, the trainer's epoch function; tests/chunked_distributed_worker.py)."""
import os
import subprocess
import sys

import pytest
import torch

import chunked_distributed_worker as worker
from runtime import distributed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLOAT64_RTOL = 1e-10


@pytest.fixture(scope='module')
def ranks(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp('chunked_distributed')
    environment = dict(os.environ, OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1')
    environment.pop('DML_TRACEBACK', None)
    result = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2',
                             os.path.join(ROOT, 'tests', 'chunked_distributed_worker.py'), str(out_dir)],
                            cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return [torch.load(out_dir / 'rank{}.pt'.format(rank)) for rank in range(2)]


@pytest.mark.parametrize('loss', list(worker.CASES))
def test_two_ranks_with_chunks_give_the_single_process_unchunked_gradient(ranks, loss):
    reference = worker.steps(loss, distributed.World(), 0)
    for rank, results in enumerate(ranks):
        run = results[loss]
        assert run['reductions'] == worker.N_STEPS, 'one gradient all-reduce per step, not per chunk'
        assert run['grads'].keys() == reference['grads'].keys()
        for name, grad in reference['grads'].items():
            scale, difference = float(grad.norm()), float((run['grads'][name] - grad).norm())
            error = difference / scale if scale else difference   # some blocks' weights get no gradient
            assert error <= FLOAT64_RTOL, '{} {} rank {}: {:.2e}'.format(loss, name, rank, error)
        for key, value in reference['means'].items():
            assert run['means'][key] == pytest.approx(value, rel=1e-12), key
        if reference['memory'] is not None:
            assert torch.allclose(run['memory'], reference['memory'], rtol=0, atol=1e-13)
    assert any(name.startswith('criterion.') for name in ranks[0]['margin_lsd']['grads'])
