"""Image pipelines per `--augmentation` and backbone (the reference's pipelines).

A pipeline builder takes (opt, is_validation) and returns (crop_size, f_norm, pipeline); the base
dataset stores the three as `crop_size`, `f_norm` and `normal_transform`. The backbone's record
(`architectures.backbone_config`: mean/std, channel order, input size, interpolation, evaluation crop ratio)
gives every backbone-dependent value; a timm backbone's comes from its pretrained config, the reference
backbones' are the reference's values.
"""
from torchvision import transforms
from torchvision.transforms import InterpolationMode

from architectures import backbone_config as backbone_record
from architectures.record import eval_resize
from datasets.errors import DatasetError

AUGMENTATIONS = ('base', 'big', 'adv', 'red')

DIGITS_SIZE = 32
BIG_SIZE = 256  # `--augmentation big`: the reference's larger training (and evaluation) crop


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


def backbone_config(opt):
    """The record of `--arch` (`--input_size` applied where it applies)."""
    return backbone_record(opt.arch, opt)


def interpolation_kwargs(config):
    """The record's interpolation as torchvision keyword (the reference four: bilinear, torchvision's default)."""
    return {'interpolation': InterpolationMode(config['interpolation'])}


def normalisation(opt):
    """Per-backbone normalisation steps that end every pipeline (after ToTensor): the record's mean/std, then
    BGR channels where the backbone expects them."""
    config = backbone_config(opt)
    f_norm = transforms.Normalize(mean=list(config['mean']), std=list(config['std']))
    return f_norm, [f_norm] + ([ReverseChannels()] if config['channel_order'] == 'BGR' else [])


def benchmark_pipeline(opt, is_validation):
    """CUB200 / CARS196 / SOP pipelines of `--data_pipeline reference` (`fast_transforms` has the uint8
    counterparts). crop_size and the evaluation resize (input size / crop_pct) come from the backbone's
    record; `big` sets S = 256 in both modes but leaves crop_size (224 / 227), as the reference does,
    except for a backbone sized by its config (timm), which gets its input size under every augmentation."""
    check_augmentation(opt)
    config = backbone_config(opt)
    crop_size, resize = config['input_size'][-1], eval_resize(config)
    size = BIG_SIZE if opt.augmentation == 'big' and not config['sized_by_config'] else crop_size
    interpolation = interpolation_kwargs(config)
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
    """32 px for the reference backbones; a backbone sized by its config (timm): its input size."""
    config = backbone_config(opt)
    return config['input_size'][-1] if config['sized_by_config'] else DIGITS_SIZE
