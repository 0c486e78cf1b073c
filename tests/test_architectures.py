"""Backbones: outputs, state-dict keys, tokens, frozen BatchNorm, weight errors.
All built with --not_pretrained (no weights can be downloaded here)."""
import copy
import urllib.error

import pytest
import torch
from torch import nn

import architectures
import parameters
from architectures import PretrainedWeightsUnavailable, UnknownArchitectureError

EMBED_DIM = 16


def build(arch, *extra):
    opt = parameters.read_arguments(['--arch', arch, '--not_pretrained', '--embed_dim', str(EMBED_DIM)] + list(extra))
    return architectures.select(arch, opt)


@pytest.fixture(scope='module')
def resnet50():
    return build('resnet50_frozen_normalize')


@pytest.fixture(scope='module')
def bninception():
    return build('bninception_frozen_double_he')


@pytest.fixture(scope='module')
def googlenet():
    return build('googlenet_frozen_normalize')


def batchnorms(network):
    return [module for module in network.modules() if type(module) is nn.BatchNorm2d]


def test_resnet50_outputs_and_keys(resnet50):
    resnet50.eval()
    with torch.no_grad():
        embedding, (pooled, feature_map) = resnet50(torch.randn(1, 3, 224, 224), unused_keyword=1)
    assert embedding.shape == (1, EMBED_DIM) and pooled.shape == (1, 2048) and feature_map.shape == (1, 2048, 7, 7)
    torch.testing.assert_close(pooled, feature_map.mean(dim=(2, 3)))
    expected = nn.functional.normalize(resnet50.model.last_linear(pooled), dim=-1)
    torch.testing.assert_close(embedding, expected)
    torch.testing.assert_close(embedding.norm(dim=1), torch.ones(1))
    keys = resnet50.state_dict().keys()
    assert {'model.conv1.weight', 'model.last_linear.weight', 'model.last_linear.bias',
            'model.layer4.2.bn3.running_var', 'layer_blocks.0.0.conv1.weight',
            'layer_blocks.3.2.bn3.weight'} <= set(keys)
    assert not any(key.startswith('model.fc') for key in keys) and resnet50.model.fc is None
    assert resnet50.layer_blocks[0] is resnet50.model.layer1 and resnet50.layer_blocks[3] is resnet50.model.layer4
    assert resnet50.model.last_linear.in_features == 2048 and resnet50.name == 'resnet50_frozen_normalize'
    n_unique = len({id(p) for p in resnet50.parameters()})
    assert n_unique == len(list(resnet50.parameters()))


def test_frozen_batchnorm_keeps_running_statistics(resnet50):
    resnet50.train()
    bns = batchnorms(resnet50)
    assert len(bns) == 53 and not any(bn.training for bn in bns)
    assert all(bn.weight.requires_grad and bn.bias.requires_grad for bn in bns)
    before = [bn.running_mean.clone() for bn in bns]
    resnet50(torch.randn(2, 3, 64, 64))
    assert all(torch.equal(a, bn.running_mean) for a, bn in zip(before, bns))
    resnet50.eval()
    resnet50.train()
    assert not any(bn.training for bn in bns)


def test_frozen_survives_deepcopy():
    copied = copy.deepcopy(build('resnet18_frozen'))
    copied.train()
    bns = batchnorms(copied)
    assert len(bns) == 20 and not any(bn.training for bn in bns)
    before = bns[0].running_mean.clone()
    copied(torch.randn(2, 3, 32, 32))
    assert torch.equal(before, bns[0].running_mean)


def test_unfrozen_resnet18_updates_statistics():
    network = build('resnet18')
    network.train()
    bns = batchnorms(network)
    assert all(bn.training for bn in bns)
    before = bns[0].running_mean.clone()
    embedding, (pooled, feature_map) = network(torch.randn(2, 3, 32, 32))
    assert not torch.equal(before, bns[0].running_mean)
    assert embedding.shape == (2, EMBED_DIM) and pooled.shape == (2, 512) and feature_map.shape == (2, 512, 1, 1)
    assert network.model.last_linear.in_features == 512
    assert not torch.allclose(embedding.norm(dim=1), torch.ones(2))  # no normalize token
    network.eval()
    assert not any(bn.training for bn in bns)


