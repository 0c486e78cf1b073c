"""What the model retrieves: a grid of queries (one per row) and their nearest gallery images.

The gallery is the evaluated split without the query itself (as recall@k counts it); for a split with
query/gallery roles (In-Shop's test split) the queries are drawn from its query images and the gallery
is its gallery images, as its metrics rank them. Neighbours are ranked by exact Euclidean distance with
ties in ascending index, the order of the recall metric's search. Each neighbour is framed green when its class is the query's, red otherwise; the class name
is written under every image.
"""
import io

import numpy as np
import torch

from metrics.search import FaissEngine

QUERY_COLOUR, RIGHT_COLOUR, WRONG_COLOUR = '#1f4e9c', '#1a9641', '#d7191c'


def choose_queries(n_images, n_queries, seed):
    """`n_queries` distinct indices (all of them if fewer), drawn from a generator of its own."""
    rng = np.random.RandomState(seed)
    return np.sort(rng.choice(n_images, size=min(n_queries, n_images), replace=False))


def nearest_others(features, queries, k):
    """Per query, the indices of its k nearest other rows (N x k, -1 where the split has fewer)."""
    features = torch.as_tensor(np.ascontiguousarray(features, dtype=np.float32))
    search = FaissEngine().prepare(features)
    found = search(features[torch.as_tensor(queries)], k + 1).numpy()  # faiss pads with -1
    keep = (found != np.asarray(queries)[:, None]) & (found >= 0)
    order = np.argsort(~keep, axis=1, kind='stable')  # kept hits first, in rank order
    picked = np.take_along_axis(found, order, axis=1)[:, :k]
    picked[~np.take_along_axis(keep, order, axis=1)[:, :k]] = -1
    return picked


def nearest_in_gallery(features, queries, gallery_rows, k):
    """Per query row, the row indices of its k nearest gallery rows (-1 where the gallery has fewer)."""
    features = torch.as_tensor(np.ascontiguousarray(features, dtype=np.float32))
    search = FaissEngine().prepare(features[torch.as_tensor(gallery_rows)])
    found = search(features[torch.as_tensor(queries)], k).numpy()
    return np.where(found >= 0, np.asarray(gallery_rows)[found.clip(0)], -1)


def frame(axes, colour, width):
    for spine in axes.spines.values():
        spine.set_visible(True)
        spine.set_edgecolor(colour)
        spine.set_linewidth(width)


def short(text, width=22):
    """Class names under an image of ~1.7 in: long ones (CUB, CARS) end in an ellipsis."""
    return text if len(text) <= width else text[:width - 1] + '…'


def figure_rows(n_images, n_queries, seed, query_gallery):
    """The row indices of the queries drawn: any row, or one of the split's query rows."""
    if query_gallery is None:
        return choose_queries(n_images, n_queries, seed)
    candidates = query_gallery.query_indices
    return candidates[choose_queries(len(candidates), n_queries, seed)]


def draw(features, labels, image_paths, class_names, n_queries, n_neighbours, seed, query_gallery=None):
    """The matplotlib Figure (not saved)."""
    labels = np.asarray(labels).reshape(-1)
    queries = figure_rows(len(labels), n_queries, seed, query_gallery)
    if query_gallery is None:
        neighbours = nearest_others(features, queries, n_neighbours)
    else:
        neighbours = nearest_in_gallery(features, queries, query_gallery.gallery_indices, n_neighbours)
    name = lambda label: short(str(class_names.get(int(label), label)))
    rows = []
    for query, hits in zip(queries, neighbours):
        panels = [(image_paths[query], QUERY_COLOUR, 'query: ' + name(labels[query]))]
        for rank, hit in enumerate(hits, start=1):
            if hit < 0:
                panels.append((None, None, ''))
                continue
            correct = labels[hit] == labels[query]
            panels.append((image_paths[hit], RIGHT_COLOUR if correct else WRONG_COLOUR,
                           '#{}: {}'.format(rank, name(labels[hit]))))
        rows.append(panels)
    return draw_grid(rows, 'Queries (left, blue) and their {} nearest gallery images: green = same class, '
                           'red = other'.format(n_neighbours))


def draw_grid(rows, title):
    """A Figure of one row per query: `rows` = [[(image path or None, frame colour, caption), ...], ...], the
    query first (a path may carry a crop box, datasets.boxes)."""
    from matplotlib.figure import Figure
    from datasets.boxes import crop_pil

    n_columns = max(len(panels) for panels in rows)
    cell = 1.7
    figure = Figure(figsize=(cell * n_columns, (cell + 0.35) * len(rows) + 0.6))
    axes = figure.subplots(len(rows), n_columns, squeeze=False)
    for row, panels in enumerate(rows):
        panels = list(panels) + [(None, None, '')] * (n_columns - len(panels))
        for column, (path, colour, text) in enumerate(panels):
            ax = axes[row, column]
            ax.set_xticks([])
            ax.set_yticks([])
            if path is None:
                ax.axis('off')
                continue
            image = np.asarray(crop_pil(rgb_image(path), path))
            ax.imshow(image, interpolation='nearest' if max(image.shape[:2]) < 64 else 'antialiased')
            frame(ax, colour, 5 if column else 3)
            ax.set_xlabel(text, fontsize=9, color='black' if column == 0 else colour)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout(rect=(0, 0, 1, 0.98))
    return figure


def rgb_image(path):
    from PIL import Image
    with Image.open(path) as image:
        return image.convert('RGB')


def write_figure(figure, path):
    """The PNG, written atomically."""
    from evaluation.export import write_bytes
    buffer = io.BytesIO()
    figure.savefig(buffer, format='png', dpi=100)
    write_bytes(buffer.getvalue(), path)


def save_retrieval_figure(features, labels, image_paths, class_names, path, n_queries=8, n_neighbours=5, seed=0,
                          query_gallery=None):
    """Draw and write the PNG atomically; returns the query indices it drew."""
    write_figure(draw(features, labels, image_paths, class_names, n_queries, n_neighbours, seed, query_gallery), path)
    return figure_rows(len(np.asarray(labels).reshape(-1)), n_queries, seed, query_gallery)
