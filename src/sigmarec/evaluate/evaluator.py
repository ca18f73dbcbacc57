"""Full-ranking (or sampled) evaluation of any model through ``SequentialRecommender.score_all``."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch

from sigmarec.config import ConfigError, EvalConfig
from sigmarec.data.batching import gather_left_padded
from sigmarec.data.protocols import EvalSet
from sigmarec.data.sequences import SequenceData
from sigmarec.evaluate.chunked import chunked_ranks, scores_by_dot_product
from sigmarec.evaluate.negatives import sample_negatives, sampled_ranks
from sigmarec.evaluate.ranking import CoverageCounter, mask_scores, metrics_from_ranks, multi_target_ranks, target_ranks
from sigmarec.models.base import SequentialRecommender
from sigmarec.models.inputs import inference_inputs
from sigmarec.parallel import Distributed


def ragged_ranges(flat: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate ``flat[starts[r]:ends[r]]`` for all r (vectorised) -> (values, offsets)."""
    lengths = ends - starts
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    idx = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1])
    return flat[idx], offsets


def case_batches(cases: EvalSet, max_len: int, batch_size: int) -> Iterator[np.ndarray]:
    """Row indices of ``cases`` in order of input length, ``batch_size`` at a time, so short histories are
    not padded to the longest."""
    order = np.argsort(np.minimum(cases.ends - cases.starts, max_len), kind="stable")
    for i in range(0, len(cases), batch_size):
        yield order[i : i + batch_size]


