"""Diagnostics of the interests a multi-interest model learned (``sigmarec interests RUN_DIR``).

Works with any model that exposes ``item_category_probs() -> [N + 1, K]`` (each item's
probability per learned category, row 0 = padding); ``interest_intensities(inputs) -> [B, K]`` is
used when present, else the intensities are the mean of the items' category probabilities.

* Learned category of an item = its argmax; a user's hard interests = the distinct learned
  categories among the items of their test-time input (every item before the test target, the
  last ``data.max_len`` of them, exactly what the evaluator feeds the model).
* Known categories come from the item side table: ``category`` (synthetic: the planted ones) as
  is; ``class``/``genre``/``genres`` (MovieLens: space-separated genres) by their **first**
  value, since NMI needs one label per item. Items without a known category are left out of NMI.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from sigmarec.config import ConfigError
from sigmarec.files import make_readable
from sigmarec.data.protocols import EvalSet
from sigmarec.data.sequences import SequenceData
from sigmarec.evaluate.evaluator import eval_mode, input_batches
from sigmarec.models.layers.interests import interest_intensities
from sigmarec.runs import load_run, write_json_atomic, write_text_atomic

KNOWN_COLUMNS = ("category", "class", "genre", "genres")
MULTI_VALUED = ("class", "genre", "genres")  # space-separated lists: the first value is the label
NAME_COLUMNS = ("name", "movie_title", "title")
BASELINE_PERMUTATIONS = 5


def normalized_mutual_info(labels_a: np.ndarray, labels_b: np.ndarray) -> float:
    """NMI of two labelings, normalised by the arithmetic mean of their entropies (scikit-learn's default)."""
    a, b = np.asarray(labels_a), np.asarray(labels_b)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"labelings must be 1-d and of equal length, got {a.shape} and {b.shape}")
    _, ia = np.unique(a, return_inverse=True)
    _, ib = np.unique(b, return_inverse=True)
    na, nb = int(ia.max(initial=-1)) + 1, int(ib.max(initial=-1)) + 1
    if na == nb and na <= 1:
        return 1.0  # both a single cluster (or empty): identical partitions
    joint = np.bincount(ia * nb + ib, minlength=na * nb).reshape(na, nb) / len(a)
    pa, pb = joint.sum(1), joint.sum(0)
    nz = joint > 0
    mi = float((joint[nz] * np.log(joint[nz] / np.outer(pa, pb)[nz])).sum())
    ha, hb = -float((pa * np.log(pa)).sum()), -float((pb * np.log(pb)).sum())
    if mi <= 0.0:
        return 0.0
    return float(min(1.0, mi / max((ha + hb) / 2, np.finfo(np.float64).eps)))


def random_baseline_nmi(labels: np.ndarray, known: np.ndarray, n_perm: int = BASELINE_PERMUTATIONS, seed: int = 0) -> float:
    """Mean NMI of ``known`` with random permutations of ``labels`` (same category sizes)."""
    rng = np.random.default_rng(seed)
    return float(np.mean([normalized_mutual_info(rng.permutation(labels), known) for _ in range(n_perm)]))


def check_interest_model(model: torch.nn.Module, name: str) -> None:
    """Raise a ConfigError naming the model if it does not expose learned item categories."""
    if not callable(getattr(model, "item_category_probs", None)):
        raise ConfigError(
            f"interest diagnostics need a model with learned item categories (a method item_category_probs() "
            f"returning [N + 1, K]); model {name!r} ({type(model).__name__}) has none"
        )


def known_categories(side: pd.DataFrame | None, n_items: int) -> tuple[str | None, np.ndarray | None]:
    """The side-table column used as known category and one label per item id 0..N (None = unknown)."""
    if side is None:
        return None, None
    for col in KNOWN_COLUMNS:
        if col in side.columns:
            values = side[col].reindex(range(n_items + 1)).astype(object).to_numpy()
            labels = np.array([_first(v, col in MULTI_VALUED) for v in values], dtype=object)
            labels[0] = None
            return col, labels
    return None, None


def _first(value: Any, multi: bool) -> str | None:
    if value is None or pd.isna(value):
        return None
    text = str(value).strip()
    if multi:
        text = text.split()[0] if text else ""
    return text or None


def _item_names(side: pd.DataFrame | None, n_items: int) -> np.ndarray | None:
    if side is None:
        return None
    for col in NAME_COLUMNS:
        if col in side.columns:
            return side[col].reindex(range(n_items + 1)).astype(object).to_numpy()
    return None


