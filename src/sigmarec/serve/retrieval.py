"""Inner-product retrieval over a model's item vectors with FAISS: exact (a flat index) or approximate (HNSW, IVF).

Every model in the library scores an item by a dot product of a user vector and the item's vector (multi-interest
models: the max over their K interest vectors), so the top-K of ``score_all`` is an inner-product search. A
multi-interest query searches each interest and merges the candidates by their best score, which is the ranking
the evaluator's max over interests gives (a top-K item under the max is in the top-K of the interest that scores
it best). History exclusion: the search asks for ``k`` plus the longest excluded list, then drops excluded items.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal, Sequence

import numpy as np

from sigmarec.config import ConfigError

IndexKind = Literal["exact", "hnsw", "ivf"]


def _faiss():
    try:
        import faiss
    except ImportError:  # pragma: no cover - the test extra installs it
        raise ConfigError("FAISS is not installed: pip install 'sigmarec[serve]' (or faiss-cpu)") from None
    return faiss


class ItemIndex:
    """Search over items 1..N (row 0 of ``vectors``, the padding, is never returned); ids are internal item ids."""

    def __init__(self, index, n_items: int, dim: int, kind: str, params: dict) -> None:
        self.index, self.n_items, self.dim, self.kind, self.params = index, n_items, dim, kind, params

    @classmethod
    def build(cls, vectors: np.ndarray, kind: IndexKind = "exact", hnsw_m: int = 32, ef_search: int = 128,
              nlist: int | None = None, nprobe: int = 16) -> "ItemIndex":
        faiss = _faiss()
        items = np.ascontiguousarray(vectors[1:], dtype=np.float32)
        n, d = items.shape
        params: dict = {}
        if kind == "exact":
            index = faiss.IndexFlatIP(d)
        elif kind == "hnsw":
            index = faiss.IndexHNSWFlat(d, hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efSearch = ef_search
            params = {"hnsw_m": hnsw_m, "ef_search": ef_search}
        elif kind == "ivf":
            nlist = nlist or max(1, int(4 * np.sqrt(n)))
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
            index.train(items)
            index.nprobe = min(nprobe, nlist)
            params = {"nlist": nlist, "nprobe": index.nprobe}
        else:
            raise ConfigError(f"index kind {kind!r}: expected exact, hnsw or ivf")
        index.add(items)
        return cls(index, n, d, kind, params)

    def search(self, queries: np.ndarray, k: int, exclude: Sequence[Sequence[int]] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` internal item ids and scores ``[B, k]`` for queries ``[B, d]`` or ``[B, K, d]`` (max over the
        K interests); ``exclude``: per row, item ids never returned. Missing slots (fewer candidates) are id 0, -inf."""
        q = np.asarray(queries, dtype=np.float32)
        if q.ndim == 2:
            q = q[:, None, :]
        B, K, _ = q.shape
        width = max((len(e) for e in exclude), default=0) if exclude is not None else 0
        kk = min(k + width, self.n_items)
        scores, ids = self.index.search(np.ascontiguousarray(q.reshape(B * K, -1)), kk)
        ids = np.where(ids >= 0, ids + 1, 0).reshape(B, K * kk)  # faiss row r = item r + 1; -1 = no result
        scores = np.where(ids > 0, scores.reshape(B, K * kk), -np.inf)
        if width:
            banned = np.zeros((B, width), dtype=np.int64)
            for row, e in enumerate(exclude):  # building the [B, H] table; the test below is one array operation
                banned[row, : len(e)] = e
            hit = (ids[:, :, None] == banned[:, None, :]) & (banned[:, None, :] > 0)
            scores = np.where(hit.any(-1), -np.inf, scores)
        order = np.lexsort((-scores, ids), axis=-1)  # by item, its best score first
        ids, scores = np.take_along_axis(ids, order, -1), np.take_along_axis(scores, order, -1)
        repeat = np.zeros_like(ids, dtype=bool)
        repeat[:, 1:] = ids[:, 1:] == ids[:, :-1]
        scores = np.where(repeat | (ids == 0), -np.inf, scores)
        top = np.argsort(-scores, axis=-1, kind="stable")[:, :k]
        ids, scores = np.take_along_axis(ids, top, -1), np.take_along_axis(scores, top, -1)
        return np.where(np.isfinite(scores), ids, 0), scores

    def save(self, directory: str | Path) -> None:
        faiss = _faiss()
        directory = Path(directory)
        faiss.write_index(self.index, str(directory / "index.faiss"))
        (directory / "index.json").write_text(json.dumps({"kind": self.kind, "params": self.params, "n_items": self.n_items,
                                                          "dim": self.dim}, indent=2) + "\n")

    @classmethod
    def load(cls, directory: str | Path) -> "ItemIndex":
        faiss = _faiss()
        directory = Path(directory)
        meta = json.loads((directory / "index.json").read_text())
        return cls(faiss.read_index(str(directory / "index.faiss")), meta["n_items"], meta["dim"], meta["kind"], meta["params"])


def recall_at_k(approx: np.ndarray, exact: np.ndarray) -> float:
    """Mean share of each row's exact top-k ids (0 = none) that the approximate top-k also holds."""
    hits = (approx[:, :, None] == exact[:, None, :]) & (exact[:, None, :] > 0)
    n = np.maximum((exact > 0).sum(1), 1)
    return float((hits.any(1).sum(1) / n).mean())
