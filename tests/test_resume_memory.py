"""A run with a non-empty cross-batch memory, saved to its resume state after some steps and restored by
the trainer's own save/load/restore, continues exactly as the uninterrupted run (float64, in process)."""
import types

import pytest
import torch

import criteria
import parameters
from training.loop import TrainingRun
from runtime.precision import Precision
from training.resume_state import load_resume_state, save_resume_state

STEPS, SAVED_AFTER = 6, 3
LABELS = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])


class QuietLog:
    progress_saver, plot_titles = {}, {}

    def rewrite_all(self):
        pass


def new_run(folder):
    """What save_resume_state and TrainingRun.restore read of a run: a linear embedding and Adam over a
    multi-similarity objective with a 12-slot memory (it wraps around within the run)."""
    opt = parameters.read_arguments(['--loss', 'multisimilarity', '--xbm_size', '12', '--xbm_start', '1',
                                     '--embed_dim', '5'])
    torch.manual_seed(0)
    model = torch.nn.Linear(6, 5).double()
    objective, _ = criteria.build_objective('multisimilarity', opt, 4)
    return types.SimpleNamespace(
        model=model, objective=objective, optimizer=torch.optim.Adam(model.parameters(), lr=0.05),
        scheduler=None, precision=Precision('off', 'off', torch.device('cpu')), teacher_snapshot=None,
        sampler=object(), LOG=QuietLog(), context=types.SimpleNamespace(run_folder=str(folder)),
        start_time=0.0, first_epoch=0)


def train(run, steps):
    for step in steps:
        inputs = torch.randn(8, 6, generator=torch.Generator().manual_seed(100 + step), dtype=torch.float64)
        loss, _ = run.objective(torch.nn.functional.normalize(run.model(inputs), dim=1), LABELS)
        run.optimizer.zero_grad()
        loss.backward()
        run.optimizer.step()


def test_resumed_run_with_a_memory_equals_the_uninterrupted_run(tmp_path):
    straight = new_run(tmp_path / 'straight')
    train(straight, range(STEPS))

    first = new_run(tmp_path)
    train(first, range(SAVED_AFTER))
    assert len(first.objective.memory) == 12 and first.objective.memory.next_slot == 4   # non-empty, wrapped
    save_resume_state(first, epoch=0, elapsed_seconds=1.0)
    state = load_resume_state(str(tmp_path))
    resumed = new_run(tmp_path)
    TrainingRun.restore(resumed, state)
    memory, saved = resumed.objective.memory, first.objective.memory
    assert (memory.filled, memory.next_slot, memory.iteration) == (12, 4, SAVED_AFTER)
    assert torch.equal(memory.contents()[0], saved.contents()[0])
    train(resumed, range(SAVED_AFTER, STEPS))

    assert torch.equal(resumed.model.weight, straight.model.weight)
    assert torch.equal(resumed.objective.memory.contents()[0], straight.objective.memory.contents()[0])
    assert torch.equal(resumed.objective.memory.contents()[1], straight.objective.memory.contents()[1])


def test_the_memory_is_saved_inside_the_criterion_entry(tmp_path):
    run = new_run(tmp_path)
    train(run, range(2))
    save_resume_state(run, epoch=0, elapsed_seconds=1.0)
    state = load_resume_state(str(tmp_path))
    assert 'memory' not in state
    assert sorted(state['criterion']) == ['memory._extra_state', 'memory.embeddings', 'memory.labels']
    assert state['criterion']['memory._extra_state'] == {'size': 12, 'start': 1, 'filled': 8, 'next_slot': 8,
                                                         'iteration': 2}


def test_without_a_memory_the_criterion_entry_holds_none(tmp_path):
    run = new_run(tmp_path)
    run.objective.memory = None
    save_resume_state(run, epoch=0, elapsed_seconds=1.0)
    state = load_resume_state(str(tmp_path))
    assert 'memory' not in state and not any(key.startswith('memory.') for key in state['criterion'])


def legacy_resume_file(state, folder):
    """`state` as resume files were written while the memory was saved beside the criterion: the ranking
    loss's bare keys under 'criterion', the memory's counters and slots as a plain dict under 'memory'."""
    criterion = state['criterion']
    legacy = dict(state, criterion={key[len('ranking.'):]: value for key, value in criterion.items()
                                    if key.startswith('ranking.')})
    legacy['memory'] = dict(criterion['memory._extra_state'], embeddings=criterion['memory.embeddings'],
                            labels=criterion['memory.labels'])
    torch.save(legacy, str(folder / 'resume_state.pth.tar'))


def test_a_resume_file_with_the_memory_beside_the_criterion_continues_exactly(tmp_path):
    straight = new_run(tmp_path / 'straight')
    train(straight, range(STEPS))
    first = new_run(tmp_path)
    train(first, range(SAVED_AFTER))
    save_resume_state(first, epoch=0, elapsed_seconds=1.0)
    legacy_resume_file(load_resume_state(str(tmp_path)), tmp_path)
    assert 'memory' in torch.load(str(tmp_path / 'resume_state.pth.tar'), weights_only=False)
    resumed = new_run(tmp_path)
    TrainingRun.restore(resumed, load_resume_state(str(tmp_path)))
    assert (resumed.objective.memory.filled, resumed.objective.memory.iteration) == (12, SAVED_AFTER)
    train(resumed, range(SAVED_AFTER, STEPS))
    assert torch.equal(resumed.model.weight, straight.model.weight)
    assert torch.equal(resumed.objective.memory.contents()[0], straight.objective.memory.contents()[0])


def test_a_resume_state_without_a_memory_is_a_clear_error_for_a_run_with_one(tmp_path):
    run = new_run(tmp_path)
    with pytest.raises(criteria.CriterionError, match='the resume state holds no memory'):
        run.objective.load_state_dict({})
