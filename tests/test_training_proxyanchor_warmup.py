"""Proxy-Anchor's warm-up: during the first --loss_proxyanchor_warmup_epochs epochs only the embedding
layer (and the loss's proxies, which live outside the network) train; afterwards everything does."""
import pytest
import torch

import criteria
from criteria_fixtures import make_opt
from training import embedding_warmup


class Network(torch.nn.Module):
    """The backbones' layout: `model.last_linear` is the embedding layer."""

    def __init__(self):
        super().__init__()
        self.model = torch.nn.Module()
        self.model.body = torch.nn.Linear(6, 5)
        self.model.frozen = torch.nn.Linear(5, 5)
        self.model.frozen.requires_grad_(False)        # e.g. a backbone's own frozen layers
        self.model.last_linear = torch.nn.Linear(5, 8)

    def forward(self, x):
        return self.model.last_linear(torch.relu(self.model.frozen(self.model.body(x))))


def one_step(network, objective, optimizer):
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    inputs = torch.randn(6, 6, generator=torch.Generator().manual_seed(0))
    loss, _ = objective(network(inputs), labels)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def test_only_the_embedding_layer_and_the_proxies_train_during_the_warm_up():
    torch.manual_seed(0)
    network = Network()
    opt = make_opt('--loss', 'proxyanchor', '--loss_proxyanchor_warmup_epochs', '2', n_classes=3)
    objective, groups = criteria.build_objective('proxyanchor', opt, 3)
    optimizer = torch.optim.AdamW([{'params': list(network.parameters()), 'lr': 0.01}] + groups,
                                  weight_decay=1e-4)
    warmup = embedding_warmup.for_run(objective, network)
    for epoch in range(3):
        warmup.apply(epoch)
        before = {name: p.detach().clone() for name, p in network.named_parameters()}
        proxies = objective.ranking.proxies.detach().clone()
        one_step(network, objective, optimizer)
        changed = {name for name, p in network.named_parameters() if not torch.equal(p, before[name])}
        body = {'model.body.weight', 'model.body.bias'}
        head = {'model.last_linear.weight', 'model.last_linear.bias'}
        assert changed == (head if epoch < 2 else head | body), epoch
        assert not torch.equal(objective.ranking.proxies, proxies)
        assert not network.model.frozen.weight.requires_grad   # never released: it was frozen to begin with


def built(loss, *argv):
    return criteria.build_objective(loss, make_opt(*argv, n_classes=3), 3)[0]


def test_the_loss_declares_its_warm_up_and_no_other_loss_has_one():
    network = Network()
    assert built('proxynca').warmup_epochs == 0 and built('multisimilarity_lsd').warmup_epochs == 0
    assert embedding_warmup.for_run(built('proxynca'), network) is None
    assert embedding_warmup.for_run(built('proxyanchor', '--loss_proxyanchor_warmup_epochs', '0'), network) is None
    assert embedding_warmup.for_run(built('proxyanchor_lsd'), network).epochs == 1


def test_a_network_without_an_embedding_layer_is_a_one_line_error():
    with pytest.raises(ValueError, match=r'^--loss_proxyanchor_warmup_epochs 1: this backbone has no embedding '
                                         r'layer \(model.last_linear\) to warm up alone; use 0.$'):
        embedding_warmup.for_run(built('proxyanchor'), torch.nn.Linear(2, 2))


def test_the_trainer_names_no_loss():
    """The warm-up and the optimizer groups are the loss's declarations: no trainer module tests a loss name."""
    import pathlib
    root = pathlib.Path(__file__).resolve().parents[1] / 'training'
    for path in root.glob('*.py'):
        text = path.read_text()
        assert 'proxyanchor' not in text.replace('loss_proxyanchor', ''), path.name
        assert 'base_name(opt.loss) !=' not in text, path.name
