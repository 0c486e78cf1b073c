"""The dataset object every builder returns (spec: data_metrics.md §A.6).

Samplers and tools rely on its attributes: `image_dict` (class -> [[path, global index], ...]),
`image_list` (global index -> (path, label)), `image_paths` (the same list object) and `avail_classes`.
"""
from PIL import Image
from torch.utils.data import Dataset

from datasets.errors import DatasetError
from datasets.image_transforms import benchmark_pipeline


class BaseDataset(Dataset):
    """Items are (label, 3×S×S float tensor, global index); the global index runs over the classes in
    sorted key order and, within a class, over its paths in stored order."""

    def __init__(self, image_dict, opt, is_validation=False, conversion=None, pipeline=benchmark_pipeline):
        self.is_validation = is_validation
        self.pars = opt
        self.image_dict = image_dict
        self.conversion = {} if conversion is None else conversion
        self.init_setup()
        self.crop_size, self.f_norm, self.normal_transform = pipeline(opt, is_validation)

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
        """Always RGB: grayscale, palette, CMYK and RGBA all become 3 channels (§G5)."""
        try:
            with Image.open(path) as image:
                return image.convert('RGB')
        except OSError as error:
            raise DatasetError('Cannot read image {}: {}'.format(path, error)) from None

    def __getitem__(self, idx):
        path, label = self.image_list[idx]
        return label, self.normal_transform(self.load_image(path)), idx

    def __len__(self):
        return self.n_files
