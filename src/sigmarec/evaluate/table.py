"""A results table of several models with several seeds each, as the papers print it (issue 18).

Each cell is the mean ± sample std over a model's runs of a metric on one split (each run's value is the mean over
users of the user's metric); a model with one run shows its value alone (no spread to show), and the legend says
how many runs each model has. Per metric column the best mean is bold and the second underlined; the last row is
the relative improvement of the focus model over the best other. The focus model is tested against every other
model per metric with the paired per-user tests of ``paired.py`` (per-user metric averaged over seeds, Wilcoxon
signed-rank and paired t), the Wilcoxon p-values Holm-corrected over the compared models, and the other model's
cell marked when the difference is significant. Markdown, CSV and LaTeX; learning curves as a PNG.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from sigmarec.config import ConfigError, MissingFileError, RunConfig, RunError
from sigmarec.evaluate.ranking import per_case_metric
from sigmarec.evaluate.paired import (
    _check_same_cases,
    _check_same_setup,
    _paired_stats,
    _user_means,
    check_one_config,
    load_case_ranks,
    normalize_metrics,
)
from sigmarec.runs import load_run_config

TABLE_METRICS = ("recall@20", "recall@40", "ndcg@20", "ndcg@40")
BETTER, WORSE = "†", "‡"  # marks on another model's cell: the focus model is significantly better / worse
SEED_SUFFIX = re.compile(r"[-_.](s|seed)\d+$")


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down, kept monotone, capped at 1), in the input order."""
    p = np.asarray(pvalues, dtype=float)
    order = np.argsort(p, kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate((len(p) - np.arange(len(p))) * p[order]))
    out = np.empty_like(adjusted)
    out[order] = adjusted
    return out.tolist()


def group_runs(run_dirs: Sequence[str | Path]) -> dict[str, list[Path]]:
    """Run directories grouped by model: the directory name without its seed suffix (``sasrec-office-s2`` ->
    ``sasrec-office``), in order of first appearance."""
    groups: dict[str, list[Path]] = {}
    for p in map(Path, run_dirs):
        if not p.is_dir():
            raise MissingFileError(f"{p}: no such run directory")
        groups.setdefault(SEED_SUFFIX.sub("", p.name), []).append(p)
    return groups


def check_group_configs(groups: dict[str, list[Path]], cfgs: dict[Path, RunConfig]) -> None:
    """A table row averages one configuration over seeds (``cfgs``: each run's, as loaded): see
    :func:`check_one_config`."""
    for name, runs in groups.items():
        check_one_config(runs, cfgs, f"row {name!r}", "; give them different directory names (a row is one name less "
                         "its seed suffix)")


def check_focus(focus: str, names: Sequence[str]) -> None:
    """``focus`` must name one of the table's models (checked before a compare trains, and again on the table)."""
    if focus not in names:
        raise ConfigError(f"--focus {focus!r} is not one of the models: {', '.join(names)}")