def test_bninception_outputs_tokens_and_frozen(bninception):
    bninception.train()
    bns = batchnorms(bninception)
    assert bns and not any(bn.training for bn in bns)
    assert all(bn.eps == 1e-5 for bn in bns)
    with torch.no_grad():
        embedding, (pooled, feature_map) = bninception(torch.randn(1, 3, 224, 224))
    assert embedding.shape == (1, EMBED_DIM) and pooled.shape == (1, 1024, 1, 1)
    assert feature_map.shape == (1, 1024, 7, 7)
    # double: average + max pooling; no normalize token -> raw linear output
    expected = feature_map.mean(dim=(2, 3), keepdim=True) + feature_map.amax(dim=(2, 3), keepdim=True)
    torch.testing.assert_close(pooled, expected)
    torch.testing.assert_close(embedding, bninception.model.last_linear(pooled.flatten(1)))
    # _he: Kaiming-normal, fan-out mode (std sqrt(2 / embed_dim)), zero bias
    weight = bninception.model.last_linear.weight
    assert weight.shape == (EMBED_DIM, 1024)
    assert abs(weight.std().item() / (2 / EMBED_DIM) ** 0.5 - 1) < 0.05
    assert torch.count_nonzero(bninception.model.last_linear.bias) == 0
    keys = set(bninception.state_dict())
    assert {'model.conv1_7x7_s2.weight', 'model.inception_5b_pool_proj_bn.running_mean',
            'model.last_linear.weight'} <= keys
    _, (detached, _) = bninception(torch.randn(1, 3, 64, 64), warmup=True)
    assert not detached.requires_grad


def test_bninception_plain_tokens():
    network = build('bninception_normalize')
    network.train()
    assert all(bn.training for bn in batchnorms(network)) and network.pool_aux is None
    embedding, (pooled, feature_map) = network(torch.randn(2, 3, 64, 64))
    torch.testing.assert_close(pooled, feature_map.mean(dim=(2, 3), keepdim=True))
    torch.testing.assert_close(embedding.norm(dim=1), torch.ones(2))
    assert network.model.last_linear.weight.abs().max() <= 1024 ** -0.5  # PyTorch default Linear init


def test_googlenet_returns_a_tensor_and_ignores_frozen(googlenet):
    model = googlenet.model
    assert model.fc is model.last_linear and model.last_linear.in_features == 1024
    assert model.transform_input and not model.aux_logits and model.aux1 is None and model.aux2 is None
    keys = set(googlenet.state_dict())
    assert {'model.fc.weight', 'model.last_linear.weight', 'model.last_linear.bias'} <= keys
    for train in (True, False):
        googlenet.train(train)
        assert all(bn.training == train for bn in batchnorms(googlenet))
        with torch.no_grad():
            embedding = googlenet(torch.randn(2, 3, 64, 64))
        assert isinstance(embedding, torch.Tensor) and embedding.shape == (2, EMBED_DIM)
        torch.testing.assert_close(embedding.norm(dim=1), torch.ones(2))


def test_selection_by_substring_and_unknown_names():
    assert architectures.backbone_of('frozen_bninception_normalize') == 'bninception'
    assert architectures.backbone_of('resnet50_frozen') == 'resnet50'
    assert architectures.backbone_of('resnet18') == 'resnet18'
    with pytest.raises(UnknownArchitectureError, match="--arch 'vgg16'.*resnet50, resnet18, googlenet, bninception"):
        build('vgg16')


def test_resnet_weights_are_imagenet1k_v1():
    from architectures.resnet import DEPTHS
    assert DEPTHS['resnet50'][1].url.endswith('/resnet50-0676ba61.pth')  # V1 (19c8e357 re-serialised), not V2
    assert DEPTHS['resnet18'][1].url.endswith('/resnet18-f37072fd.pth')


@pytest.mark.parametrize('arch,url', [('resnet18_frozen', 'resnet18-f37072fd.pth'),
                                      ('googlenet', 'googlenet-1378be20.pth'),
                                      ('bninception', 'bn_inception-52deb4733.pth')])
def test_unreachable_weights_suggest_not_pretrained(monkeypatch, tmp_path, arch, url):
    requested = []

    def offline(request, *args, **kwargs):
        requested.append(getattr(request, 'full_url', request))
        raise urllib.error.URLError('no network')

    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path))
    monkeypatch.setattr(torch.hub, 'urlopen', offline)
    opt = parameters.read_arguments(['--arch', arch])
    with pytest.raises(PretrainedWeightsUnavailable, match='--not_pretrained') as error:
        architectures.select(arch, opt)
    assert '\n' not in str(error.value) and arch in str(error.value)
    assert requested and requested[0].endswith(url)
