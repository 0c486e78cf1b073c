"""Image pipelines per `--augmentation` and backbone (the reference's pipelines).

A pipeline builder takes (opt, is_validation) and returns (crop_size, f_norm, pipeline); the base
dataset stores the three as `crop_size`, `f_norm` and `normal_transform`. A timm backbone
(`--arch timm/...`) takes its mean/std, input size, interpolation and evaluation resize from its
pretrained config (`timm_preprocessing`); the reference backbones keep the reference's values.
"""
from torchvision import transforms
from torchvision.transforms import InterpolationMode

from datasets.errors import DatasetError

AUGMENTATIONS = ('base', 'big', 'adv', 'red')

IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
# BN-Inception's Caffe weights expect BGR on the 0-255 scale with means (104, 117, 128): (x - m/255) * 255.
BNINCEPTION_MEAN, BNINCEPTION_STD = [0.502, 0.4588, 0.4078], [0.0039, 0.0039, 0.0039]

DIGITS_SIZE = 32


class ReverseChannels:
    """RGB -> BGR on a C×H×W tensor (the reference's `im[range(3)[::-1], :]` for BN-Inception)."""

    def __call__(self, image):
        return image.flip(0)

    def __repr__(self):
        return 'ReverseChannels()'


def check_augmentation(opt):
    """The reference silently drops resize and crop for an unknown mode, training on
    uncropped images of any size; the project refuses it."""
    if opt.augmentation not in AUGMENTATIONS:
        raise DatasetError('Unknown --augmentation {!r}: choose one of {}.'
                           .format(opt.augmentation, ', '.join(AUGMENTATIONS)))


def timm_preprocessing(opt):
    """The pretrained preprocessing of a timm backbone (`--input_size` applied), None for the reference's."""
    if not opt.arch.startswith('timm/'):
        return None
    from architectures.timm_backbone import preprocessing
    return preprocessing(opt.arch, getattr(opt, 'input_size', 0))


def interpolation_kwargs(preprocessing):
    """The timm config's interpolation as torchvision keyword; none (torchvision's bilinear) otherwise."""
    return {} if preprocessing is None else {'interpolation': InterpolationMode(preprocessing.interpolation)}


def normalisation(opt):
    """Per-backbone normalisation steps that end every pipeline (after ToTensor)."""
    timm = timm_preprocessing(opt)
    if timm is not None:
        f_norm = transforms.Normalize(mean=list(timm.mean), std=list(timm.std))
        return f_norm, [f_norm]
    if 'bninception' in opt.arch:
        f_norm = transforms.Normalize(mean=BNINCEPTION_MEAN, std=BNINCEPTION_STD)
        return f_norm, [f_norm, ReverseChannels()]
    f_norm = transforms.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD)
    return f_norm, [f_norm]


def benchmark_pipeline(opt, is_validation):
    """CUB200 / CARS196 / SOP pipelines of `--data_pipeline reference` (`fast_transforms` has the uint8
    counterparts). `big` sets S = 256 in both modes but leaves crop_size (224 / 227), as the reference does.
    A timm backbone: S = its input size under every augmentation, the evaluation resize its
    input size / crop_pct, its interpolation."""
    check_augmentation(opt)
    timm = timm_preprocessing(opt)
    crop_size, resize = (224, 256) if timm is None else (timm.input_size, timm.resize_size)
    if 'googlenet' in opt.arch and timm is None:
        crop_size = 227
    size = 256 if opt.augmentation == 'big' and timm is None else crop_size
    interpolation = interpolation_kwargs(timm)
    if is_validation:
        steps = [transforms.Resize(resize, **interpolation), transforms.CenterCrop(size)]
    elif opt.augmentation in ('base', 'big'):
        steps = [transforms.RandomResizedCrop(size, **interpolation), transforms.RandomHorizontalFlip(0.5)]
    elif opt.augmentation == 'adv':
        steps = [transforms.RandomResizedCrop(size, **interpolation), transforms.RandomGrayscale(p=0.2),
                 transforms.ColorJitter(0.2, 0.2, 0.2, 0.2), transforms.RandomHorizontalFlip(0.5)]
    else:
        steps = [transforms.Resize(resize, **interpolation), transforms.RandomCrop(size),
                 transforms.RandomHorizontalFlip(0.5)]
    f_norm, norm_steps = normalisation(opt)
    return crop_size, f_norm, transforms.Compose(steps + [transforms.ToTensor()] + norm_steps)


def digits_pipeline(opt, is_validation):
    """8×8 digits upscaled to 32 px; training adds small shifts/rotations/zooms (no flip: digits are
    not mirror-symmetric). `--augmentation` is validated but does not apply to this embedded dataset.
    A timm backbone gets its input size (`--input_size`, e.g. 32, or its pretrained config's)."""
    check_augmentation(opt)
    size = digits_size(opt)
    steps = [transforms.Resize((size, size))]
    if not is_validation:
        steps.append(transforms.RandomAffine(degrees=10, translate=(0.1, 0.1), scale=(0.9, 1.1)))
    f_norm, norm_steps = normalisation(opt)
    return size, f_norm, transforms.Compose(steps + [transforms.ToTensor()] + norm_steps)


def digits_size(opt):
    """32 px for the reference backbones; a timm backbone's input size."""
    timm = timm_preprocessing(opt)
    return DIGITS_SIZE if timm is None else timm.input_size
