"""Which images of an evaluation split are queries and which form the gallery (the retrieval database).

A split without this property is evaluated as the reference does: every image queries all the others.
A split with it (In-Shop's test split) is evaluated query against gallery: each query ranks the gallery
images only. The roles are boolean masks over the dataset's global indices, so they follow the rows
the evaluation embeds (in dataset order, also when torchrun shards the embedding and gathers it, and
when --eval_cache replays it).
"""
import numpy as np


class QueryGallery:
    def __init__(self, is_query, is_gallery):
        self.is_query = np.asarray(is_query, dtype=bool)
        self.is_gallery = np.asarray(is_gallery, dtype=bool)
        if self.is_query.shape != self.is_gallery.shape:
            raise ValueError('query and gallery masks of different lengths')

    @classmethod
    def from_paths(cls, image_list, query_paths, gallery_paths):
        """Masks over `image_list` ((path, label) in global index order) from the two sets of paths."""
        query_paths, gallery_paths = set(query_paths), set(gallery_paths)
        return cls([path in query_paths for path, _ in image_list],
                   [path in gallery_paths for path, _ in image_list])

    @property
    def query_indices(self):
        return np.flatnonzero(self.is_query)

    @property
    def gallery_indices(self):
        return np.flatnonzero(self.is_gallery)

    def __len__(self):
        return len(self.is_query)


def query_gallery_of(dataset):
    """The roles of a dataset (through a torch Subset, as under torchrun), or None for a plain split."""
    dataset = getattr(dataset, 'dataset', dataset)
    return getattr(dataset, 'query_gallery', None)
