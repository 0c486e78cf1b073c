"""A searchable collection: a Faiss index of embeddings saved in one file with what it indexes.

The file (numpy's .npz, written atomically, read without pickle) holds the serialised Faiss index, the
image paths (with their crop boxes, -1 where none), the labels where known ('' otherwise), and the
model's identity: a fingerprint of its weights (SHA-256 over the state dict in key order) with the
checkpoint path, --arch and --embed_dim. A query is embedded by that model only: another model's
embeddings live in another space, and their neighbours would be meaningless.

Search is exact (`IndexFlatL2`: the Euclidean distance of the framework's recall metric) unless the
index is approximate: `ivf` (inverted lists over k-means cells, `nprobe` cells searched) or `hnsw`
(a navigable small-world graph, `ef_search` candidates). Distances are reported as Euclidean distances.
"""
import hashlib
import io
import json
import math

import faiss
import numpy as np
import torch

KINDS = ('exact', 'ivf', 'hnsw')
HNSW_NEIGHBOURS = 32
HNSW_CONSTRUCTION = 80   # candidates while linking a new vector (faiss' default 40 gave recall@10 0.29 in bench/)
RECALL_QUERIES = 1000


class SearchError(Exception):
    """An index file that cannot be used (unreadable, another model, wrong dimension): one line."""


def fingerprint(state_dict):
    """SHA-256 of the weights (names, shapes, dtypes and bytes in key order): the same model gives the
    same value wherever its checkpoint file lies."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(name.encode())
        digest.update(str((tuple(tensor.shape), str(tensor.dtype))).encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b'')
    return digest.hexdigest()


def ivf_cells(n):
    """About 4·√n cells, with at least 39 training points per cell (faiss' own minimum)."""
    return max(1, min(int(4 * math.sqrt(n)), n // 39))


def new_index(kind, vectors, nprobe=16, ef_search=128):
    """An index of `kind` holding float32 N×D `vectors` (trained on them where the kind needs it)."""
    dim = vectors.shape[1]
    if kind == 'exact':
        index = faiss.IndexFlatL2(dim)
    elif kind == 'ivf':
        index = faiss.IndexIVFFlat(faiss.IndexFlatL2(dim), dim, ivf_cells(len(vectors)))
        index.train(vectors)
        index.nprobe = nprobe
    elif kind == 'hnsw':
        index = faiss.IndexHNSWFlat(dim, HNSW_NEIGHBOURS)
        index.hnsw.efConstruction = HNSW_CONSTRUCTION
        index.hnsw.efSearch = ef_search
    else:
        raise ValueError('unknown index kind {!r}; one of {}'.format(kind, ', '.join(KINDS)))
    index.add(vectors)
    return index


def search(index, vectors, k):
    """(Euclidean distances Q×k, row indices Q×k; -1 where the index holds fewer than k)."""
    squared, rows = index.search(np.ascontiguousarray(vectors, dtype=np.float32), min(k, index.ntotal))
    return np.sqrt(np.maximum(squared, 0)), rows


def recall_against_exact(index, vectors, k, n_queries=RECALL_QUERIES, seed=0):
    """Mean share of the exact k nearest neighbours the approximate index returns, over up to `n_queries`
    of the indexed vectors used as queries."""
    exact = faiss.IndexFlatL2(vectors.shape[1])
    exact.add(vectors)
    chosen = np.random.RandomState(seed).choice(len(vectors), min(n_queries, len(vectors)), replace=False)
    k = min(k, len(vectors))
    _, truth = exact.search(vectors[chosen], k)
    _, found = index.search(vectors[chosen], k)
    return float(np.mean([len(set(t) & set(f)) / k for t, f in zip(truth, found)]))


class SavedIndex:
    """The index with its rows' paths, boxes and labels, and the model identity."""

    def __init__(self, index, kind, paths, boxes, labels, model):
        self.index, self.kind = index, kind
        self.paths, self.boxes, self.labels = list(paths), np.asarray(boxes, dtype=np.int64).reshape(-1, 4), \
            list(labels)
        self.model = dict(model)

    def __len__(self):
        return self.index.ntotal

    def add(self, vectors, paths, boxes, labels):
        self.index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        self.paths += list(paths)
        self.boxes = np.concatenate([self.boxes, np.asarray(boxes, dtype=np.int64).reshape(-1, 4)])
        self.labels += list(labels)

    def to_bytes(self):
        buffer = io.BytesIO()
        np.savez(buffer, faiss_index=faiss.serialize_index(self.index), kind=np.asarray(self.kind),
                 paths=np.asarray(self.paths, dtype=str), boxes=self.boxes,
                 labels=np.asarray(self.labels, dtype=str), model=np.asarray(json.dumps(self.model, sort_keys=True)))
        return buffer.getvalue()

    def save(self, path):
        from utilities.atomic import atomic_open
        with atomic_open(path, 'wb') as handle:
            handle.write(self.to_bytes())

    @classmethod
    def load(cls, path):
        try:
            with np.load(path, allow_pickle=False) as stored:
                index = faiss.deserialize_index(stored['faiss_index'])
                return cls(index, str(stored['kind']), stored['paths'].tolist(), stored['boxes'],
                           stored['labels'].tolist(), json.loads(str(stored['model'])))
        except FileNotFoundError:
            raise SearchError('--index {}: no such file'.format(path)) from None
        except Exception as error:
            raise SearchError('--index {}: not an index written by utilities.search ({})'.format(
                path, str(error).splitlines()[0] if str(error) else type(error).__name__)) from None
