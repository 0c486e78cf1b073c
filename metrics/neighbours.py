"""The one nearest-neighbour search per feature type that recall@k and every mAP variant share.

The result records, for every query i, the 1-based rank j at which each same-label sample appears
among its K nearest *other* samples ("hits"); everything the retrieval metrics need. The query's own
index is removed from its list (the reference drops the first column instead, which with exact
duplicates may drop another sample and keep the query); if it is not among the K+1 results (more than
K exact duplicates) the last result is dropped. A padded slot (index -1, K >= N) is never a hit (the
reference's label lookup at index -1 read the last sample's label).
`on_chunk(start, idx, distances)`, if given, also sees every chunk's K+1 ranked list and its squared
L2 distances (the k-means reads its first assignment off them, metrics.kmeans.FirstAssignment).

`query_gallery_hits` is the same record for queries ranked against a separate gallery (a split
evaluated query against gallery, e.g. In-Shop): no query is in the gallery, so nothing is removed, and
each query also carries `relevant`, its number of same-label gallery images.

Memory: O(number of hits) for the result, plus one query chunk of the engine's workspace
(search.WORKSPACE_BYTES) and its (chunk x K+1) index matrix -- the N x K list itself is never held.
"""
import torch


class NeighbourHits:
    """`query` and `rank` of every hit, sorted by query then rank; `order` = h_ij, the hit's 1-based
    position among its query's hits. Against a gallery, `relevant` (per query: same-label gallery images)
    and `n_database` (gallery size) are set; for one set they are None and the number of samples."""

    def __init__(self, n_queries, n_neighbours, query, rank, relevant=None, n_database=None):
        self.n_queries, self.n_neighbours = n_queries, n_neighbours
        self.query, self.rank = query, rank
        self.relevant = relevant
        self.n_database = n_queries if n_database is None else n_database
        per_query = torch.bincount(query, minlength=n_queries)
        first = torch.cumsum(per_query, 0) - per_query
        self.order = torch.arange(1, len(query) + 1, device=query.device) - first[query]


def neighbour_hits(features, labels, n_neighbours, engine, inner_product=False, on_chunk=None):
    n, device = features.shape[0], features.device
    nothing = torch.empty(0, dtype=torch.long, device=device)
    queries, ranks = [nothing], [nothing]
    if n_neighbours > 0:
        search = engine.prepare(features, inner_product=inner_product)
        k = n_neighbours + 1
        rows = engine.rows_per_chunk(n, k)
        for start in range(0, n, rows):
            stop = min(n, start + rows)
            if on_chunk is None:
                idx = search(features[start:stop], k).to(device)
            else:
                idx, distances = search(features[start:stop], k, distances=True)
                idx = idx.to(device)
                on_chunk(start, idx, distances.to(device))
            same = (labels[idx.clamp_min(0)] == labels[start:stop, None]) & (idx >= 0)
            row, column = same.nonzero().T
            is_self = idx[row, column] == row + start
            self_column = torch.full((stop - start,), n_neighbours, dtype=torch.long, device=device)
            self_column[row[is_self]] = column[is_self]
            # without the query in its list, the last column is the one dropped
            keep = ~is_self & (column < n_neighbours + (self_column[row] < n_neighbours).long())
            row, column = row[keep], column[keep]
            queries.append(row + start)
            ranks.append(column + 1 - (column > self_column[row]).long())
    return NeighbourHits(n, n_neighbours, torch.cat(queries), torch.cat(ranks))


def query_gallery_hits(query_features, query_labels, gallery_features, gallery_labels, n_neighbours, engine,
                       inner_product=False):
    """Hits of every query among its `n_neighbours` nearest gallery images (ties: ascending gallery index),
    searched in query chunks of the engine's workspace against one index of the gallery."""
    n_queries, device = query_features.shape[0], query_features.device
    nothing = torch.empty(0, dtype=torch.long, device=device)
    queries, ranks = [nothing], [nothing]
    if n_neighbours > 0 and len(gallery_features) > 0:
        search = engine.prepare(gallery_features, inner_product=inner_product)
        rows = engine.rows_per_chunk(len(gallery_features), n_neighbours)
        for start in range(0, n_queries, rows):
            stop = min(n_queries, start + rows)
            idx = search(query_features[start:stop], n_neighbours).to(device)
            same = (gallery_labels[idx.clamp_min(0)] == query_labels[start:stop, None]) & (idx >= 0)
            row, column = same.nonzero().T
            queries.append(row + start)
            ranks.append(column + 1)
    return NeighbourHits(n_queries, n_neighbours, torch.cat(queries), torch.cat(ranks),
                         relevant=same_label_counts(query_labels, gallery_labels),
                         n_database=len(gallery_features))


def same_label_counts(query_labels, gallery_labels):
    """Per query, the number of gallery rows with its label (0 for a label the gallery lacks)."""
    classes, counts = torch.unique(gallery_labels, return_counts=True)
    if len(classes) == 0:
        return torch.zeros_like(query_labels)
    position = torch.searchsorted(classes, query_labels).clamp_max(len(classes) - 1)
    return torch.where(classes[position] == query_labels, counts[position], torch.zeros_like(counts[position]))
