"""Files evaluate.py writes for the user: the embeddings (.npz, numpy alone reads it) and the metrics (JSON).

Written atomically (temporary file + rename, readable under the user's umask).
"""
import io
import json
import os

import numpy as np

from utilities.atomic import atomic_open
from utilities.misc import redacted_namespace


def write_bytes(data, path):
    with atomic_open(path, 'wb') as handle:
        handle.write(data)


def json_safe(value):
    """Options as plain JSON: numbers, strings, lists and dicts stay, anything else becomes its str()."""
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def options_json(opt):
    """The options with the W&B key redacted, as a JSON text."""
    return json.dumps(json_safe(vars(redacted_namespace(opt))), sort_keys=True)


def write_json(result, path):
    write_bytes((json.dumps(json_safe(result), indent=2) + '\n').encode('utf-8'), path)


def embedding_arrays(features, labels, image_paths, rows=None, prefix=''):
    """`<prefix>features`, `<prefix>labels`, `<prefix>image_paths` (and per evaltype
    `<prefix>features_<evaltype>` when there are several) of the rows `rows` (all when None)."""
    evaltypes = list(features)
    pick = (lambda a: a) if rows is None else (lambda a: a[rows])
    arrays = {prefix + 'features': np.ascontiguousarray(pick(np.asarray(features[evaltypes[0]])), dtype=np.float32),
              prefix + 'labels': pick(np.asarray(labels, dtype=np.int64).reshape(-1)),
              prefix + 'image_paths': pick(np.asarray(list(image_paths), dtype=str))}
    if len(evaltypes) > 1:
        for evaltype in evaltypes:
            arrays[prefix + 'features_' + evaltype] = np.ascontiguousarray(pick(np.asarray(features[evaltype])),
                                                                            dtype=np.float32)
    return arrays


def write_embeddings(path, features, labels, image_paths, epoch, opt, split, class_names, checkpoint_path,
                     query_gallery=None):
    """`features` {evaltype: N x D}: the first evaltype is `features`, each one also `features_<evaltype>`.
    A split with query/gallery roles is written as two sets instead: `query_features`, `query_labels`,
    `query_image_paths` and `gallery_...` (and `query_features_<evaltype>` ...), with `protocol` saying so.
    Every array is numeric or unicode (no pickled objects), so `np.load(path)` needs no allow_pickle."""
    evaltypes = list(features)
    if query_gallery is None:
        arrays = embedding_arrays(features, labels, image_paths)
    else:
        arrays = embedding_arrays(features, labels, image_paths, query_gallery.query_indices, 'query_')
        arrays.update(embedding_arrays(features, labels, image_paths, query_gallery.gallery_indices, 'gallery_'))
    arrays.update({
        'protocol': np.asarray('one_set' if query_gallery is None else 'query_gallery'),
        'epoch': np.asarray(-1 if epoch is None else epoch, dtype=np.int64),
        'split': np.asarray(split),
        'evaltypes': np.asarray(evaltypes, dtype=str),
        'checkpoint': np.asarray(os.path.abspath(checkpoint_path)),
        'options': np.asarray(options_json(opt)),
        'class_ids': np.asarray(sorted(class_names), dtype=np.int64),
        'class_names': np.asarray([str(class_names[k]) for k in sorted(class_names)], dtype=str)})
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_bytes(buffer.getvalue(), path)
