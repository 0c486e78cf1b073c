"""Data parallelism under torchrun keeps the single-process mathematics (CPU, gloo, two ranks).

One torchrun launch of tests/distributed_worker.py runs every check that needs collectives; the single-process
reference is computed here, in the test process, by the same functions under a disabled World.
"""
import os
import subprocess
import sys
import time

import pytest
import torch

import distributed_worker as worker
from runtime import distributed
from runtime.distributed_batchnorm import GlobalBatchNorm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(ROOT, 'tests', 'distributed_worker.py')
FAILURE_WORKER = os.path.join(ROOT, 'tests', 'distributed_failure_worker.py')
SINGLE = distributed.World()
# The gradient checks run in float64 (measured agreement: 3e-14 relative), so any mathematical difference shows.
FLOAT64_RTOL = 1e-10


def torchrun(script, *arguments, timeout=240):
    environment = dict(os.environ, OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1')
    environment.pop('DML_TRACEBACK', None)
    command = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2',
               script] + [str(argument) for argument in arguments]
    start = time.monotonic()
    result = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=timeout)
    return result, time.monotonic() - start


@pytest.fixture(scope='module')
def ranks(tmp_path_factory):
    """The results of both ranks of one `checks` launch."""
    out_dir = tmp_path_factory.mktemp('distributed')
    result, _ = torchrun(WORKER, 'checks', out_dir)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return [torch.load(out_dir / 'rank{}.pt'.format(rank)) for rank in range(2)]


def relative_error(actual, expected):
    """‖actual − expected‖ / ‖expected‖ (the difference itself when expected vanishes)."""
    difference = float((actual.double() - expected.double()).norm())
    scale = float(expected.double().norm())
    return difference / scale if scale else difference


def assert_relatively_close(actual, expected, what, rtol=FLOAT64_RTOL):
    assert actual.shape == expected.shape, what
    error = relative_error(actual, expected)
    assert error <= rtol, '{}: relative error {:.2e} > {:.0e}'.format(what, error, rtol)


def test_a_plain_python_run_gets_a_disabled_world(monkeypatch):
    for name in ('WORLD_SIZE', 'RANK', 'LOCAL_RANK'):
        monkeypatch.delenv(name, raising=False)
    world = distributed.init_from_environment('cpu')
    assert (world.enabled, world.rank, world.world_size, world.is_main) == (False, 0, 1, True)
    embeddings = torch.randn(4, 3)
    assert distributed.gather_with_grad(embeddings, world) is embeddings
    assert distributed.gather_plain(embeddings, world) is embeddings


def test_a_world_size_without_torchrun_variables_is_one_clear_error(monkeypatch):
    monkeypatch.setenv('WORLD_SIZE', '2')
    for name in ('RANK', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT'):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(distributed.DistributedError, match='WORLD_SIZE=2 but RANK, LOCAL_RANK, MASTER_ADDR, '
                                                           'MASTER_PORT not set: launch with torchrun'):
        distributed.init_from_environment('cpu')


# ----------------------------------------------------------------------------------------------- first step

@pytest.mark.parametrize('loss', list(worker.CASES))
def test_first_step_loss_and_every_gradient_equal_the_single_process_run(ranks, loss):
    reference = worker.first_step(loss, SINGLE)
    for rank, results in enumerate(ranks):
        run = results['first_step'][loss]
        assert torch.equal(run['indices'], torch.tensor(worker.GLOBAL_BATCH))  # gathered in rank order
        assert_relatively_close(run['loss'], reference['loss'], '{} loss on rank {}'.format(loss, rank))
        assert run['grads'].keys() == reference['grads'].keys()
        for name, grad in reference['grads'].items():
            assert_relatively_close(run['grads'][name], grad, '{} {} rank {}'.format(loss, name, rank))
    criterion_grads = [name for name in reference['grads'] if name.startswith('criterion.')]
    # margin's β and proxynca's proxies get gradients, and were compared above
    assert bool(criterion_grads) == (loss in ('margin_lsd', 'proxynca'))


def test_the_sync_checks_used_above_see_a_difference_between_ranks(ranks):
    assert all(results['drift_probes'] == {'tensors': True, 'random_states': True} for results in ranks)


def test_the_reference_gradients_are_not_those_of_one_slice():
    """The comparison above can fail: one rank's half batch gives a different loss and gradient."""
    full = worker.first_step('multisimilarity', SINGLE)
    original = worker.GLOBAL_BATCH
    try:
        worker.GLOBAL_BATCH = original[:8]
        half = worker.first_step('multisimilarity', SINGLE)
    finally:
        worker.GLOBAL_BATCH = original
    name = 'model.head.0.weight'
    assert not torch.allclose(half['grads'][name], full['grads'][name], rtol=1e-3)
    assert not torch.allclose(half['grads'][name] * 2, full['grads'][name], rtol=1e-3)


# ----------------------------------------------------------------------------------------------- BatchNorm

@pytest.mark.parametrize('kind', ['2d', '1d'])
def test_global_batchnorm_equals_batchnorm_on_the_global_batch(ranks, kind):
    reference = worker.batchnorm_step(kind, SINGLE)
    for rank, results in enumerate(ranks):
        for key, expected in reference.items():
            assert_relatively_close(results['batchnorm'][kind][key], expected.detach(),
                                    '{} {} rank {}'.format(kind, key, rank))


