"""``sigmarec export RUN --out DIR``: item vectors and the id map (Parquet) and a FAISS index, with the index's
recall@K against the model's exact ranking measured on the run's test cases at export."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from sigmarec.evaluate.evaluator import history_scores, opens_session
from sigmarec.models.inputs import inference_inputs
from sigmarec.runs import LoadedRun, load_run, write_text_atomic
from sigmarec.serve.retrieval import ItemIndex, IndexKind, recall_at_k


@torch.no_grad()
def query_vectors(run: LoadedRun, rows: np.ndarray) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """For test cases ``rows``: the user vectors (``[B, d]`` or ``[B, K, d]``), each case's history (excluded from
    its recommendations) and the model's exact scores ``[B, N + 1]`` (history and padding at -inf), all from the
    inputs the evaluator builds."""
    data, cases, model = run.data, run.split.test, run.model
    starts, ends = cases.starts[rows], cases.ends[rows]
    new = opens_session(data, cases, rows) if "new_session" in model.context else None
    inputs, context = inference_inputs(model, data.items, starts, ends, run.cfg.data.max_len, run.device,
                                       data.session_starts, cases.users[rows], new)
    reps = model.user_representation(inputs, **context).float().cpu().numpy()
    histories = [data.items[s:e] for s, e in zip(starts, ends)]
    scores = history_scores(model, data.items, starts, ends, run.cfg.data.max_len, run.device, data.session_starts,
                            cases.users[rows], new, True)
    return reps, histories, scores.cpu().numpy()


def export_run(run_dir: str | Path, out: str | Path, kind: IndexKind = "exact", k: int = 10, checkpoint: str = "best",
               device: str = "cpu", max_queries: int = 2000, **index_params: Any) -> dict[str, Any]:
    """Write ``items.parquet`` (original id, internal index, vector), ``index.faiss`` + ``index.json`` and
    ``export.json`` (what was exported and the measured recall@k of the index against exact ranking)."""
    run = load_run(run_dir, checkpoint, device)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    vectors = run.model.item_embeddings().detach().float().cpu().numpy()
    t0 = time.time()
    index = ItemIndex.build(vectors, kind, **index_params)
    build_seconds = time.time() - t0
    n = min(max_queries, len(run.split.test))
    rows = np.arange(n)
    reps, histories, exact_scores = query_vectors(run, rows)
    k = min(k, run.data.n_items)
    exact = np.argsort(-exact_scores, axis=1, kind="stable")[:, :k]
    exact = np.where(np.isfinite(np.take_along_axis(exact_scores, exact, 1)), exact, 0)
    t0 = time.time()
    found, _ = index.search(reps, k, histories)
    search_seconds = time.time() - t0
    recall = recall_at_k(found, exact)
    table = pa.table({"item": pa.array([str(i) for i in run.data.item_ids[1:]]),
                      "index": pa.array(np.arange(1, run.data.n_items + 1, dtype=np.int64)),
                      "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors[1:].reshape(-1)), vectors.shape[1])})
    pq.write_table(table, out / "items.parquet")
    index.save(out)
    summary = {"run": str(Path(run_dir).resolve()), "checkpoint": checkpoint, "model": run.cfg.model_name,
               "n_items": run.data.n_items, "dim": int(vectors.shape[1]),
               "vectors_per_user": int(reps.shape[1]) if reps.ndim == 3 else 1, "index": kind, "params": index.params,
               "recall_at_k": {"k": k, "queries": n, "recall": recall}, "build_seconds": round(build_seconds, 3),
               "search_seconds": round(search_seconds, 3)}
    write_text_atomic(out / "export.json", json.dumps(summary, indent=2) + "\n")
    return summary
