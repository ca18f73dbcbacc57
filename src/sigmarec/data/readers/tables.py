"""Readers of generic table formats: S3Rec lines, delimited text with a header, Parquet and
RecBole atomic files."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from sigmarec.data.sequences import DataError, RawData
from sigmarec.data.readers.parsing import (
    ATOMIC_TYPES,
    _Where,
    _arrow_table,
    _base_name,
    _check_path,
    _first_line,
    _frame,
    _frame_from,
    _ids,
    _is_gz,
    _iter_lines,
    _splitter,
)
from sigmarec.data.readers.streaming import STREAM_BYTES, read_delimited_stream

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def read_s3rec(path: str | Path) -> RawData:
    """Read S3Rec-style ``user item item ...`` lines; timestamps are positions 0, 1, 2, ... per user."""
    p = _check_path(path)
    users: list[str] = []
    counts: list[int] = []
    items: list[str] = []
    for n, line in _iter_lines(p):
        parts = line.split()
        if not parts:
            continue
        odd = next((t for t in parts if "," in t or ";" in t), None)
        if odd is not None:  # S3Rec ids are whitespace-separated: a comma or semicolon means another format
            raise DataError(f"{p} line {n}: token {odd!r} contains a separator; S3Rec lines are whitespace-separated ids "
                            "(user item item ...). For a CSV or other table, set data.format (e.g. csv) and data.sep")
        odd = next((t for t in parts if _CONTROL.search(t)), None)
        if odd is not None:
            raise DataError(f"{p} line {n}: token {odd!r} holds a control character (a damaged or binary file?)")
        if len(parts) == 1:
            raise DataError(f"{p} line {n}: expected a user id followed by at least one item id, got only {parts[0]!r}")
        users.append(parts[0])
        counts.append(len(parts) - 1)
        items.extend(parts[1:])
    if not users:
        raise DataError(f"{p}: empty file (only blank lines)")
    user = pd.Series(np.repeat(np.array(users, dtype=object), counts), dtype=str)
    # position within the user's history; a user repeated on a later line continues counting
    position = user.groupby(user, sort=False).cumcount().to_numpy(dtype=np.float64)
    return RawData(_frame(user, pd.Series(items, dtype=str), position, None), source=str(p))


def _delimited_sep(p: Path, sep: str | None) -> str:
    if sep:
        return sep
    base = _base_name(p)
    if base.endswith(".tsv"):
        return "\t"
    if base.endswith(".csv"):
        return ","
    return "\t" if "\t" in _first_line(p)[1] else ","


def _missing_columns(p: Path, wanted: list[str], available: list[str], time_col: str | None = None,
                     rating_col: str | None = None) -> None:
    missing = [c for c in wanted if c not in available]
    if missing:
        hint = ""
        if time_col in missing:
            hint += f"; a file without times: set data.time_col=null (each user's rows are then taken in file order)"
        if rating_col in missing:
            hint += "; without ratings: data.rating_col=null"
        raise DataError(
            f"{p}: column(s) {', '.join(map(repr, missing))} not found; available columns: {', '.join(map(str, available))}"
            f"{hint}"
        )


def read_delimited(
    path: str | Path,
    sep: str | None = None,
    user_col: str = "user",
    item_col: str = "item",
    time_col: str | None = "timestamp",
    rating_col: str | None = None,
    stream: bool | None = None,
) -> RawData:
    """Read a CSV/TSV file with a header line (or a ``.parquet`` file) with the named columns. ``stream``: read in
    blocks with ids dictionary-encoded (``readers/streaming.py``); by default for uncompressed files over 256 MB
    with a one-character separator."""
    p = _check_path(path)
    if _base_name(p).endswith(".parquet"):
        return _read_parquet(p, user_col, item_col, time_col, rating_col)
    sep = _delimited_sep(p, sep)
    wanted = [c for c in (user_col, item_col, time_col, rating_col) if c is not None]
    wanted = list(dict.fromkeys(wanted))
    n, header = _first_line(p)
    try:
        header_fields = _splitter(sep, True)(header)
    except csv.Error as exc:
        raise DataError(f"{p} line {n}: malformed header ({exc})") from None
    _missing_columns(p, wanted, header_fields, time_col, rating_col)
    expected = f"(header: {sep.join(header_fields)})"
    if stream is None:
        stream = len(sep) == 1 and not _is_gz(p) and p.stat().st_size > STREAM_BYTES
    if stream:
        return read_delimited_stream(p, sep, user_col, item_col, time_col, rating_col, expected)
    df = _arrow_table(p, sep, names=None, columns=wanted, quoting=True, expected=expected)
    frame = _frame_from(df, _Where(p, header_lines=1), user_col, item_col, time_col, rating_col, with_role=True)
    return RawData(frame, source=str(p))


def _parquet_ids(col: pd.Series, what: str, where: _Where) -> pd.Series:
    missing = col.isna().to_numpy()
    if missing.any():
        raise DataError(f"{where(int(np.argmax(missing)))}: expected a {what} id, got null")
    if pd.api.types.is_float_dtype(col.dtype) and np.all(np.mod(col.to_numpy(), 1) == 0):
        col = col.astype(np.int64)  # ids stored as floats: 3.0 -> "3"
    return _ids(col.astype(str), what, where)


def _read_parquet(
    path: str | Path, user_col: str = "user", item_col: str = "item", time_col: str | None = "timestamp", rating_col: str | None = None
) -> RawData:
    p = _check_path(path)
    try:
        import pyarrow.parquet as pq

        available = list(pq.read_schema(p).names)
    except Exception as exc:  # noqa: BLE001 - as below
        raise DataError(f"{p}: not a readable parquet file ({type(exc).__name__}: {exc})") from None
    wanted = list(dict.fromkeys(c for c in (user_col, item_col, time_col, rating_col) if c is not None))
    _missing_columns(p, wanted, available, time_col, rating_col)
    try:
        df = pq.read_table(p, columns=wanted).to_pandas(ignore_metadata=True)
    except Exception as exc:  # noqa: BLE001 - a damaged file fails anywhere in pyarrow (bad UTF-8, thrift, metadata)
        raise DataError(f"{p}: not a readable parquet file ({type(exc).__name__}: {exc})") from None
    if len(df) == 0:
        raise DataError(f"{p}: no interaction rows")
    frame = _frame_from(df, _Where(p, lines=False), user_col, item_col, time_col, rating_col, ids=_parquet_ids,
                        with_role=True)
    return RawData(frame, source=str(p))


def _atomic_header(p: Path) -> list[tuple[str, str]]:
    n, line = _first_line(p)
    out = []
    for field in line.split("\t"):
        name, colon, typ = field.rpartition(":")
        if not colon or not name or typ not in ATOMIC_TYPES:
            raise DataError(
                f"{p} line {n}: expected tab-separated header fields name:type with type in "
                f"{', '.join(ATOMIC_TYPES)}, got {field!r}"
            )
        out.append((name, typ))
    names = [name for name, _ in out]
    dup = sorted({x for x in names if names.count(x) > 1})
    if dup:
        raise DataError(f"{p} line {n}: duplicate header field(s) {', '.join(dup)}")
    return out


def _atomic_side(p: Path, id_col: str) -> pd.DataFrame:
    """A RecBole ``.item``/``.user`` table: all columns as strings (floats as float64), indexed by id."""
    p = _check_path(p)
    header = _atomic_header(p)
    names = [name for name, _ in header]
    _missing_columns(p, [id_col], names)
    expected = f"(tab-separated {', '.join(names)})"
    df = _arrow_table(p, "\t", names=names, columns=names, quoting=False, expected=expected, skip_rows=1)
    where = _Where(p, header_lines=1)
    ids = _ids(df[id_col], id_col, where)
    dup = ids.duplicated().to_numpy()
    if dup.any():
        row = int(np.argmax(dup))
        raise DataError(f"{where(row)}: duplicate {id_col} {ids.iloc[row]!r} (ids must be unique)")
    for name, typ in header:
        if typ == "float" and name != id_col:
            blank = (df[name].str.strip() == "").to_numpy()
            values = pd.to_numeric(df[name].where(~blank), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            bad = np.isnan(values) & ~blank
            if bad.any():
                row = int(np.argmax(bad))
                raise DataError(f"{where(row)}: expected a number for {name}, got {df[name].iloc[row]!r}")
            df[name] = values
    df.index = pd.Index(ids.to_numpy(), dtype=str, name=id_col)
    return df.drop(columns=[id_col])


def read_atomic(path: str | Path) -> RawData:
    """Read a RecBole atomic ``.inter`` file, plus sibling ``.item``/``.user`` files as side tables."""
    p = _check_path(path)
    header = _atomic_header(p)
    names = [name for name, _ in header]
    _missing_columns(p, ["user_id", "item_id"], names)
    wanted = [c for c in ("user_id", "item_id", "timestamp", "rating") if c in names]
    expected = f"(tab-separated {', '.join(names)})"
    df = _arrow_table(p, "\t", names=names, columns=wanted, quoting=False, expected=expected, skip_rows=1)
    interactions = _frame_from(df, _Where(p, header_lines=1), "user_id", "item_id",
                               "timestamp" if "timestamp" in df else None, "rating" if "rating" in df else None)
    stem = p.name[: -len(".gz")] if _is_gz(p) else p.name
    stem = stem[: -len(".inter")] if stem.lower().endswith(".inter") else Path(stem).stem
    item_path, user_path = p.with_name(stem + ".item"), p.with_name(stem + ".user")
    item_side = _atomic_side(item_path, "item_id") if item_path.is_file() else None
    user_side = _atomic_side(user_path, "user_id") if user_path.is_file() else None
    return RawData(interactions, source=str(p), item_side=item_side, user_side=user_side)