def build_table(groups: dict[str, list[Path]], metrics: Sequence[str] = TABLE_METRICS, split: str = "test",
                focus: str | None = None, alpha: float = 0.05, checkpoint: str = "best", device: str = "auto") -> dict[str, Any]:
    """Means, stds and per-run values of ``metrics`` for each group, and the focus group's paired tests against
    every other group (Holm over the other groups, per metric). ``focus`` defaults to the first group."""
    metrics = normalize_metrics(list(metrics))
    if not groups:
        raise ConfigError("a table needs at least one model's runs; got none")
    focus = focus or next(iter(groups))
    check_focus(focus, list(groups))
    dirs = [p for runs in groups.values() for p in runs]
    cfgs = {p: load_run_config(p) for p in dirs}
    _check_same_setup(cfgs)
    check_group_configs(groups, cfgs)
    loaded = {p: load_case_ranks(p, split, checkpoint, device) for p in dirs}
    _check_same_cases(loaded, split)
    per_user = {p: {m: _user_means(r.users, per_case_metric(r.ranks, m))[1] for m in metrics} for p, r in loaded.items()}
    rows: dict[str, dict[str, Any]] = {}
    for name, runs in groups.items():
        values = {m: [float(per_user[p][m].mean()) for p in runs] for m in metrics}
        rows[name] = {"runs": [str(p) for p in runs], "values": values,
                      "mean": {m: float(np.mean(v)) for m, v in values.items()},
                      "std": {m: float(np.std(v, ddof=1)) if len(v) > 1 else None for m, v in values.items()}}
    others = [n for n in groups if n != focus]
    tests: dict[str, dict[str, dict[str, Any]]] = {n: {} for n in others}
    for m in metrics:
        a = np.mean([per_user[p][m] for p in groups[focus]], axis=0)
        stats = {n: _paired_stats(a, np.mean([per_user[p][m] for p in groups[n]], axis=0)) for n in others}
        adjusted = holm([stats[n]["wilcoxon_p"] for n in others])
        adjusted_t = holm([stats[n]["t_p"] for n in others])
        for n, p_holm, t_holm in zip(others, adjusted, adjusted_t):
            s = stats[n]
            s["wilcoxon_p_holm"], s["t_p_holm"] = p_holm, t_holm
            s["mark"] = "" if not p_holm < alpha else (BETTER if s["diff"] > 0 else WORSE)
            tests[n][m] = s
    improvement = {}
    for m in metrics if others else ():  # one model: its seeds' mean and spread, nothing to test against
        best_other = max(others, key=lambda n: rows[n]["mean"][m])
        base = rows[best_other]["mean"][m]
        improvement[m] = {"over": best_other, "rel": (rows[focus]["mean"][m] - base) / base if base else math.nan,
                          "wilcoxon_p_holm": tests[best_other][m]["wilcoxon_p_holm"], "t_p_holm": tests[best_other][m]["t_p_holm"]}
    return {"split": split, "checkpoint": checkpoint, "metrics": metrics, "focus": focus, "alpha": alpha,
            "n_users": int(len(next(iter(per_user.values()))[metrics[0]])), "rows": rows, "tests": tests,
            "improvement": improvement}


def _ranks(table: dict[str, Any], metric: str) -> dict[str, int]:
    """1 for the best mean of ``metric``, 2 for the second (ties share), 0 otherwise."""
    means = sorted({round(r["mean"][metric], 10) for r in table["rows"].values()}, reverse=True)
    top = {v: i + 1 for i, v in enumerate(means[:2])}
    return {n: top.get(round(r["mean"][metric], 10), 0) for n, r in table["rows"].items()}


def _cells(table: dict[str, Any], bold: str, underline: str, mark: str) -> list[list[str]]:
    metrics = table["metrics"]
    ranks = {m: _ranks(table, m) for m in metrics}
    out = []
    for name, row in table["rows"].items():
        cells = [name]
        for m in metrics:
            std = row["std"][m]
            text = f"{row['mean'][m]:.4f}" + ("" if std is None else f" ± {std:.4f}")
            rank = ranks[m][name]
            text = bold.format(text) if rank == 1 else underline.format(text) if rank == 2 else text
            sign = table["tests"].get(name, {}).get(m, {}).get("mark", "")
            out_cell = text + (mark.format(sign) if sign else "")
            cells.append(out_cell)
        out.append(cells)
    if not table["improvement"]:
        return out
    imp = [f"Improv. ({table['focus']} vs best other)"]
    for m in metrics:
        i = table["improvement"][m]
        imp.append(f"{100 * i['rel']:+.2f}% (p {i['wilcoxon_p_holm']:.2g}, t {i['t_p_holm']:.2g})")
    return out + [imp]


def _run_counts(table: dict[str, Any]) -> str:
    """``3 runs each``, or per model when the counts differ (``contrastvae 3, sasrec 1``); one run has no std."""
    counts = {name: len(row["runs"]) for name, row in table["rows"].items()}
    if len(set(counts.values())) == 1:
        n = next(iter(counts.values()))
        return f"{n} run{'s' if n > 1 else ''} each" + ("" if n > 1 else ", no std")
    return "runs: " + ", ".join(f"{k} {v}" for k, v in counts.items()) + "; a single run's cell has no std"


