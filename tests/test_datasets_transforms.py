"""Reference image pipelines per --augmentation and backbone."""
import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

import parameters
from datasets.basic_dataset_scaffold import BaseDataset
from datasets.errors import DatasetError
from datasets.image_transforms import digits_pipeline


def options(*argv):
    """These tests pin the reference pipeline (PIL, float items); the fast one is in test_data_pipeline.py."""
    return parameters.read_arguments(['--data_pipeline', 'reference'] + list(argv))


@pytest.fixture(scope='module')
def images(tmp_path_factory):
    """An RGB, a grayscale, a palette, an RGBA and a CMYK image of odd sizes."""
    folder = tmp_path_factory.mktemp('images')
    rng = np.random.RandomState(0)
    rgb = Image.fromarray(rng.randint(0, 256, (300, 260, 3)).astype(np.uint8))
    paths = {}
    for mode, image in (('RGB', rgb), ('L', rgb.convert('L')), ('P', rgb.convert('P')),
                        ('RGBA', rgb.convert('RGBA')), ('CMYK', rgb.convert('CMYK'))):
        paths[mode] = str(folder / 'image_{}.{}'.format(mode, 'jpg' if mode == 'CMYK' else 'png'))
        image.save(paths[mode])
    return paths


def dataset(images, opt, is_validation, mode='RGB'):
    return BaseDataset({0: [images[mode]]}, opt, is_validation=is_validation)


def step_types(pipeline):
    return [type(step).__name__ for step in pipeline.transforms]


@pytest.mark.parametrize('augmentation,steps', [
    ('base', ['RandomResizedCrop', 'RandomHorizontalFlip']),
    ('big', ['RandomResizedCrop', 'RandomHorizontalFlip']),
    ('adv', ['RandomResizedCrop', 'RandomGrayscale', 'ColorJitter', 'RandomHorizontalFlip']),
    ('red', ['Resize', 'RandomCrop', 'RandomHorizontalFlip'])])
def test_training_pipelines(images, augmentation, steps):
    data = dataset(images, options('--augmentation', augmentation), is_validation=False)
    assert step_types(data.normal_transform) == steps + ['ToTensor', 'Normalize']
    first = data.normal_transform.transforms[0]
    size = 256 if augmentation == 'big' else 224
    if augmentation == 'red':
        assert first.size == 256 and data.normal_transform.transforms[1].size == (224, 224)
    else:
        assert first.size == (size, size) and first.scale == (0.08, 1.0)
        assert first.ratio == pytest.approx((3 / 4, 4 / 3))
    assert data.normal_transform.transforms[-3].p == 0.5
    if augmentation == 'adv':
        grayscale, jitter = data.normal_transform.transforms[1:3]
        assert grayscale.p == 0.2
        assert (jitter.brightness, jitter.contrast, jitter.saturation) == ((0.8, 1.2),) * 3
        assert jitter.hue == (-0.2, 0.2)
    assert tuple(data[0][1].shape) == (3, size, size)
    assert data.crop_size == 224


def test_evaluation_pipeline_resizes_then_center_crops(images):
    data = dataset(images, options(), is_validation=True)
    assert step_types(data.normal_transform) == ['Resize', 'CenterCrop', 'ToTensor', 'Normalize']
    rgb = Image.open(images['RGB'])
    expected = transforms.functional.center_crop(transforms.functional.resize(rgb, 256), 224)
    expected = (transforms.functional.to_tensor(expected) - torch.tensor([0.485, 0.456, 0.406])[:, None, None]) \
        / torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    label, image, index = data[0]
    assert (label, index) == (0, 0)
    torch.testing.assert_close(image, expected)


def test_googlenet_crops_227_and_big_gives_256_in_both_modes(images):
    assert tuple(dataset(images, options('--arch', 'googlenet'), True)[0][1].shape) == (3, 227, 227)
    assert tuple(dataset(images, options('--arch', 'googlenet'), False)[0][1].shape) == (3, 227, 227)
    assert dataset(images, options('--arch', 'googlenet'), True).crop_size == 227
    for arch in ('googlenet', 'resnet50'):
        for is_validation in (True, False):
            big = dataset(images, options('--arch', arch, '--augmentation', 'big'), is_validation)
            assert tuple(big[0][1].shape) == (3, 256, 256)
            assert big.crop_size == (227 if arch == 'googlenet' else 224)  # crop_size keeps 224/227, as the reference


@pytest.mark.parametrize('mode', ['L', 'P', 'RGBA', 'CMYK'])
def test_every_image_mode_becomes_rgb(images, mode):
    image = dataset(images, options(), True, mode)[0][1]
    assert tuple(image.shape) == (3, 224, 224)
    if mode == 'L':
        assert torch.allclose(image[0] * 0.229 + 0.485, image[1] * 0.224 + 0.456, atol=1e-5)


def test_bninception_is_bgr_on_the_255_scale(images):
    rgb_data = dataset(images, options('--arch', 'resnet50'), True)
    data = dataset(images, options('--arch', 'bninception_frozen'), True)
    raw = rgb_data[0][1] * torch.tensor([0.229, 0.224, 0.225])[:, None, None] \
        + torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    expected = (raw - torch.tensor([0.502, 0.4588, 0.4078])[:, None, None]) / 0.0039
    torch.testing.assert_close(data[0][1], expected.flip(0), atol=1e-3, rtol=1e-5)
    assert data.f_norm.mean == [0.502, 0.4588, 0.4078] and data.f_norm.std == [0.0039] * 3
    assert data.crop_size == 224


def test_attributes_of_the_base_dataset(images):
    opt = options()
    data = BaseDataset({1: [images['RGB']], 0: [images['L'], images['P']]}, opt)
    assert data.pars is opt and data.is_init and not data.is_validation
    assert data.avail_classes == [0, 1] and data.n_files == 3
    assert data.image_list == [(images['L'], 0), (images['P'], 0), (images['RGB'], 1)]
    assert data.image_dict == {0: [[images['L'], 0], [images['P'], 1]], 1: [[images['RGB'], 2]]}
    assert list(data.image_dict) == [0, 1]


def test_digits_pipeline_has_no_flip_and_32_pixels(images):
    for is_validation in (True, False):
        crop_size, f_norm, pipeline = digits_pipeline(options('--arch', 'resnet18'), is_validation)
        assert crop_size == 32
        assert not any('Flip' in name for name in step_types(pipeline))
        assert tuple(pipeline(Image.open(images['L']).convert('RGB')).shape) == (3, 32, 32)
    assert step_types(digits_pipeline(options(), True)[2]) == ['Resize', 'ToTensor', 'Normalize']


def test_unknown_augmentation_is_refused(images):
    with pytest.raises(DatasetError, match="--augmentation 'huge'.*base, big, adv, red"):
        dataset(images, options('--augmentation', 'huge'), True)
