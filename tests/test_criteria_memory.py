"""The cross-batch memory: FIFO order and wrap-around, its warm-up (--xbm_start), the pair losses against
batch ∪ memory checked with per-anchor loops of their formulas (float64, values and gradients), the
distillation term on the batch alone, `--xbm_size 0` bit-identical to no memory, and the start-up error
for a loss that cannot use a memory."""
import pytest
import torch

import batch_mining
import criteria
from criteria.cross_batch_memory import CrossBatchMemory
from criteria_fixtures import make_opt, random_batch, value_and_grads
from criteria_reference import slow_contrastive, slow_margin, slow_snr, slow_triplet
from criteria_reference_modern import slow_multisimilarity_memory
from training import setup

BATCH_LABELS = [0, 0, 1, 1, 2, 2, 3, 3]
MEMORY_LABELS = [0, 1, 2, 3, 4, 0, 1, 2, 4, 4]


def memory_batch(seed, labels=MEMORY_LABELS):
    embeddings, labels = random_batch(seed, labels=labels)
    return embeddings.detach(), labels


def assert_agree(fast, slow, tensors, rtol=1e-10):
    fast_value, fast_grads = value_and_grads(fast, *tensors)
    slow_value, slow_grads = value_and_grads(slow, *tensors)
    for a, b in zip([fast_value] + fast_grads, [slow_value] + slow_grads):
        torch.testing.assert_close(a, b.to(a.dtype), rtol=rtol, atol=1e-12)


# ----- the FIFO -------------------------------------------------------------------------------------------

def test_memory_is_a_fifo_that_wraps_around():
    memory = CrossBatchMemory(size=5)
    rows = torch.arange(12, dtype=torch.float64)[:, None].repeat(1, 2)   # row k holds the value k
    for start in (0, 3, 6):                                              # batches of 3: 0-2, 3-5, 6-8
        memory.enqueue(rows[start:start + 3], torch.arange(start, start + 3))
    embeddings, labels = memory.contents()
    # slots 0..4 after writing 0,1,2 | 3,4 then wrapping 5 → slot 0 | 6,7,8 → slots 1,2,3
    assert labels.tolist() == [5, 6, 7, 8, 4]
    assert embeddings[:, 0].tolist() == [5., 6., 7., 8., 4.]
    assert len(memory) == 5 and memory.next_slot == 4


def test_a_partly_filled_memory_holds_only_what_was_written():
    memory = CrossBatchMemory(size=8)
    memory.enqueue(torch.ones(3, 2), torch.tensor([7, 8, 9]))
    assert len(memory) == 3 and memory.contents()[1].tolist() == [7, 8, 9]


def test_a_batch_larger_than_the_memory_keeps_its_last_rows():
    memory = CrossBatchMemory(size=4)
    memory.enqueue(torch.arange(6.)[:, None], torch.arange(6))
    assert memory.contents()[1].tolist() == [2, 3, 4, 5]
    assert memory.next_slot == 0


def test_memory_entries_are_detached_copies():
    memory = CrossBatchMemory(size=4)
    x = torch.randn(2, 3, requires_grad=True)
    memory.enqueue(x, torch.tensor([0, 1]))
    stored = memory.contents()[0]
    assert not stored.requires_grad
    with torch.no_grad():
        x.add_(1)
    assert not torch.equal(stored, x.detach())


def test_before_xbm_start_the_memory_stays_empty_and_the_loss_is_the_plain_one():
    criterion = criteria.select('multisimilarity', make_opt())
    memory = CrossBatchMemory(size=20, start=2)
    batches = [random_batch(seed, labels=BATCH_LABELS) for seed in range(4)]
    for k, (x, labels) in enumerate(batches):
        value = memory.loss(criterion, x, labels)
        if k <= 2:   # iterations 0, 1 skip the memory; at 2 it is used but still empty
            assert torch.equal(value, criterion(x, labels))
        else:
            assert not torch.equal(value, criterion(x, labels))
        assert len(memory) == 8 * max(0, k - 1)
    assert memory.iteration == 4


def test_the_current_batch_is_enqueued_after_its_own_loss():
    """So no sample is ever paired with itself: the reference set holds the batch once, at its rows."""
    seen = []

    def recording(batch, labels, memory=None):
        seen.append(None if memory is None else memory[1].tolist())
        return batch.sum()
    memory = CrossBatchMemory(size=20)
    for seed in range(2):
        x, labels = random_batch(seed, labels=[seed] * 3)
        memory.loss(recording, x, labels)
    assert seen == [None, [0, 0, 0]]


# ----- the losses against batch ∪ memory ------------------------------------------------------------------

def test_multisimilarity_with_memory_matches_the_formula():
    x, labels = random_batch(0, labels=BATCH_LABELS)
    memory, memory_labels = memory_batch(1)
    criterion = criteria.select('multisimilarity', make_opt('--loss_multisimilarity_margin', '0.4'))
    assert_agree(lambda b: criterion(b, labels, memory=(memory, memory_labels)),
                 lambda b: slow_multisimilarity_memory(b, labels, memory, memory_labels, eps=0.4), [x])


def test_multisimilarity_memory_rows_matter():
    x, labels = random_batch(0, labels=BATCH_LABELS)
    memory, memory_labels = memory_batch(1)
    criterion = criteria.select('multisimilarity', make_opt('--loss_multisimilarity_margin', '0.4'))
    assert not torch.equal(criterion(x, labels, memory=(memory, memory_labels)), criterion(x, labels))


