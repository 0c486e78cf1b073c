"""The dataset object every builder returns.

Samplers and tools rely on its attributes: `image_dict` (class -> [[path, global index], ...]),
`image_list` (global index -> (path, label)), `image_paths` (the same list object) and `avail_classes`.
A key is a global index or `(index, epoch)`; the epoch only matters to the fast pipeline's per-sample
randomness (`sample_randomness`).
"""
from torch.utils.data import Dataset

from datasets.decoding import load_pil_rgb
from datasets.fast_transforms import fast_benchmark_pipeline, fast_digits_pipeline
from datasets.image_transforms import benchmark_pipeline, digits_pipeline
from datasets.sample_randomness import split_key

# The `--data_pipeline fast` counterpart of each reference pipeline builder.
FAST_PIPELINES = {benchmark_pipeline: fast_benchmark_pipeline, digits_pipeline: fast_digits_pipeline}


class BaseDataset(Dataset):
    """Items are (label, image, global index). Reference pipeline: a 3×S×S float tensor, normalised, the
    published PIL/torchvision transforms drawing from torch's global RNG. Fast pipeline: a uint8 3×S×S
    tensor (normalise on the device with `device_normaliser`), its augmentation drawn from (opt.seed,
    epoch, index). The global index runs over the classes in sorted key order and, within a class, over
    its paths in stored order."""

    query_gallery = None  # a split evaluated query against gallery sets its roles (datasets.query_gallery)

    def __init__(self, image_dict, opt, is_validation=False, conversion=None, pipeline=benchmark_pipeline):
        self.is_validation = is_validation
        self.pars = opt
        self.image_dict = image_dict
        self.conversion = {} if conversion is None else conversion
        self.init_setup()
        self.crop_size, self.f_norm, self.normal_transform = pipeline(opt, is_validation)
        self.seed = opt.seed
        fast = getattr(opt, 'data_pipeline', 'reference') == 'fast' and pipeline in FAST_PIPELINES
        self.fast_transform = FAST_PIPELINES[pipeline](opt, is_validation) if fast else None

    def init_setup(self):
        self.n_files = sum(len(paths) for paths in self.image_dict.values())
        self.avail_classes = sorted(self.image_dict.keys())
        indexed, counter = {}, 0
        for key in self.avail_classes:
            indexed[key] = []
            for path in self.image_dict[key]:
                indexed[key].append([path, counter])
                counter += 1
        self.image_dict = indexed
        self.image_list = [(path, key) for key in self.avail_classes for path, _ in indexed[key]]
        self.image_paths = self.image_list
        self.is_init = True

    def load_image(self, path):
        """Always RGB: grayscale, palette, CMYK and RGBA all become 3 channels."""
        return load_pil_rgb(path)

    def __getitem__(self, key):
        idx, epoch = split_key(key)
        path, label = self.image_list[idx]
        if self.fast_transform is None:
            return label, self.normal_transform(self.load_image(path)), idx
        return label, self.fast_transform(path, (self.seed, epoch, idx)), idx

    def __len__(self):
        return self.n_files
