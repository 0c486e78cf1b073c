"""The `--data_pipeline fast` counterparts of the reference pipelines in `image_transforms`.

Same crops, sizes and distributions, but on uint8 tensors (a quarter of the float32 bytes through the
worker queues and to the device; normalisation happens on the device, `device_normalisation`), and every
random draw of sample `idx` in epoch `e` comes from a generator seeded by (seed, e, idx)
(`sample_randomness`), never from torch's global RNG. A pipeline is called as `pipeline(path, (seed,
epoch, idx))` and returns a uint8 3×S×S tensor.
"""
import math

import torch
from PIL import Image
from torchvision import transforms
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as F1
from torchvision.transforms.v2 import functional as F2

from datasets.decoding import decode_rgb, load_pil_rgb, pil_to_uint8
from architectures.record import eval_resize
from datasets.image_transforms import BIG_SIZE, DIGITS_SIZE, backbone_config, check_augmentation, digits_size
from datasets.sample_randomness import sample_generator

CROP_TRIES = 10  # torchvision's RandomResizedCrop tries 10 draws before its central fallback
EVAL_RESIZE = 256


def random_resized_crop_params(height, width, generator, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    """(top, left, h, w) with torchvision's `RandomResizedCrop.get_params` semantics: area fraction
    uniform in `scale`, aspect ratio log-uniform in `ratio`, 10 tries, then the central fallback crop.
    The 40 uniforms come from `generator` in one call (cheaper than 40 scalar draws)."""
    draws = torch.rand(CROP_TRIES, 4, generator=generator, dtype=torch.float64).tolist()
    area = height * width
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
    for u_scale, u_ratio, u_top, u_left in draws:
        target_area = area * (scale[0] + (scale[1] - scale[0]) * u_scale)
        aspect = math.exp(log_low + (log_high - log_low) * u_ratio)
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(u_top * (height - h + 1)), int(u_left * (width - w + 1)), h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def coin(generator, p=0.5):
    return torch.rand(1, generator=generator, dtype=torch.float64).item() < p


class RandomResizedCropFlip:
    """RandomResizedCrop(size) then RandomHorizontalFlip(0.5): crop and antialiased bilinear resize in one
    call on the uint8 tensor (torch's uint8 kernel follows PIL's filter to within one intensity level)."""

    def __init__(self, size, flip=True, interpolation=InterpolationMode.BILINEAR):
        self.size, self.flip, self.interpolation = size, flip, interpolation

    def __call__(self, image, generator):
        top, left, h, w = random_resized_crop_params(image.shape[-2], image.shape[-1], generator)
        image = F2.resized_crop(image, top, left, h, w, [self.size, self.size], interpolation=self.interpolation,
                                antialias=True)
        return image.flip(-1) if self.flip and coin(generator) else image


class ResizeRandomCropFlip:
    """Resize(256), RandomCrop(size), RandomHorizontalFlip(0.5) (the `red` augmentation)."""

    def __init__(self, size, resize=EVAL_RESIZE, interpolation=InterpolationMode.BILINEAR):
        self.size, self.resize, self.interpolation = size, resize, interpolation

    def __call__(self, image, generator):
        image = F2.resize(image, self.resize, interpolation=self.interpolation, antialias=True)
        height, width = image.shape[-2:]  # the shorter side is 256 >= size: no padding case
        u_top, u_left = torch.rand(2, generator=generator, dtype=torch.float64).tolist()
        top, left = int(u_top * (height - self.size + 1)), int(u_left * (width - self.size + 1))
        image = image[..., top:top + self.size, left:left + self.size]
        return image.flip(-1) if coin(generator) else image


class GrayscaleJitter:
    """RandomGrayscale(0.2) then ColorJitter(0.2, 0.2, 0.2, 0.2) (the `adv` augmentation), on the PIL image
    of the crop: PIL's colour operations are several times faster than torchvision's on tensors (its hue
    shift goes through float HSV). torchvision draws their parameters from torch's global RNG; a forked
    RNG seeded from the sample's generator keeps the draw per sample (measured about 0.25 ms per image)."""

    def __init__(self):
        self.steps = transforms.Compose([transforms.RandomGrayscale(p=0.2), transforms.ColorJitter(0.2, 0.2, 0.2, 0.2)])

    def __call__(self, image, generator):
        seed = int(torch.randint(0, 2 ** 62, (1,), generator=generator).item())
        picture = Image.fromarray(image.permute(1, 2, 0).contiguous().numpy())
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return pil_to_uint8(self.steps(picture))


class HorizontalFlip:
    """RandomHorizontalFlip(0.5)."""

    def __call__(self, image, generator):
        return image.flip(-1) if coin(generator) else image


class ResizeCenterCrop:
    """Resize(256) (shorter side) then CenterCrop(size), antialiased bilinear on the uint8 tensor."""

    def __init__(self, size, resize=EVAL_RESIZE, interpolation=InterpolationMode.BILINEAR):
        self.size, self.resize, self.interpolation = size, resize, interpolation

    def __call__(self, image, generator=None):
        image = F2.resize(image, self.resize, interpolation=self.interpolation, antialias=True)
        return F2.center_crop(image, [self.size, self.size])


class FastPipeline:
    """decode -> steps; `random` pipelines build the sample's generator from (seed, epoch, idx)."""

    def __init__(self, steps, random, decode=decode_rgb):
        self.steps, self.random, self.decode = steps, random, decode

    def __call__(self, path, seed_epoch_index):
        generator = sample_generator(*seed_epoch_index) if self.random else None
        image = self.decode(path)
        for step in self.steps:
            image = step(image, generator)
        return image.contiguous()

    def __repr__(self):
        return 'FastPipeline({})'.format(', '.join(type(step).__name__ for step in self.steps))


def fast_benchmark_pipeline(opt, is_validation):
    """CUB200 / CARS196 / SOP, sizes as `image_transforms.benchmark_pipeline` (the backbone's record gives the
    crop, evaluation resize and interpolation; `big`: S = 256 unless the backbone is sized by its config)."""
    check_augmentation(opt)
    config = backbone_config(opt)
    crop_size, resize, interpolation = (config['input_size'][-1], eval_resize(config),
                                        InterpolationMode(config['interpolation']))
    size = BIG_SIZE if opt.augmentation == 'big' and not config['sized_by_config'] else crop_size
    if is_validation:
        return FastPipeline([ResizeCenterCrop(size, resize, interpolation)], random=False)
    if opt.augmentation in ('base', 'big'):
        return FastPipeline([RandomResizedCropFlip(size, interpolation=interpolation)], random=True)
    if opt.augmentation == 'adv':
        return FastPipeline([RandomResizedCropFlip(size, flip=False, interpolation=interpolation), GrayscaleJitter(),
                             HorizontalFlip()], random=True)
    return FastPipeline([ResizeRandomCropFlip(size, resize, interpolation)], random=True)


def digits_affine_params(generator, size=DIGITS_SIZE, degrees=10.0, translate=0.1, scale=(0.9, 1.1)):
    """`RandomAffine(degrees=10, translate=(0.1, 0.1), scale=(0.9, 1.1)).get_params`, drawn from `generator`."""
    u_angle, u_dx, u_dy, u_scale = torch.rand(4, generator=generator, dtype=torch.float64).tolist()
    max_d = translate * size
    angle = -degrees + 2 * degrees * u_angle
    translations = (int(round(-max_d + 2 * max_d * u_dx)), int(round(-max_d + 2 * max_d * u_dy)))
    return angle, translations, scale[0] + (scale[1] - scale[0]) * u_scale, (0.0, 0.0)


class DigitsPipeline:
    """PIL steps of `image_transforms.digits_pipeline` (Resize to 32 px, RandomAffine when training) with
    the affine parameters drawn per sample; the images are tiny, PIL is cheapest here."""

    def __init__(self, random, size=DIGITS_SIZE):
        self.random, self.size = random, size

    def __call__(self, path, seed_epoch_index):
        image = F1.resize(load_pil_rgb(path), [self.size, self.size])
        if self.random:
            angle, translations, scale, shear = digits_affine_params(sample_generator(*seed_epoch_index), self.size)
            image = F1.affine(image, angle, list(translations), scale, list(shear),
                              interpolation=InterpolationMode.NEAREST, fill=0)
        return pil_to_uint8(image)


def fast_digits_pipeline(opt, is_validation):
    check_augmentation(opt)
    return DigitsPipeline(random=not is_validation, size=digits_size(opt))