SLOW_TRIPLET_FORM = {
    'triplet': lambda x, labels, triplets, criterion: slow_triplet(x, triplets),
    'margin': lambda x, labels, triplets, criterion: slow_margin(x, criterion.beta, labels, triplets),
    'contrastive': lambda x, labels, triplets, criterion: slow_contrastive(x, triplets),
    'snr': lambda x, labels, triplets, criterion: slow_snr(x, triplets, reg_lambda=criterion.reg_lambda),
}


class Recording:
    """A miner that records what it returns; everything else is the wrapped miner's."""

    def __init__(self, miner):
        self.miner, self.outputs = miner, []

    def __getattr__(self, name):
        return getattr(self.miner, name)

    def __call__(self, *args, **kwargs):
        self.outputs.append(torch.as_tensor(self.miner(*args, **kwargs)).reshape(-1, 3))
        return self.outputs[-1]


@pytest.mark.parametrize('loss', list(SLOW_TRIPLET_FORM))
@pytest.mark.parametrize('miner', ['distance', 'random', 'softhard'])
def test_triplet_form_losses_mine_batch_anchors_against_batch_and_memory(loss, miner):
    x, labels = random_batch(2, labels=BATCH_LABELS)
    memory, memory_labels = memory_batch(3)
    opt = make_opt('--embed_dim', '8', '--loss', loss, n_classes=5)
    recording = Recording(batch_mining.select(miner, opt))
    criterion = criteria.select(loss, opt, batchminer=recording).double()
    joined_labels = torch.cat([labels, memory_labels]).tolist()

    torch.manual_seed(11)
    criterion(x, labels, memory=(memory, memory_labels))
    triplets = [tuple(t) for t in recording.outputs[-1].tolist() if t[0] < len(x)]
    assert triplets and all(a < len(x) and a != p and a != n for a, p, n in triplets)
    assert all(joined_labels[a] == joined_labels[p] != joined_labels[n] for a, p, n in triplets)
    assert any(p >= len(x) or n >= len(x) for _, p, n in triplets)   # the memory takes part
    if miner == 'distance':   # one triplet per batch row, mined against its distances to batch ∪ memory
        assert sorted(a for a, _, _ in triplets) == list(range(len(x)))

    def fast(b, *parameters):
        torch.manual_seed(11)   # the same draws, hence the triplets above
        return criterion(b, labels, memory=(memory, memory_labels))

    def slow(b, *parameters):
        return SLOW_TRIPLET_FORM[loss](torch.cat([b, memory]), torch.tensor(joined_labels), triplets, criterion)
    assert_agree(fast, slow, [x] + list(criterion.parameters()))


def test_lsd_with_memory_distils_on_the_batch_alone():
    opt = make_opt('--kd_alpha', '50', '--xbm_size', '30')
    objective, _ = criteria.build_objective('multisimilarity_lsd', opt, 5)
    plain, _ = criteria.build_objective('multisimilarity_lsd', make_opt('--kd_alpha', '50'), 5)
    for seed in range(3):
        x, labels = random_batch(seed, labels=BATCH_LABELS)
        teacher = random_batch(seed + 10, labels=BATCH_LABELS)[0].detach()
        _, parts = objective(x, labels, teacher_embeddings=teacher, epoch=1)
        _, plain_parts = plain(x, labels, teacher_embeddings=teacher, epoch=1)
        assert torch.equal(parts['loss_kd'], plain_parts['loss_kd'])
        assert torch.equal(parts['loss_rank'], plain_parts['loss_rank']) == (seed == 0)


# ----- --xbm_size 0 and the start-up checks --------------------------------------------------------------

def train_steps(opt, steps=4):
    """A few Adam steps of a linear embedding under the objective of `opt`; the final weights."""
    torch.manual_seed(0)
    model = torch.nn.Linear(6, 8).double()
    objective, _ = criteria.build_objective('multisimilarity', opt, 5)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        inputs = torch.randn(8, 6, generator=generator, dtype=torch.float64)
        loss, _ = objective(torch.nn.functional.normalize(model(inputs), dim=1), torch.tensor(BATCH_LABELS))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.weight.detach().clone(), objective


def test_xbm_size_0_is_bit_identical_to_no_memory():
    without_flag = make_opt()
    del without_flag.xbm_size, without_flag.xbm_start     # an options namespace written for the reference
    reference, _ = train_steps(without_flag)
    zero, objective = train_steps(make_opt('--xbm_size', '0'))
    assert objective.memory is None and torch.equal(zero, reference)
    late, objective = train_steps(make_opt('--xbm_size', '16', '--xbm_start', '10'))
    assert len(objective.memory) == 0 and torch.equal(late, reference)
    used, objective = train_steps(make_opt('--xbm_size', '16'))
    assert len(objective.memory) == 16 and not torch.equal(used, reference)


@pytest.mark.parametrize('loss', ['proxynca', 'proxyanchor_lsd', 'npair', 'quadruplet'])
def test_a_loss_without_memory_support_is_a_one_line_startup_error(loss):
    opt = make_opt('--loss', loss, '--xbm_size', '64', '--batch_mining',
                   'npair' if loss == 'npair' else 'distance')
    with pytest.raises(setup.StartupError, match=r'^--xbm_size 64: loss {} cannot use a cross-batch memory '
                                                 r'\(losses that can: triplet, margin, contrastive, snr, '
                                                 r'multisimilarity\)$'.format(loss)):
        setup.validate_options(opt, lsd_trainer=True)


def test_a_negative_memory_size_is_a_startup_error():
    with pytest.raises(setup.StartupError, match='--xbm_size must not be negative'):
        setup.validate_options(make_opt('--loss', 'multisimilarity', '--xbm_size', '-1'), lsd_trainer=True)
