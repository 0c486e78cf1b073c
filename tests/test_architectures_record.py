"""The backbone's record (`architectures.backbone_config`, a timm-like `pretrained_cfg`): read without building
the network, it equals the built network's `.pretrained_cfg`, and both data pipelines take their crop, resize,
interpolation, mean/std and channel order from it."""
import math

import pytest
import torch
from torchvision.transforms import InterpolationMode

import architectures
import datasets
import parameters
from architectures.record import KEYS
from datasets import fast_transforms, image_transforms

pytest.importorskip('timm')

ARCHS = [('resnet50_frozen_normalize', []), ('resnet18', []), ('googlenet_normalize', []),
         ('bninception_frozen', []), ('timm/test_vit_normalize', ['--input_size', '32']),
         ('timm/test_resnet', [])]


def options(arch, *extra):
    return parameters.read_arguments(['--arch', arch, '--not_pretrained', '--embed_dim', '8'] + list(extra))


@pytest.mark.parametrize('arch,extra', ARCHS)
def test_the_record_read_without_building_is_the_networks(arch, extra):
    opt = options(arch, *extra)
    config = architectures.backbone_config(arch, opt)
    assert set(config) == set(KEYS)
    assert architectures.select(arch, opt).pretrained_cfg == config


def test_reference_values_hand_written():
    """The reference's preprocessing, written out (image_transforms / fast_transforms before the record)."""
    imagenet = {'mean': (0.485, 0.456, 0.406), 'std': (0.229, 0.224, 0.225), 'channel_order': 'RGB',
                'pixel_scale': 1.0, 'interpolation': 'bilinear', 'sized_by_config': False,
                'accepts_recipe_flags': False, 'fixed_input_size': False}
    resnet = architectures.backbone_config('resnet50_frozen_normalize')
    assert resnet == dict(imagenet, input_size=(3, 224, 224), crop_pct=0.875, output='normalized',
                          npair_shrink_batch=False)
    assert architectures.backbone_config('resnet18')['output'] == 'raw'
    googlenet = architectures.backbone_config('googlenet')
    assert googlenet['input_size'] == (3, 227, 227) and math.floor(227 / googlenet['crop_pct']) == 256
    bninception = architectures.backbone_config('bninception_frozen_normalize')
    assert bninception == dict(imagenet, mean=(0.502, 0.4588, 0.4078), std=(0.0039,) * 3, channel_order='BGR',
                               pixel_scale=255.0, input_size=(3, 224, 224), crop_pct=0.875, output='normalized',
                               npair_shrink_batch=True)


def test_timm_record_is_timms_pretrained_config_with_input_size_applied():
    import timm
    timm_config = timm.models.get_pretrained_cfg('vit_small_patch16_224.dino').to_dict()
    config = architectures.backbone_config('timm/vit_small_patch16_224.dino_normalize')
    assert config['mean'] == tuple(timm_config['mean']) and config['std'] == tuple(timm_config['std'])
    assert config['input_size'] == tuple(timm_config['input_size'])
    assert (config['crop_pct'], config['interpolation']) == (timm_config['crop_pct'], timm_config['interpolation'])
    assert config['fixed_input_size'] and config['sized_by_config'] and config['output'] == 'normalized'
    resized = architectures.backbone_config('timm/vit_small_patch16_224.dino', options('timm/vit_small_patch16_224.dino',
                                                                                       '--input_size', '32'))
    assert resized['input_size'] == (3, 32, 32) and resized['output'] == 'raw'


@pytest.mark.parametrize('arch,extra', ARCHS + [('timm/vit_base_patch16_clip_224.openai', [])])
@pytest.mark.parametrize('augmentation', ['base', 'red'])
def test_both_pipelines_crop_resize_and_normalise_as_the_record_says(arch, extra, augmentation):
    opt = options(arch, '--augmentation', augmentation, *extra)
    config = architectures.backbone_config(arch, opt)
    crop, resize = config['input_size'][-1], math.floor(config['input_size'][-1] / config['crop_pct'])
    interpolation = InterpolationMode(config['interpolation'])
    crop_size, f_norm, pipeline = image_transforms.benchmark_pipeline(opt, is_validation=True)
    assert crop_size == crop and pipeline.transforms[1].size == (crop, crop)
    assert (pipeline.transforms[0].size, pipeline.transforms[0].interpolation) == (resize, interpolation)
    assert tuple(f_norm.mean) == config['mean'] and tuple(f_norm.std) == config['std']
    reversed_channels = isinstance(pipeline.transforms[-1], image_transforms.ReverseChannels)
    assert reversed_channels == (config['channel_order'] == 'BGR')
    fast = fast_transforms.fast_benchmark_pipeline(opt, is_validation=True).steps[0]
    assert (fast.size, fast.resize, fast.interpolation) == (crop, resize, interpolation)
    normaliser = datasets.device_normaliser(opt)
    assert tuple(normaliser.mean) == config['mean'] and tuple(normaliser.std) == config['std']
    assert normaliser.reverse_channels == (config['channel_order'] == 'BGR')
    images = torch.randint(0, 256, (1, 3, 4, 4), dtype=torch.uint8)
    expected = (images / 255 - torch.tensor(config['mean'])[:, None, None]) / torch.tensor(config['std'])[:, None, None]
    expected = expected.flip(1) if config['channel_order'] == 'BGR' else expected
    assert torch.allclose(normaliser(images), expected, atol=1e-4)
