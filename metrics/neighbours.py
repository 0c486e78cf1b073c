"""The one nearest-neighbour search per feature type that recall@k and every mAP variant share.

The result records, for every query i, the 1-based rank j at which each same-label sample appears
among its K nearest *other* samples ("hits"); everything the retrieval metrics need. The query's own
index is removed from its list (the reference drops the first column instead, which with exact
duplicates may drop another sample and keep the query); if it is not among the K+1 results (more than
K exact duplicates) the last result is dropped. A padded slot (index -1, K >= N) is never a hit (the
reference's label lookup at index -1 read the last sample's label).
`on_chunk(start, idx, distances)`, if given, also sees every chunk's K+1 ranked list and its squared
L2 distances (the k-means reads its first assignment off them, metrics.kmeans.FirstAssignment).

Memory: O(number of hits) for the result, plus one query chunk of the engine's workspace
(search.WORKSPACE_BYTES) and its (chunk x K+1) index matrix -- the N x K list itself is never held.
"""
import torch


class NeighbourHits:
    """`query` and `rank` of every hit, sorted by query then rank; `order` = h_ij, the hit's 1-based
    position among its query's hits."""

    def __init__(self, n_queries, n_neighbours, query, rank):
        self.n_queries, self.n_neighbours = n_queries, n_neighbours
        self.query, self.rank = query, rank
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