def test_global_batchnorm_is_plain_batchnorm_without_a_process_group():
    x = torch.randn(6, 3, 2, 2)
    plain, global_ = torch.nn.BatchNorm2d(3), GlobalBatchNorm(3)
    torch.testing.assert_close(global_(x), plain(x), rtol=0, atol=0)
    torch.testing.assert_close(global_.running_var, plain.running_var, rtol=0, atol=0)


def test_convert_batchnorm_replaces_training_batchnorm_and_keeps_frozen_and_parameters():
    world = distributed.World(rank=0, world_size=2, enabled=True)
    opt = worker.options('margin', [])
    for arch, frozen in (('resnet18_normalize', False), ('resnet18_frozen_normalize', True)):
        opt.arch = arch
        model = worker.architectures.select(arch, opt)
        before = list(model.parameters())
        bn1_weight = model.model.bn1.weight
        distributed.convert_batchnorm(model, world)
        kinds = {type(module) for module in model.modules()
                 if isinstance(module, torch.nn.modules.batchnorm._BatchNorm)}
        assert kinds == ({torch.nn.BatchNorm2d} if frozen else {GlobalBatchNorm})
        assert all(a is b for a, b in zip(before, model.parameters())) and len(before) == len(list(model.parameters()))
        assert model.model.bn1.weight is bn1_weight
        model.train()
        assert model.model.bn1.training is not frozen
    model = worker.architectures.select('resnet18_normalize', opt)
    assert distributed.convert_batchnorm(model, SINGLE) is model
    assert type(model.model.bn1) is torch.nn.BatchNorm2d


# ----------------------------------------------------------------------------------------------- sampling, shards

class EpochBatches:
    def __init__(self, batches):
        self.batches, self.epochs = batches, []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self):
        return len(self.batches)

    def set_epoch(self, epoch):
        self.epochs.append(epoch)


@pytest.mark.parametrize('world_size', [1, 2, 4])
def test_rank_slices_are_contiguous_and_rebuild_every_global_batch(world_size):
    batches = [[(i, 3) for i in range(8 * b, 8 * b + 8)] for b in range(3)] + [list(range(40, 48))]
    source = EpochBatches(batches)
    samplers = [distributed.RankSliceBatchSampler(source, distributed.World(rank, world_size, enabled=True))
                for rank in range(world_size)]
    per_rank = [list(sampler) for sampler in samplers]
    for b, batch in enumerate(batches):
        assert sum((per_rank[rank][b] for rank in range(world_size)), []) == batch
        assert all(len(per_rank[rank][b]) == 8 // world_size for rank in range(world_size))
    assert all(len(sampler) == 4 for sampler in samplers)
    samplers[0].set_epoch(5)
    assert source.epochs == [5]
    assert samplers[0].batches is batches  # other attributes are the wrapped sampler's


def test_rank_slice_refuses_a_batch_it_cannot_split():
    sampler = distributed.RankSliceBatchSampler([[1, 2, 3]], distributed.World(0, 2, enabled=True))
    with pytest.raises(distributed.DistributedError, match='3 samples cannot be split over the world size 2'):
        list(sampler)


def test_check_batch_size_names_the_flag():
    distributed.check_batch_size(40, distributed.World(0, 4, enabled=True))
    with pytest.raises(distributed.DistributedError, match=r'^--bs 40 is not divisible by the world size 3$'):
        distributed.check_batch_size(40, distributed.World(0, 3, enabled=True))


@pytest.mark.parametrize('n', [0, 1, 5, 7, 8, 100])
@pytest.mark.parametrize('world_size', [1, 2, 3, 8])
def test_shard_range_is_contiguous_disjoint_and_covers_without_padding(n, world_size):
    shards = [distributed.shard_range(n, distributed.World(rank, world_size)) for rank in range(world_size)]
    assert [i for shard in shards for i in shard] == list(range(n))
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_gather_rows_returns_the_dataset_order_on_every_rank(ranks):
    expected = torch.arange(21, dtype=torch.float32).reshape(7, 3) * 10
    assert [ranks[rank]['gathers']['shard'].tolist() for rank in range(2)] == [[0, 4], [4, 7]]
    for results in ranks:
        assert torch.equal(results['gathers']['rows'], expected)


def test_storage_built_shard_by_shard_equals_the_single_process_storage(ranks):
    reference = worker.storage_run(SINGLE)
    for results in ranks:  # identical bit for bit across ranks (checked in the worker), close to one process
        for key in ('storage', 'updated'):
            assert_relatively_close(results['storage'][key], reference[key], key, rtol=1e-6)
        assert torch.equal(results['storage']['batches'], reference['batches'])
    assert not torch.equal(reference['storage'], reference['updated'])


def test_main_rank_only_work_leaves_the_random_streams_where_they_were():
    import random
    import numpy as np
    torch.manual_seed(3), np.random.seed(3), random.seed(3)
    expected = torch.rand(2), np.random.rand(2), random.random()
    torch.manual_seed(3), np.random.seed(3), random.seed(3)
    with distributed.preserved_random_state():
        torch.rand(5), np.random.rand(5), random.random()
    after = torch.rand(2), np.random.rand(2), random.random()
    assert torch.equal(after[0], expected[0]) and np.array_equal(after[1], expected[1]) and after[2] == expected[2]


# ----------------------------------------------------------------------------------------------- failures

@pytest.mark.parametrize('how', ['raise', 'sigkill'])
def test_a_rank_failing_mid_epoch_ends_the_whole_job_quickly(how):
    result, seconds = torchrun(FAILURE_WORKER, how, timeout=120)
    assert result.returncode != 0
    assert seconds < 60
    if how == 'raise':
        assert 'error: rank 1 failed: boom in the middle of epoch 0' in result.stderr
