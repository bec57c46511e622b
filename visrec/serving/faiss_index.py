"""Optional FAISS index for ``Recommender.recommend`` on large catalogs (``pip install faiss-cpu``).

The score μ + b_u + b_i + p_u · q_i ranks items like the inner product of the query [p_u, 1] with
the item vector [q_i, b_i] (μ + b_u is the same for every item), so an inner-product index over
[q_i, b_i] returns the same top items. Kinds:
    flat   IndexFlatIP: exact (same items as numpy, up to float rounding), BLAS speed, no training;
    ivf    IndexIVFFlat: items clustered into ``nlist`` lists, ``nprobe`` of them searched per query —
           approximate: recall@k grows with nprobe (nprobe = nlist is exact), time grows with it too;
    hnsw   IndexHNSWFlat: graph search, approximate; ``ef_search`` trades recall for speed.
Seen items are removed after the search, so the index fetches k + (most items seen by a user of the
batch) and then filters; an approximate index may therefore return fewer than k items (padding as in
``recommend``). Build the index with the same ``include_cold`` you will recommend with: items left
out of the index are never returned.

An unknown user (``on_unknown="fallback"``) of a preference bundle (iALS: scores p_u·q_i, no biases) is
ranked by popularity, as on the exact path, not searched: the all-zero query [0, 1] would score every
item b_i = 0 and return the lowest item indices. Unknown users of rating bundles are searched: their
query [0, 1] scores b_i, which ranks as μ + b_i does.
"""
from __future__ import annotations

import numpy as np

KINDS = ("flat", "ivf", "hnsw")


class FaissIndex:
    def __init__(self, recommender, kind: str = "flat", include_cold: bool = True, nlist: int | None = None,
                 nprobe: int = 16, hnsw_m: int = 32, ef_search: int = 128):
        try:
            import faiss
        except ImportError as error:
            raise ImportError("FaissIndex needs faiss: pip install faiss-cpu (or visrec[faiss])") from error
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        candidates = recommender.scorable_items if include_cold else recommender.known_items
        self.item_rows = np.nonzero(candidates)[0]  # (M,) index position -> item index
        vectors = np.ascontiguousarray(np.hstack([recommender.item_factors[self.item_rows],
                                                  recommender.item_bias[self.item_rows, None]]), dtype=np.float32)  # (M, K+1)
        dim = vectors.shape[1]
        if kind == "flat":
            index = faiss.IndexFlatIP(dim)
        elif kind == "ivf":
            nlist = nlist or max(1, int(4 * np.sqrt(len(vectors))))
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
            index.train(vectors)
            index.nprobe = min(nprobe, nlist)
        else:
            index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efSearch = ef_search
        index.add(vectors)
        self.index, self.kind = index, kind

    def recommend(self, recommender, users: np.ndarray, k: int, exclude_seen: bool, candidates: np.ndarray):
        """Same contract as :meth:`Recommender.recommend` (after id lookup)."""
        k = int(k)
        out_items = np.zeros((len(users), k), dtype=np.int64)
        out_scores = np.full((len(users), k), -np.inf, dtype=np.float32)
        indptr = recommender.bundle.arrays["seen_indptr"]
        for start in range(0, len(users), recommender.batch_size):
            batch = users[start:start + recommender.batch_size]
            vectors, biases = recommender._user_rows(batch)
            queries = np.ascontiguousarray(np.hstack([vectors, np.ones((len(batch), 1))]), dtype=np.float32)  # (B, K+1)
            safe = np.maximum(batch, 0)
            extra = int(np.max(np.where(batch >= 0, indptr[safe + 1] - indptr[safe], 0), initial=0)) if exclude_seen else 0
            fetch = min(k + extra, len(self.item_rows))
            scores, positions = self.index.search(queries, fetch)  # (B, fetch); positions -1 = nothing found
            found = positions >= 0
            items = np.where(found, self.item_rows[np.maximum(positions, 0)], 0)  # (B, fetch)
            keep = found & candidates[items]
            if exclude_seen:
                rows, seen = recommender._excluded(batch)
                seen_mask = np.zeros((len(batch), len(recommender.item_bias)), dtype=bool)
                seen_mask[rows, seen] = True
                keep &= ~np.take_along_axis(seen_mask, items, axis=1)
            scores = np.where(keep, scores, -np.inf).astype(np.float32)
            # Best first, ties by lower item index (as everywhere else), then the first k.
            order = np.lexsort((items, -scores), axis=1)[:, :k]
            chosen_items = np.take_along_axis(items, order, axis=1)
            chosen_scores = np.take_along_axis(scores, order, axis=1) + (biases + recommender.global_mean)[:, None]
            width = chosen_items.shape[1]
            out_items[start:start + len(batch), :width] = chosen_items
            out_scores[start:start + len(batch), :width] = np.where(np.isfinite(np.take_along_axis(scores, order, axis=1)), chosen_scores, -np.inf)
        self._popularity_rows(recommender, users, k, candidates, out_items, out_scores)
        return recommender._as_ids(out_items, out_scores, k)

    def _popularity_rows(self, recommender, users: np.ndarray, k: int, candidates: np.ndarray,
                         out_items: np.ndarray, out_scores: np.ndarray) -> None:
        """Overwrite the rows of unknown users (index -1) of a preference bundle with the exact path's
        popularity ranking over the indexed candidates (they have seen nothing, so nothing is excluded)."""
        unknown = np.flatnonzero(users < 0)
        if recommender.score_kind != "preference" or not len(unknown):
            return
        from visrec.serving.topk import top_k

        allowed = np.zeros(len(candidates), dtype=bool)
        allowed[self.item_rows] = True
        allowed &= candidates
        scores = recommender.score_indices(users[unknown[:1]])  # (1, N): the same popularity row for every unknown user
        scores[:, ~allowed] = -np.inf
        chosen = top_k(scores, k)  # (1, min(k, N))
        width = chosen.shape[1]
        out_items[unknown, :width] = chosen[0]
        out_scores[unknown, :width] = np.take_along_axis(scores, chosen, axis=1)[0]