@torch.no_grad()
def user_interests(model: torch.nn.Module, data: SequenceData, cases: EvalSet, max_len: int, device: torch.device,
                   batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Intensities ``[U, K]`` and number of hard interests ``[U]`` of each case's input, batched on ``device``."""
    with eval_mode(model):
        probs = model.item_category_probs().float()
        item_cat = probs.argmax(1)
        k = probs.shape[1]
        intensities = np.zeros((len(cases), k), dtype=np.float64)
        hard = np.zeros(len(cases), dtype=np.int64)
        for rows, batch in input_batches(data, cases, max_len, batch_size):
            inputs = torch.from_numpy(batch).to(device)
            valid = inputs > 0
            if callable(getattr(model, "interest_intensities", None)):
                alpha = model.interest_intensities(inputs).float()
            else:
                alpha = interest_intensities(probs[inputs], valid)
            seen = F.one_hot(item_cat[inputs], k).bool() & valid.unsqueeze(-1)
            intensities[rows] = alpha.cpu().numpy()
            hard[rows] = seen.any(1).sum(1).cpu().numpy()
        return intensities, hard


def category_summaries(probs: np.ndarray, data: SequenceData, known: np.ndarray | None, top: int) -> list[dict[str, Any]]:
    """Per learned category: size, dominant known category with its share, and the ``top`` items by ``a_i^j``."""
    item_cat = probs[1:].argmax(1)
    popularity = data.item_popularity()[1:]
    names = _item_names(data.item_side, data.n_items)
    out = []
    for j in range(probs.shape[1]):
        members = np.flatnonzero(item_cat == j) + 1
        entry: dict[str, Any] = {"category": j, "size": int(len(members))}
        if known is not None:
            labels = pd.Series(known[members]).dropna()
            if len(labels):
                counts = labels.value_counts()
                entry["dominant_known"] = str(counts.index[0])
                entry["dominant_share"] = float(counts.iloc[0] / len(labels))
        best = np.lexsort((-popularity, -probs[1:, j]))[:top] + 1  # by a_i^j, then popularity
        entry["top_items"] = [
            {"item": str(data.item_ids[i]), "prob": float(probs[i, j]), "interactions": int(popularity[i - 1]),
             "name": None if names is None or pd.isna(names[i]) else str(names[i]),
             "known": None if known is None else known[i]}
            for i in best
        ]
        out.append(entry)
    return out


def interest_report(run_dir: str | Path, out_dir: str | Path | None = None, top: int = 10, checkpoint: str = "best",
                    device: str = "auto", allow_data_change: bool = False) -> dict[str, Any]:
    """Write ``interests.md``, ``interests.json``, ``intensities.png`` and ``hard_interests.png``; return the numbers."""
    if top < 1:
        raise ConfigError(f"top must be >= 1, got {top}")
    run = load_run(run_dir, checkpoint, device, allow_data_change)
    check_interest_model(run.model, run.cfg.model_name)
    out = Path(out_dir) if out_dir is not None else Path(run_dir) / "interests"
    out.mkdir(parents=True, exist_ok=True)
    data, cases = run.data, run.split.test
    with torch.no_grad():
        probs = run.model.item_category_probs().float().cpu().numpy()
    k = probs.shape[1]
    item_cat = probs[1:].argmax(1)
    intensities, hard = user_interests(run.model, data, cases, run.cfg.data.max_len, run.device, run.cfg.eval.batch_size)
    column, known = known_categories(data.item_side, data.n_items)
    nmi = None
    if known is not None:
        labeled = np.array([v is not None for v in known[1:]])
        if labeled.any():
            learned, truth = item_cat[labeled], known[1:][labeled].astype(str)
            nmi = {"value": normalized_mutual_info(learned, truth), "random_baseline": random_baseline_nmi(learned, truth),
                   "known_column": column, "first_value_only": column in MULTI_VALUED,
                   "items": int(labeled.sum()), "known_categories": int(len(np.unique(truth)))}
    ranked = -np.sort(-intensities, axis=1)
    entropy = -(np.where(intensities > 0, intensities * np.log(np.clip(intensities, 1e-12, None)), 0.0)).sum(1)
    report = {
        "run_dir": str(run_dir), "model": run.cfg.model_name, "dataset": data.name, "n_interests": int(k),
        "n_items": int(data.n_items), "n_users": int(len(cases)), "nmi": nmi,
        "category_sizes": np.bincount(item_cat, minlength=k).tolist(),
        "categories": category_summaries(probs, data, known, top),
        "intensity": {
            "mean_by_category": intensities.mean(0).tolist(),
            "mean_by_rank": ranked.mean(0).tolist(),
            "top_quantiles": dict(zip(("p10", "p50", "p90"), np.quantile(ranked[:, 0], [0.1, 0.5, 0.9]).tolist())),
            "effective_interests_mean": float(np.exp(entropy).mean()),
        },
        "hard_interests": {
            "counts": {str(c): int(n) for c, n in enumerate(np.bincount(hard, minlength=k + 1)) if c > 0},
            "mean": float(hard.mean()), "median": float(np.median(hard)), "min": int(hard.min()), "max": int(hard.max()),
        },
    }
    _plot_intensities(ranked, intensities.mean(0), out / "intensities.png")
    _plot_hard(hard, k, out / "hard_interests.png")
    write_json_atomic(out / "interests.json", report)
    write_text_atomic(out / "interests.md", _markdown(report))
    return report


def _save_figure(fig: Any, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".png", dir=path.parent)
    os.close(fd)
    make_readable(tmp)
    try:
        fig.savefig(tmp, format="png", dpi=110)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _figure(width: float) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    return Figure(figsize=(width, 3.6), layout="constrained")


def _plot_intensities(ranked: np.ndarray, by_category: np.ndarray, path: Path) -> None:
    fig = _figure(10)
    left, right = fig.subplots(1, 2)
    left.boxplot([ranked[:, r] for r in range(ranked.shape[1])], showfliers=False)
    left.set(xlabel="interest rank (1 = strongest)", ylabel="intensity", title="Intensities by rank, per user")
    right.bar(np.arange(len(by_category)), by_category)
    right.set(xlabel="learned category", ylabel="mean intensity", title="Mean intensity per learned category",
              xticks=np.arange(len(by_category)))
    _save_figure(fig, path)


def _plot_hard(hard: np.ndarray, k: int, path: Path) -> None:
    fig = _figure(6)
    ax = fig.subplots()
    ax.bar(np.arange(1, k + 1), np.bincount(hard, minlength=k + 1)[1:])
    ax.set(xlabel="hard interests (distinct learned categories in the input)", ylabel="users",
           title="Hard interests per user", xticks=np.arange(1, k + 1))
    _save_figure(fig, path)


def _cell(value: Any) -> str:
    return "–" if value is None else str(value).replace("|", "\\|")


def _markdown(r: dict[str, Any]) -> str:
    lines = [f"# Learned interests: {r['model']} on {r['dataset']}", "",
             f"Run `{r['run_dir']}`: K = {r['n_interests']} learned categories, {r['n_items']} items, "
             f"{r['n_users']} users (test-time inputs). An item's learned category is its argmax of `a_i^j`.", ""]
    nmi = r["nmi"]
    if nmi is None:
        lines += ["**NMI:** not available (the data set has no known item categories).", ""]
    else:
        how = " (first value of each item's list)" if nmi["first_value_only"] else ""
        lines += [f"**NMI** between learned categories and known `{nmi['known_column']}`{how}: "
                  f"**{nmi['value']:.4f}** over {nmi['items']} items and {nmi['known_categories']} known categories; "
                  f"random assignment with the same sizes: {nmi['random_baseline']:.4f} "
                  f"(mean of {BASELINE_PERMUTATIONS} permutations).", ""]
    lines += ["## Learned categories", "", "| category | items | mean intensity | dominant known category (share) |",
              "|---:|---:|---:|---|"]
    for c, mean in zip(r["categories"], r["intensity"]["mean_by_category"]):
        dom = f"{_cell(c['dominant_known'])} ({c['dominant_share']:.0%})" if "dominant_known" in c else "–"
        lines.append(f"| {c['category']} | {c['size']} | {mean:.3f} | {dom} |")
    for c in r["categories"]:
        lines += ["", f"### Category {c['category']} ({c['size']} items)", "",
                  "| # | item | name | known category | a_i^j | interactions |", "|---:|---|---|---|---:|---:|"]
        for n, it in enumerate(c["top_items"], 1):
            lines.append(f"| {n} | {_cell(it['item'])} | {_cell(it['name'])} | {_cell(it['known'])} | "
                         f"{it['prob']:.3f} | {it['interactions']} |")
    inten, hard = r["intensity"], r["hard_interests"]
    q = inten["top_quantiles"]
    lines += ["", "## Interest intensities", "", "![intensities](intensities.png)", "",
              f"Strongest interest's share: p10 {q['p10']:.3f}, median {q['p50']:.3f}, p90 {q['p90']:.3f}. "
              f"Mean share by rank: {', '.join(f'{v:.3f}' for v in inten['mean_by_rank'])}. "
              f"Effective number of interests (exp entropy), mean: {inten['effective_interests_mean']:.2f}.", "",
              "## Hard interests per user", "", "![hard interests](hard_interests.png)", "",
              f"Distinct learned categories among a user's input items: mean {hard['mean']:.2f}, "
              f"median {hard['median']:g}, range {hard['min']}–{hard['max']}.", "",
              "| hard interests | users |", "|---:|---:|"]
    lines += [f"| {c} | {n} |" for c, n in hard["counts"].items()]
    return "\n".join(lines) + "\n"
