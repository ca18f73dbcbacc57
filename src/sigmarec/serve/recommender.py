"""Recommendations in original ids, from a history, a known user or a whole evaluation split.

No batch objects to build by hand: give item ids as they appear in your data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from sigmarec.config import ConfigError, UnknownIdError
from sigmarec.files import make_readable
from sigmarec.evaluate.evaluator import history_scores, rows_per_batch, scored_batches
from sigmarec.runs import LoadedRun, load_run


class Recommender:
    """Top-K recommendation with a trained model; inputs and outputs use the original ids."""

    def __init__(self, run: LoadedRun) -> None:
        self.run = run
        self.data = run.data
        self._item_index = run.data.item_index()
        self._user_index = run.data.user_index()

    @classmethod
    def from_run(cls, run_dir: str | Path, checkpoint: str = "best", device: str = "auto",
                 allow_data_change: bool = False) -> "Recommender":
        return cls(load_run(run_dir, checkpoint, device, allow_data_change))

    def encode_items(self, items: Sequence[str]) -> np.ndarray:
        ids = [self._item_index.get(str(i)) for i in items]
        unknown = [str(i) for i, j in zip(items, ids) if j is None]
        if unknown:
            raise UnknownIdError(f"unknown item id(s) {unknown[:10]} (the model knows {self.data.n_items} items from {self.data.name})")
        return np.asarray(ids, dtype=np.int64)

    @torch.no_grad()
    def recommend_many(self, histories: Sequence[Sequence[str]], k: int = 10, exclude_history: bool = True,
                       session_starts: Sequence[Sequence[bool]] | None = None,
                       users: Sequence[int] | None = None,
                       new_session: Sequence[bool] | None = None) -> list[list[tuple[str, float]]]:
        """Top-``k`` (item, score) for each history (oldest item first). Session models also take
        each history's session-start flags (default: one session), internal user ids (default:
        unknown) and whether the recommendation opens a new session (default: it continues the
        newest one)."""
        _check_k(k)
        if any(len(h) == 0 for h in histories):
            raise ConfigError("every history needs at least one item")
        encoded = [self.encode_items(h) for h in histories]
        flat = np.concatenate(encoded)
        ends = np.cumsum([len(e) for e in encoded])
        starts = ends - np.array([len(e) for e in encoded])
        flags = None
        if session_starts is not None:
            if [len(f) for f in session_starts] != [len(e) for e in encoded]:
                raise ValueError("session_starts needs one flag per history item")
            flags = np.concatenate([np.asarray(f, dtype=bool) for f in session_starts])
        if new_session is not None and len(new_session) != len(histories):
            raise ValueError(f"new_session needs one flag per history ({len(histories)}), got {len(new_session)}")
        scores = history_scores(self.run.model, flat, starts, ends, self.run.cfg.data.max_len, self.run.device, flags,
                                None if users is None else np.asarray(users),
                                None if new_session is None else np.asarray(new_session, dtype=bool), exclude_history)
        top = torch.topk(scores, min(k, self.data.n_items), dim=1)
        return [
            [(str(self.data.item_ids[i]), float(s)) for i, s in zip(idx.tolist(), val.tolist()) if np.isfinite(s)]
            for idx, val in zip(top.indices.cpu(), top.values.cpu())
        ]

    def recommend_frame(self, histories: pd.DataFrame, k: int = 10, user_col: str = "user", item_col: str = "item",
                        time_col: str | None = None, exclude_history: bool = True) -> pd.DataFrame:
        """Top-``k`` for each history in a DataFrame of interactions (one row per item; ``user_col`` names the
        history, ordered by ``time_col`` or else by row order): columns ``user, rank, item, score``."""
        missing = [c for c in (user_col, item_col, time_col) if c is not None and c not in histories.columns]
        if missing:
            raise ConfigError(f"histories: column(s) {missing} not found; columns: {list(histories.columns)}")
        frame = histories.sort_values(time_col, kind="stable") if time_col else histories
        groups = frame.groupby(user_col, sort=False)[item_col].apply(lambda s: [str(i) for i in s])
        recs = self.recommend_many(list(groups), k, exclude_history)
        return pd.DataFrame([(u, r + 1, item, score) for u, items in zip(groups.index, recs) for r, (item, score) in enumerate(items)],
                            columns=["user", "rank", "item", "score"])

    def recommend(self, history: Sequence[str], k: int = 10, exclude_history: bool = True) -> list[tuple[str, float]]:
        return self.recommend_many([history], k, exclude_history)[0]

    def recommend_user(self, user: str, k: int = 10, exclude_history: bool = True,
                       new_session: bool = False) -> list[tuple[str, float]]:
        """Next items for a known user, from the user's whole sequence: continuing the newest session,
        or opening a new one (``new_session``; session models only, the others ignore it)."""
        u = self._user_index.get(str(user))
        if u is None:
            raise UnknownIdError(f"unknown user id {user!r} in {self.data.name}")
        seq = self.data.sequence(u)
        flags = None
        if self.data.session_starts is not None:
            flags = [self.data.session_starts[self.data.offsets[u]:self.data.offsets[u + 1]].tolist()]
        return self.recommend_many([[str(self.data.item_ids[i]) for i in seq]], k, exclude_history, flags, [u],
                                   [new_session])[0]

    def recommend_split(self, split: str = "test", k: int = 10) -> pd.DataFrame:
        """One row per case and rank (``user, rank, item, score``), with exactly the inputs and
        exclusions ``evaluate`` uses, so its metrics can be recomputed from this table."""
        _check_k(k)
        cases = self.run.split.cases(split)
        cfg = self.run.cfg
        frames = []
        for rows, scores in scored_batches(self.run.model, self.data, cases, cfg.data.max_len, self.run.device,
                                           cfg.eval.batch_size, cfg.eval.exclude_history, cfg.eval.max_scores):
            top = torch.topk(scores, min(k, self.data.n_items), dim=1)
            idx, val = top.indices.cpu().numpy(), top.values.cpu().numpy()
            users = np.repeat(cases.users[rows], idx.shape[1])
            eligible = np.isfinite(val.ravel())  # padding and excluded history score -inf and sort last
            frames.append(pd.DataFrame({
                "user": self.data.user_ids[users],
                "rank": np.tile(np.arange(1, idx.shape[1] + 1), len(idx)),
                "item": self.data.item_ids[idx.ravel()],
                "score": val.ravel(),
            })[eligible])
        return pd.concat(frames, ignore_index=True)


    @torch.no_grad()
    def recommend_all_users(self, path: str | Path, k: int = 10, exclude_history: bool = True,
                            batch_size: int | None = None) -> int:
        """Top-``k`` for every user after the user's whole sequence, streamed to ``path`` (``.parquet``, else CSV)
        one batch of users at a time, so memory stays bounded by the batch; columns ``user, rank, item, score``
        in original ids, users in order of history length. Written to a temporary file, then renamed. Returns the
        number of rows."""
        import os
        import tempfile

        import pyarrow as pa
        import pyarrow.csv as pa_csv
        import pyarrow.parquet as pq

        _check_k(k)
        data, model, dev, max_len = self.data, self.run.model, self.run.device, self.run.cfg.data.max_len
        batch_size = rows_per_batch(model, data.n_items, batch_size or self.run.cfg.eval.batch_size, self.run.cfg.eval.max_scores)
        starts, ends = data.offsets[:-1], data.offsets[1:]
        order = np.argsort(np.minimum(ends - starts, max_len), kind="stable")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        schema = pa.schema([("user", pa.string()), ("rank", pa.int32()), ("item", pa.string()), ("score", pa.float32())])
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        os.close(fd)
        make_readable(tmp)
        parquet = path.suffix == ".parquet"
        writer = pq.ParquetWriter(tmp, schema) if parquet else pa_csv.CSVWriter(tmp, schema)
        rows_written = 0
        model.eval()
        try:
            for i in range(0, data.n_users, batch_size):
                users = order[i : i + batch_size]
                scores = history_scores(model, data.items, starts[users], ends[users], max_len, dev, data.session_starts,
                                        users, None, exclude_history)
                top = torch.topk(scores, min(k, data.n_items), dim=1)
                idx, val = top.indices.cpu().numpy(), top.values.cpu().numpy()
                keep = np.isfinite(val.ravel())
                table = pa.table({
                    "user": pa.array(data.user_ids[np.repeat(users, idx.shape[1])][keep].astype(str)),
                    "rank": pa.array(np.tile(np.arange(1, idx.shape[1] + 1, dtype=np.int32), len(idx))[keep]),
                    "item": pa.array(data.item_ids[idx.ravel()][keep].astype(str)),
                    "score": pa.array(val.ravel()[keep].astype(np.float32)),
                }, schema=schema)
                writer.write_table(table)
                rows_written += table.num_rows
            writer.close()
            os.replace(tmp, path)
        except BaseException:
            writer.close()
            Path(tmp).unlink(missing_ok=True)
            raise
        return rows_written


def _check_k(k: int) -> None:
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise ConfigError(f"k (the number of recommendations) must be an integer >= 1, got {k!r}")

