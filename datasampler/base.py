"""Batch geometry and dataset index tables shared by every batch sampler."""
import torch


class SamplerConfigError(ValueError):
    """A sampler flag or the dataset structure does not allow building batches."""


class ClassIndex:
    """Tensor view of `image_dict` (class → [[path, global index]]) and `image_list` (index → (path, class)) so
    that class and image draws are vectorised.

    Classes are numbered by their position in `image_dict`'s key order; `members` lists every class's global
    indices back to back, class c occupying `members[offsets[c]:offsets[c] + sizes[c]]`.
    """

    def __init__(self, image_dict, image_list):
        self.keys = list(image_dict.keys())
        position = {key: pos for pos, key in enumerate(self.keys)}
        self.sizes = torch.tensor([len(image_dict[key]) for key in self.keys], dtype=torch.long)
        self.offsets = torch.cumsum(self.sizes, 0) - self.sizes
        self.members = torch.tensor([entry[-1] for key in self.keys for entry in image_dict[key]], dtype=torch.long)
        unknown = {entry[-1] for entry in image_list} - position.keys()
        if unknown:
            raise SamplerConfigError(f'image_list holds class keys missing from image_dict: {sorted(unknown)[:5]}')
        self.class_of = torch.tensor([position[entry[-1]] for entry in image_list], dtype=torch.long)
        # Label noise can empty a class; drawing one would give a short batch, so only non-empty classes are drawn.
        self.nonempty = torch.nonzero(self.sizes > 0).flatten()
        if len(self.nonempty) == 0:
            raise SamplerConfigError('image_dict holds no images: no batch can be sampled')

    def draw_classes(self, shape):
        """Classes uniform over the non-empty classes, with replacement, whatever their size."""
        return self.nonempty[torch.randint(len(self.nonempty), shape)]

    def draw_members(self, classes, count):
        """`count` global indices per entry of `classes`, each uniform within its class, with replacement."""
        sizes = self.sizes[classes].unsqueeze(-1)
        uniform = torch.rand(*classes.shape, count, dtype=torch.float64)
        offset_in_class = torch.minimum((uniform * sizes).long(), sizes - 1)
        return self.members[self.offsets[classes].unsqueeze(-1) + offset_in_class]


def image_list_from_dict(image_dict):
    """Rebuild `image_list[g] = (path, class)` from `image_dict`'s `[path, g]` entries when omitted."""
    entries = sorted((entry[-1], entry[0], key) for key, items in image_dict.items() for entry in items)
    return [(path, key) for _, path, key in entries]


class BaseBatchSampler(torch.utils.data.Sampler):
    """`batch_sampler` of the training DataLoader: `len(self)` = N // bs batches of `bs` global dataset indices."""

    name = None
    requires_storage = False

    def __init__(self, opt, image_dict, image_list=None):
        if image_list is None:
            image_list = image_list_from_dict(image_dict)
        self.pars = opt
        self.batch_size = opt.bs
        self.samples_per_class = opt.samples_per_class
        if self.batch_size < 1 or self.samples_per_class < 1:
            raise SamplerConfigError(f'--bs ({opt.bs}) and --samples_per_class ({opt.samples_per_class}) '
                                     f'must be positive')
        if self.batch_size % self.samples_per_class:
            raise SamplerConfigError(f'#Samples per class must divide batchsize! '
                                     f'(--bs {opt.bs}, --samples_per_class {opt.samples_per_class})')
        self.sampler_length = len(image_list) // self.batch_size
        if self.sampler_length == 0:
            raise SamplerConfigError(f'--bs {opt.bs} exceeds the {len(image_list)} training images: '
                                     f'an epoch would hold no batch')
        self.classes = ClassIndex(image_dict, image_list)

    @property
    def classes_per_batch(self):
        return self.batch_size // self.samples_per_class

    def __len__(self):
        return self.sampler_length