def _legend(table: dict[str, Any]) -> str:
    if not table["tests"]:
        return (f"{table['split']} split, {table['n_users']} users, mean ± std over the model's runs ({_run_counts(table)}; "
                "one model: no tests).")
    return (f"{table['split']} split, {table['n_users']} users, mean ± std over each model's runs "
            f"({_run_counts(table)}). Bold: best, "
            f"underlined: second. {BETTER} / {WORSE}: {table['focus']} is significantly better / worse than this model "
            f"(per-user metric averaged over seeds, two-sided Wilcoxon signed-rank, Holm-corrected over the "
            f"{len(table['tests'])} compared models, alpha {table['alpha']}). Improv.: relative difference of "
            f"{table['focus']} to the best other model, with its Holm-corrected p (Wilcoxon, and t: the paired t-test's).")


def to_markdown(table: dict[str, Any]) -> str:
    head = ["model", *table["metrics"]]
    rows = _cells(table, "**{}**", "<u>{}</u>", "{}")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n\n" + _legend(table) + "\n"


def to_latex(table: dict[str, Any]) -> str:
    esc = lambda s: s.replace("_", r"\_").replace("%", r"\%").replace("±", r"$\pm$")  # noqa: E731
    rows = _cells(table, r"\textbf{{{}}}", r"\underline{{{}}}", "$^{{{}}}$")
    marks = {BETTER: r"\dagger", WORSE: r"\ddagger"}
    lines = [r"\begin{tabular}{l" + "c" * len(table["metrics"]) + "}", r"\toprule",
             " & ".join(["Model", *[esc(m) for m in table["metrics"]]]) + r" \\", r"\midrule"]
    for i, r in enumerate(rows):
        if i == len(rows) - 1 and table["improvement"]:
            lines.append(r"\midrule")
        cells = [esc(c) for c in r]
        for k, v in marks.items():
            cells = [c.replace(k, v) for c in cells]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def to_csv(table: dict[str, Any]) -> str:
    """One row per model: its number of runs, then mean and std (empty for one run) per metric, and the focus model's
    tests against it (Wilcoxon and paired-t p, each Holm-corrected over the compared models; the mark is the
    Wilcoxon's)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    metrics = table["metrics"]
    w.writerow(["model", "runs", *[f"{m}_{k}" for m in metrics for k in ("mean", "std", "wilcoxon_p_holm", "t_p_holm", "mark")]])
    for name, row in table["rows"].items():
        t = table["tests"].get(name, {})
        w.writerow([name, len(row["runs"]), *[v for m in metrics for v in (
            f"{row['mean'][m]:.6f}", "" if row["std"][m] is None else f"{row['std'][m]:.6f}",
            t[m]["wilcoxon_p_holm"] if m in t else "",
            t[m]["t_p_holm"] if m in t else "", t[m]["mark"] if m in t else "")]])
    return buf.getvalue()


def line_styles(n: int) -> list[tuple[str, str]]:
    """``n`` distinct (colour, line style) pairs: the ten tab10 colours, then the same colours dashed, dotted and
    dash-dotted, so that a table of more than ten models (SIGMA's Table 1 has twelve) never repeats a line."""
    colours = [f"C{i}" for i in range(10)]
    dashes = ["-", "--", ":", "-."]
    return [(colours[i % 10], dashes[(i // 10) % len(dashes)]) for i in range(n)]


def learning_curves(groups: dict[str, list[Path]], metric: str, path: str | Path) -> Path:
    """A PNG of the validation ``metric`` per epoch, one line per model (mean over its runs at each epoch that
    every run reached; runs stop at different epochs)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (name, runs), (colour, dash) in zip(groups.items(), line_styles(len(groups))):
        curves = []
        for p in runs:
            log = Path(p) / "epochs.jsonl"
            lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()] if log.exists() else []
            curves.append([(e["epoch"], e["valid"][metric]) for e in lines if metric in e.get("valid", {})])
        n = min((len(c) for c in curves), default=0)
        if n:
            epochs = [e for e, _ in curves[0][:n]]
            ax.plot(epochs, np.mean([[v for _, v in c[:n]] for c in curves], axis=0), label=f"{name} ({len(runs)})",
                    color=colour, linestyle=dash)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"validation {metric}")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
