"""`class_random` (default): bs/spc uniform class draws, spc uniform images each."""

from datasampler.base import BaseBatchSampler

REQUIRES_STORAGE = False


class Sampler(BaseBatchSampler):
    """Classes and images are drawn with replacement, so a class may fill 2·spc slots (as in the reference)."""

    name = 'class_random_sampler'
    requires_storage = REQUIRES_STORAGE

    def __iter__(self):
        classes = self.classes.draw_classes((self.sampler_length, self.classes_per_batch))
        batches = self.classes.draw_members(classes, self.samples_per_class).flatten(1)
        yield from batches.tolist()
