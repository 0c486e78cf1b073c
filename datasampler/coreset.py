"""Batch assembly shared by the coreset samplers (greedy and D²)."""
import torch

from datasampler.base import SamplerConfigError
from datasampler.storage import StorageSampler


class CoresetSampler(StorageSampler):
    """Each batch: a coreset routine picks bs/spc anchors in a big batch of distinct storage rows; then spc − 1
    same-class images per anchor, drawn uniformly with replacement (the anchor itself included).

    Project decision: the picked positions are mapped through the big batch the routine ran on, so the anchors
    are the selected coreset points (the reference maps them through an unrelated epoch-wide pool).
    Deviation: when `--data_batchmatch_bigbs` exceeds N the big batch is the whole storage, in random order
    (the reference crashes).
    Layout: the bs/spc anchors in pick order, then the anchors' filler groups in anchor order.
    """

    def __init__(self, opt, image_dict, image_list=None):
        super().__init__(opt, image_dict, image_list)
        self.pool_size = min(self.big_batch_size, self.n_images)
        if self.classes_per_batch > self.pool_size:
            raise SamplerConfigError(f'{self.name}: bs/samples_per_class = {self.classes_per_batch} anchors cannot be '
                                     f'picked from a big batch of {self.pool_size} (--data_batchmatch_bigbs '
                                     f'{self.big_batch_size}, {self.n_images} training images)')

    def _bytes_per_call(self):
        return 4 * (self.n_images + self.pool_size * (self.embed_dim + 2 * self.pool_size))

    def _batch_chunk(self, n_calls):
        big_batch = torch.rand(n_calls, self.n_images, device=self.storage.device).topk(self.pool_size, dim=1).indices
        picks = self.select_coreset(self._project(self.storage[big_batch]), self.classes_per_batch)
        anchors = big_batch.gather(1, picks).cpu()
        fillers = self.classes.draw_members(self.classes.class_of[anchors], self.samples_per_class - 1)
        return torch.cat([anchors, fillers.flatten(1)], 1)

    def select_coreset(self, points, n_picks):
        """`n_picks` distinct positions per call in `points` (n_calls × bigbs × D), in pick order."""
        raise NotImplementedError
