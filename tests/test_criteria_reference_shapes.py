"""The reference-shaped per-anchor forms of tests/criteria_reference.py, which bench/loss_step.py times the
losses against, compute the same loss as the vectorised criteria on the same miner output (value and
gradient), so the benchmark compares like with like."""
import pytest
import torch

import criteria
from criteria_fixtures import LABELS, StubMiner, make_opt, random_batch, random_triplets
from criteria_reference import SHAPED_LOSSES, lifted_miner_output, npair_miner_output

TRIPLETS = random_triplets(LABELS, 12, seed=5, degenerate=0)
OUTPUTS = {'npair': npair_miner_output(LABELS, seed=1), 'angular': npair_miner_output(LABELS, seed=1),
           'lifted': lifted_miner_output(LABELS)}
MINER_NAME = {'npair': 'npair', 'angular': 'npair', 'lifted': 'lifted'}
FOURTH = [3, 0, 7, 7, 11, 2, 5, 1, 0, 9, 4, 6]


@pytest.mark.parametrize('loss', criteria.BASE_LOSS_NAMES)
def test_reference_shaped_form_equals_the_vectorised_loss(loss):
    x, labels = random_batch(21)
    # multisimilarity and histogram need every row to have a positive pair in the reference's shape
    if loss in ('multisimilarity', 'histogram', 'ap_loss'):
        x, labels = random_batch(21, labels=[c for c in range(4) for _ in range(3)])
    opt = make_opt()
    output = OUTPUTS.get(loss, TRIPLETS)
    criterion = criteria.select(loss, opt, batchminer=StubMiner(MINER_NAME.get(loss, 'semihard'), output))
    criterion.double()
    if loss == 'quadruplet':
        criterion.draw_fourth = lambda negatives: torch.as_tensor(FOURTH)
    state = dict(criterion.named_parameters())
    state.update(reg_lambda=getattr(criterion, 'reg_lambda', None), fourth=FOURTH)
    tensors = [x] + list(state[key] for key in dict(criterion.named_parameters()))
    fast = criterion(batch=x, labels=labels)
    slow = SHAPED_LOSSES[loss](x, labels, output, opt, state)
    torch.testing.assert_close(fast, slow.to(fast.dtype), rtol=1e-10, atol=1e-12)
    for fast_grad, slow_grad in zip(torch.autograd.grad(fast, tensors), torch.autograd.grad(slow, tensors)):
        torch.testing.assert_close(fast_grad, slow_grad, rtol=1e-9, atol=1e-12)
