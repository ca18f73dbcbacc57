"""Readers that turn interaction files into :class:`RawData`.

Every reader parses with pyarrow/pandas first (fast, strict) and, only when that fails, rescans
the file line by line to raise a :class:`DataError` that names the path, the 1-based line number
and what was expected there.  Blank lines are skipped everywhere; ``.gz`` files are read
transparently by the text readers.

``parsing`` holds the shared machinery, ``tables`` the generic formats (S3Rec lines, delimited
text, Parquet, RecBole atomic files), ``named`` the published MovieLens and Amazon files; this
module guesses a file's format and dispatches (``read_file``).
"""

from __future__ import annotations

import csv
from pathlib import Path

from sigmarec.config import DataConfig
from sigmarec.data.sequences import DataError, RawData
from sigmarec.data.readers.named import read_amazon_csv, read_amazon_json, read_movielens_dat, read_movielens_udata
from sigmarec.data.readers.parsing import _base_name, _check_path, _first_line, _splitter
from sigmarec.data.readers.tables import _read_parquet, read_atomic, read_delimited, read_s3rec

__all__ = [
    "FORMATS", "guess_format", "read_file", "read_amazon_csv", "read_amazon_json", "read_atomic", "read_delimited",
    "read_movielens_dat", "read_movielens_udata", "read_s3rec",
]

FORMATS = ("auto", "s3rec", "csv", "parquet", "atomic", "ml-dat", "ml-udata", "amazon-json", "amazon-csv")


def _looks_numeric(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def _guess_csv_kind(p: Path, cfg: DataConfig) -> str:
    base = _base_name(p)
    sep = cfg.sep or ("\t" if base.endswith(".tsv") else ",")
    n, line = _first_line(p)
    try:
        fields = [f.strip() for f in _splitter(sep, True)(line)]
    except csv.Error:
        fields = [f.strip() for f in line.split(sep)]
    if cfg.user_col in fields:
        return "csv"
    numeric = [f for f in fields[2:4] if _looks_numeric(f)]
    if len(fields) == 4 and len(numeric) == 2 and sep == ",":
        return "amazon-csv"
    if len(fields) >= 2 and not numeric:
        raise DataError(
            f"{p} line {n}: looks like a header but has no user column {cfg.user_col!r} "
            f"(columns: {', '.join(fields)}); set data.user_col/item_col/time_col, or data.format"
        )
    if sep != ",":
        raise DataError(
            f"{p} line {n}: expected a header line naming the user column {cfg.user_col!r}; "
            f"headerless files are read as amazon-csv only when comma-separated (set data.format)"
        )
    return "amazon-csv"


def guess_format(path: str | Path, cfg: DataConfig | None = None) -> str:
    """Guess a reader format from the file name (and, for .csv/.tsv, from its first line)."""
    cfg = cfg or DataConfig()
    p = Path(path)
    base = _base_name(p)
    if base.endswith(".inter"):
        return "atomic"
    if base.endswith(".dat"):
        return "ml-dat"
    if base == "u.data" or base.endswith(".data"):
        return "ml-udata"
    if base.endswith((".json", ".jsonl")):
        return "amazon-json"
    if base.endswith(".parquet"):
        return "parquet"
    if base.endswith((".csv", ".tsv")):
        return _guess_csv_kind(_check_path(p), cfg)
    if base.endswith(".txt"):
        return "s3rec"
    raise DataError(
        f"{p}: cannot guess the format from the file name; set data.format to one of {', '.join(FORMATS[1:])}"
    )


def read_file(path: str | Path, cfg: DataConfig | None = None) -> RawData:
    """Read ``path`` with the reader chosen by ``cfg.format`` (``auto``: guessed from the name)."""
    cfg = cfg or DataConfig()
    fmt = cfg.format
    if fmt not in FORMATS:
        raise DataError(f"unknown data format {fmt!r}; accepted formats: {', '.join(FORMATS)}")
    p = _check_path(path)
    if fmt == "auto":
        fmt = guess_format(p, cfg)
    if fmt == "s3rec":
        return read_s3rec(p)
    if fmt == "csv":
        return read_delimited(p, cfg.sep, cfg.user_col, cfg.item_col, cfg.time_col, cfg.rating_col)
    if fmt == "parquet":
        return _read_parquet(p, cfg.user_col, cfg.item_col, cfg.time_col, cfg.rating_col)
    if fmt == "atomic":
        return read_atomic(p)
    if fmt == "ml-dat":
        return read_movielens_dat(p)
    if fmt == "ml-udata":
        return read_movielens_udata(p)
    if fmt == "amazon-json":
        return read_amazon_json(p)
    return read_amazon_csv(p)
