"""Loop-based oracle of the query-against-gallery metrics (In-Shop's protocol), from their definitions."""
import numpy as np


def ranked_gallery(features, query, gallery, inner_product):
    """Gallery rows nearest first, ties by ascending gallery position (float64, exact for these inputs)."""
    x = np.asarray(features, dtype=np.float64)
    if inner_product:
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        x = np.where(norms > 0, x / np.where(norms > 0, norms, 1), 0)
        key = lambda g: -float(x[query] @ x[g])
    else:
        key = lambda g: float(((x[query] - x[g]) ** 2).sum())
    return [gallery[position] for _, position in sorted((key(g), position) for position, g in enumerate(gallery))]


def brute_force(features, labels, queries, gallery, name):
    """One metric of the query/gallery protocol, by loops over queries and ranks."""
    inner_product = name.startswith('c_')
    base = name[2:] if name[:2] in ('c_', 'e_') else name
    per_query = []
    for q in queries:
        ranked = [labels[g] for g in ranked_gallery(features, q, gallery, inner_product)]
        relevant = ranked.count(labels[q])
        if base.startswith('recall@'):
            per_query.append(float(labels[q] in ranked[:int(base.split('@')[1])]))
            continue
        if relevant == 0:
            continue
        window = {'mAP': len(gallery), 'mAP_1000': 1000, 'mAP_lim': min(1023, len(gallery)),
                  'mAP_c': relevant, 'mAP@R': relevant, 'r_precision': relevant}[base]
        hits, precision_sum = 0, 0.0
        for j, label in enumerate(ranked[:window], start=1):
            if label == labels[q]:
                hits += 1
                precision_sum += hits / j
        per_query.append(hits / relevant if base == 'r_precision' else precision_sum / relevant)
    return float(np.mean(per_query)) if per_query else float('nan')
