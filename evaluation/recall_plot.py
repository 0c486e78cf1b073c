"""The reference's sample-recoveries figure: 10 random queries and their 3 nearest images (written atomically)."""
import io
import os

import numpy as np
import torch

from metrics.search import FaissEngine
from utilities.atomic import atomic_write_bytes

N_QUERIES = 10
N_CLOSEST = 3


def save_sample_recoveries(features, image_paths, save_path, n_queries=N_QUERIES, n_closest=N_CLOSEST):
    """Row r: the first search hit of query r (red bar, normally the query itself), then the next
    `n_closest` (green bars). Queries are drawn with replacement from numpy's global generator."""
    import matplotlib
    matplotlib.use('agg')
    import matplotlib.pyplot as plt
    from PIL import Image

    features = torch.as_tensor(np.asarray(features) if not torch.is_tensor(features) else features.cpu())
    paths = np.array([entry[0] for entry in image_paths])
    queries = np.random.choice(np.arange(len(features)), n_queries)
    search = FaissEngine().prepare(features)
    closest = search(features[torch.from_numpy(queries)], n_closest + 1).numpy()
    figure, axes = plt.subplots(n_queries, n_closest + 1)
    for i, (ax, path) in enumerate(zip(axes.reshape(-1), paths[closest].reshape(-1))):
        with Image.open(path) as image:
            ax.imshow(np.array(image.convert('RGB')))
        ax.set_xticks([])
        ax.set_yticks([])
        ax.axvline(x=0, color='g' if i % (n_closest + 1) else 'r', linewidth=13)
    figure.set_size_inches(10, 20)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format=os.path.splitext(save_path)[1][1:] or 'png')
    plt.close(figure)
    atomic_write_bytes(buffer.getvalue(), save_path)