def input_batches(data: SequenceData, cases: EvalSet, max_len: int, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(rows, inputs [B, L])`` in the order of ``case_batches``, each input the last ``max_len`` items
    left-padded."""
    for rows in case_batches(cases, max_len, batch_size):
        yield rows, gather_left_padded(data.items, cases.starts[rows], cases.ends[rows], max_len)


def opens_session(data: SequenceData, cases: EvalSet, rows: np.ndarray) -> np.ndarray | None:
    """[B] bool: the (first) target of each case opens a session, i.e. the request comes after an idle
    gap (known at request time, as the clock is). None when the data have no sessions."""
    if data.session_starts is None:
        return None
    return data.session_starts[cases.ends[rows]]


@contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """``model`` in evaluation mode inside the block (no dropout), its training mode restored after it."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


@torch.no_grad()
def history_scores(model: SequentialRecommender, items: np.ndarray, starts: np.ndarray, ends: np.ndarray, max_len: int,
                   device: torch.device | str, session_starts: np.ndarray | None = None, users: np.ndarray | None = None,
                   new_session: np.ndarray | None = None, exclude: bool | np.ndarray = True) -> torch.Tensor:
    """Scores ``[B, N + 1]`` of every item after each history ``items[starts[b]:ends[b]]`` (the model sees its last
    ``max_len`` items), padding at -inf and the whole history too where ``exclude`` (one flag, or one per row).
    The one path from histories to scores behind evaluation, ``recommend``, batch scoring, export and serving."""
    inputs, context = inference_inputs(model, items, starts, ends, max_len, device, session_starts, users, new_session)
    history = torch.from_numpy(gather_left_padded(items, starts, ends)).to(device)
    if not isinstance(exclude, bool):
        history[torch.from_numpy(~np.asarray(exclude, dtype=bool)).to(history.device)] = 0  # nothing to exclude there
        exclude = True
    return mask_scores(model.score_all(inputs, **context).float(), history, exclude)


def rows_per_batch(model: SequentialRecommender, n_items: int, batch_size: int, max_scores: int) -> int:
    """Rows scored at once: ``batch_size``, fewer when ``rows x interests x (N + 1)`` scores would exceed
    ``max_scores`` (a multi-interest model holds ``[B, K, N + 1]`` before its max), at least 1."""
    k = int(getattr(getattr(model, "cfg", None), "n_interests", 1) or 1)
    return max(1, min(batch_size, max_scores // (k * (n_items + 1))))


@torch.no_grad()
def scored_batches(model: SequentialRecommender, data: SequenceData, cases: EvalSet, max_len: int, device: torch.device,
                   batch_size: int, exclude_history: bool, max_scores: int | None = None) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """Yield ``(rows, scores [B, N + 1])`` with padding and (optionally) history masked to -inf.

    The model sees the last ``max_len`` items of each input; the exclusion uses the whole input.
    Cases come in the order of ``case_batches`` (``rows`` are their indices), at most ``max_scores`` scores a
    batch (``EvalConfig.max_scores``). This is the single code path behind ``evaluate`` and ``recommend --split``.
    """
    if max_scores is not None:
        batch_size = rows_per_batch(model, data.n_items, batch_size, max_scores)
    with eval_mode(model):
        for rows in case_batches(cases, max_len, batch_size):
            new = opens_session(data, cases, rows) if "new_session" in model.context else None
            yield rows, history_scores(model, data.items, cases.starts[rows], cases.ends[rows], max_len, device,
                                       data.session_starts, cases.users[rows], new, exclude_history)


def distinct_targets(data: SequenceData, cases: EvalSet, rows: np.ndarray) -> torch.Tensor:
    """Targets ``[B, T]`` of multi-target cases, each item once per row, 0-padded."""
    t = torch.from_numpy(gather_left_padded(data.items, cases.ends[rows], cases.target_ends[rows]))
    t = t.sort(dim=1).values
    repeat = torch.zeros_like(t, dtype=torch.bool)
    repeat[:, 1:] = t[:, 1:] == t[:, :-1]
    return t.masked_fill(repeat, 0)


def case_ranks(model: SequentialRecommender, data: SequenceData, cases: EvalSet, cfg: EvalConfig, max_len: int,
               device: torch.device | str = "cpu", coverage: CoverageCounter | None = None) -> np.ndarray:
    """0-based rank of every case's target, in the order of ``cases``: int64 ``[n]``, or ``[n, T]``
    padded with -1 for protocols with several targets per case. Full ranking by default, against
    ``cfg.sampled_negatives`` sampled items when that is > 0. ``metrics_from_ranks`` turns the result
    into the metrics of ``evaluate``. With ``coverage`` (full ranking only) every row's top
    ``max(cfg.ks)`` items are recorded in it."""
    device = torch.device(device)
    negatives = None
    multi = cases.target_ends is not None
    if cfg.sampled_negatives > 0 and multi:
        raise ConfigError("eval.sampled_negatives works with one target per case; this protocol has several (set it to 0)")
    if cfg.sampled_negatives > 0:
        if coverage is not None:
            raise ConfigError("coverage needs full ranking (eval.sampled_negatives = 0)")
        hist, offsets = ragged_ranges(data.items, cases.starts, cases.ends)
        negatives = torch.from_numpy(
            sample_negatives(hist, offsets, cases.targets, data.n_items, cfg.sampled_negatives, cfg.sampler,
                             data.item_popularity(), cfg.sampler_seed)
        ).to(device)
    ranks = np.zeros(len(cases), dtype=np.int64)
    if cfg.item_chunk > 0 and negatives is None:
        return _chunked_case_ranks(model, data, cases, cfg, max_len, device, coverage, ranks)
    multi_ranks: list[tuple[np.ndarray, np.ndarray]] = []
    for rows, scores in scored_batches(model, data, cases, max_len, device, cfg.batch_size, cfg.exclude_history, cfg.max_scores):
        if coverage is not None:
            coverage.update(scores, max(cfg.ks))
        if multi:
            multi_ranks.append((rows, multi_target_ranks(scores, distinct_targets(data, cases, rows).to(device)).cpu().numpy()))
            continue
        targets = torch.from_numpy(np.asarray(cases.targets[rows], dtype=np.int64)).to(device)
        if negatives is None:
            ranks[rows] = target_ranks(scores, targets).cpu().numpy()
        else:
            t = scores.gather(1, targets[:, None])[:, 0]
            ranks[rows] = sampled_ranks(t, scores.gather(1, negatives[torch.from_numpy(rows).to(device)])).cpu().numpy()
    return gathered_ranks(multi_ranks, len(cases)) if multi else ranks


def gathered_ranks(pieces: list[tuple[np.ndarray, np.ndarray]], n: int) -> np.ndarray:
    """The ranks of all ``n`` cases from pieces ``(rows, ranks)`` (batches, or the ranks of a process group); several
    targets per case (2-D ranks) are padded with -1 to the widest piece."""
    if pieces and all(r.ndim == 1 for _, r in pieces):
        out = np.zeros(n, dtype=np.int64)
        for rows, r in pieces:
            out[rows] = r
        return out
    width = max((r.shape[1] for _, r in pieces), default=1)
    out = np.full((n, width), -1, dtype=np.int64)
    for rows, r in pieces:
        out[rows, : r.shape[1]] = r
    return out


def _chunked_case_ranks(model: SequentialRecommender, data: SequenceData, cases: EvalSet, cfg: EvalConfig, max_len: int,
                        device: torch.device, coverage: CoverageCounter | None, ranks: np.ndarray) -> np.ndarray:
    """``case_ranks`` over chunks of ``cfg.item_chunk`` items (``evaluate/chunked.py``)."""
    if not scores_by_dot_product(model):
        raise ConfigError(f"eval.item_chunk needs a model ranked by dot products; {type(model).__name__} scores items "
                          "its own way (set eval.item_chunk=0, and eval.max_scores to bound memory)")
    if cases.target_ends is not None:
        raise ConfigError("eval.item_chunk works with one target per case; this protocol has several (set it to 0)")
    with eval_mode(model):
        for rows in case_batches(cases, max_len, cfg.batch_size):
            new = opens_session(data, cases, rows) if "new_session" in model.context else None
            ranks[rows] = chunked_ranks(model, data.items, cases.starts[rows], cases.ends[rows], cases.targets[rows], max_len,
                                        device, cfg.exclude_history, cfg.item_chunk,
                                        (data.session_starts, cases.users[rows], new), max(cfg.ks), coverage)
    return ranks


def evaluate(model: SequentialRecommender, data: SequenceData, cases: EvalSet, cfg: EvalConfig, max_len: int,
             device: torch.device | str = "cpu", group: Distributed | None = None) -> dict[str, float]:
    """Metrics of ``model`` on ``cases``: full ranking by default, sampled when ``cfg.sampled_negatives > 0``
    (then without ``coverage@K``). In a process ``group`` of several ranks each scores every ``world``-th case
    and the ranks are gathered, so every rank returns the metrics of all cases."""
    coverage = CoverageCounter() if cfg.sampled_negatives <= 0 else None
    group = group or Distributed()
    if group.active:
        rows = np.arange(group.rank, len(cases), group.world)
        pieces = group.gather((rows, case_ranks(model, data, cases.subset(rows), cfg, max_len, device, coverage)))
        ranks = gathered_ranks(pieces, len(cases))
        if coverage is not None:
            coverage.merge_min(group.min_, data.n_items + 1, max(cfg.ks))
    else:
        ranks = case_ranks(model, data, cases, cfg, max_len, device, coverage)
    ks = sorted(cfg.ks)
    out = metrics_from_ranks(ranks, ks)
    if coverage is not None:
        out.update(coverage.result(ks, data.n_items))
    return out
