"""The losses consume the real miners' output forms (triplet tensors, npair and lifted sets): a recording
proxy keeps what the miner returned, and the loss must equal the same loss fed that output by a stub."""
import pytest
import torch

import batch_mining
import criteria
from criteria_fixtures import StubMiner, make_opt, random_batch


class Recording:
    def __init__(self, miner):
        self.miner, self.name, self.outputs = miner, miner.name, []

    def __call__(self, batch, labels):
        self.outputs.append(self.miner(batch, labels))
        return self.outputs[-1]


@pytest.mark.parametrize('loss, miner_name', [('triplet', 'distance'), ('margin', 'semihard'),
                                              ('contrastive', 'random'), ('snr', 'softhard'),
                                              ('quadruplet', 'distance'), ('npair', 'npair'),
                                              ('angular', 'npair'), ('lifted', 'lifted'),
                                              ('triplet_lsd', 'rho_distance')])
def test_real_miner_output_is_consumed(loss, miner_name):
    torch.manual_seed(0)
    opt = make_opt('--loss', loss, loss_source=criteria.base_name(loss))
    x, labels = random_batch(0, labels=[0, 0, 1, 1, 1, 2, 2, 3, 3, 3, 4, 4])
    recording = Recording(batch_mining.select(miner_name, opt))
    criterion = criteria.select(loss, opt, batchminer=recording)
    replay = criteria.select(criteria.base_name(loss), opt, batchminer=StubMiner(recording.name, None))
    replay.load_state_dict(criterion.state_dict())
    if loss == 'quadruplet':
        for module in (criterion, replay):
            module.draw_fourth = lambda negatives: torch.arange(len(negatives)).flip(0)
    if criteria.is_lsd(loss):
        value = criterion(x, labels, teacher_embeddings=None, epoch=0)[0]
    else:
        value = criterion(batch=x, labels=labels)
    assert len(recording.outputs) == 1
    replay.batchminer.output = recording.outputs[0]
    torch.testing.assert_close(value, replay(batch=x, labels=labels), rtol=0, atol=0)
    value.backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
