"""Keep the record of finished runs without their weights: config, data pin, epoch log, metrics and the cached
per-user test ranks, which is all `sigmarec compare` needs to rebuild a table and its significance marks.

    python benchmarks/archive_runs.py runs/table1-beauty benchmarks/results/table1-beauty

Copies every finished run (one with ``metrics.json``) of SRC into DEST (a few hundred KB each instead of tens of
MB with checkpoints), ranking it first where its test ranks are not cached yet. To rebuild the table elsewhere,
copy DEST back into the compare's ``--out`` folder: finished runs are reused and ranked from the cache.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from sigmarec.evaluate.paired import load_case_ranks, ranks_cache_path

RECORD = ("config.yaml", "data.json", "epochs.jsonl", "metrics.json")


def archive(src: Path, dest: Path, split: str = "test") -> list[str]:
    done = []
    for run in sorted(p for p in src.iterdir() if (p / "metrics.json").exists()):
        load_case_ranks(run, split)  # ranks (and caches) if the cache is missing or stale
        out = dest / run.name
        tmp = dest / f".{run.name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / "eval").mkdir(parents=True)
        for name in RECORD:
            if (run / name).exists():
                shutil.copy2(run / name, tmp / name)
        shutil.copy2(ranks_cache_path(run, split), tmp / "eval")
        log = src / f"{run.name}.log"
        if log.exists():  # beside the run, also whole or not at all
            shutil.copy2(log, tmp / log.name)
            (tmp / log.name).replace(dest / log.name)
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
        done.append(run.name)
    return done


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src", type=Path)
    ap.add_argument("dest", type=Path)
    args = ap.parse_args()
    args.dest.mkdir(parents=True, exist_ok=True)
    print("archived:", " ".join(archive(args.src, args.dest)) or "nothing finished")


if __name__ == "__main__":
    main()
