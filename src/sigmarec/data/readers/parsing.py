"""Shared parsing for the readers: paths, (gzipped) lines, pyarrow tables and typed columns, each
failure a :class:`DataError` naming the file, the 1-based line and what was expected there."""

from __future__ import annotations

import csv
import gzip
import io
import warnings
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv

from sigmarec.data.sequences import DataError

ATOMIC_TYPES = ("token", "float", "token_seq", "float_seq")
_FIELD_SEP = "\x1f"  # stands in for multi-character separators such as "::" before pyarrow parsing


def _check_path(path: str | Path) -> Path:
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: file not found")
    if not p.is_file():
        raise DataError(f"{p}: not a regular file")
    if p.stat().st_size == 0:
        raise DataError(f"{p}: empty file")
    return p


def _base_name(p: Path) -> str:
    """Lower-case file name without a trailing ``.gz``."""
    name = p.name.lower()
    return name[:-3] if name.endswith(".gz") else name


def _is_gz(p: Path) -> bool:
    return p.name.lower().endswith(".gz")


def _read_bytes(p: Path) -> bytes:
    try:
        if _is_gz(p):
            with gzip.open(p, "rb") as f:
                return f.read()
        return p.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{p}: cannot read ({exc})") from None


def _iter_lines(p: Path) -> Iterator[tuple[int, str]]:
    """Yield ``(1-based line number, line without end-of-line)``; bad UTF-8 names its line."""
    try:
        f = gzip.open(p, "rb") if _is_gz(p) else open(p, "rb")
        with f:
            for n, raw in enumerate(f, 1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise DataError(f"{p} line {n}: expected UTF-8 text ({exc.reason} at byte {exc.start})") from None
                if n == 1:
                    line = line.lstrip("\ufeff")
                yield n, line.rstrip("\r\n")
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{p}: cannot read ({exc})") from None


def _first_line(p: Path) -> tuple[int, str]:
    for n, line in _iter_lines(p):
        if line != "":
            return n, line
    raise DataError(f"{p}: empty file (only blank lines)")


def _data_line(p: Path, row: int, header_lines: int) -> int:
    """1-based line number of data record ``row`` (0-based), after ``header_lines`` non-blank lines."""
    k = -header_lines - 1
    for n, line in _iter_lines(p):
        if line == "":
            continue
        k += 1
        if k == row:
            return n
    return -1


class _Where:
    """Names a data record in error messages: ``path line N`` (text) or ``path row N`` (parquet)."""

    def __init__(self, p: Path, header_lines: int = 0, lines: bool = True) -> None:
        self.p, self.header_lines, self.lines = p, header_lines, lines

    def __call__(self, row: int) -> str:
        if not self.lines:
            return f"{self.p} row {row + 1}"
        return f"{self.p} line {_data_line(self.p, row, self.header_lines)}"


def _splitter(sep: str, quoting: bool) -> Callable[[str], list[str]]:
    if quoting and len(sep) == 1:
        return lambda line: next(csv.reader([line], delimiter=sep))
    return lambda line: line.split(sep)


def _scan_field_counts(
    p: Path, split: Callable[[str], list[str]], n_fields: int | None, header: bool, expected: str
) -> None:
    """Raise a DataError at the first record whose field count is off (``None``: header's count)."""
    seen_header = not header
    for n, line in _iter_lines(p):
        if line == "":
            continue
        try:
            fields = split(line)
        except csv.Error as exc:
            raise DataError(f"{p} line {n}: malformed line ({exc})") from None
        if not seen_header:
            seen_header = True
            if n_fields is None:
                n_fields = len(fields)
            continue
        if len(fields) != n_fields:
            raise DataError(f"{p} line {n}: expected {n_fields} fields {expected}, got {len(fields)}")


def _arrow_table(
    p: Path,
    sep: str,
    *,
    names: list[str] | None,
    columns: list[str],
    quoting: bool,
    expected: str,
    skip_rows: int = 0,
) -> pd.DataFrame:
    """Parse a delimited file into string columns ``columns`` (pyarrow), or raise a located DataError.

    ``names``: column names for a headerless file (``None``: the file has a header line).
    """
    source: str | io.BytesIO = str(p)
    delimiter = sep
    if len(sep) != 1:
        source, delimiter = io.BytesIO(_read_bytes(p).replace(sep.encode(), _FIELD_SEP.encode())), _FIELD_SEP
    read_opts = pa_csv.ReadOptions(column_names=names, skip_rows=skip_rows, block_size=1 << 24)
    parse_opts = pa_csv.ParseOptions(
        delimiter=delimiter, quote_char='"' if quoting else False, newlines_in_values=False, ignore_empty_lines=True
    )
    convert_opts = pa_csv.ConvertOptions(
        column_types={c: pa.string() for c in columns}, include_columns=columns, strings_can_be_null=False
    )
    try:
        table = pa_csv.read_csv(source, read_options=read_opts, parse_options=parse_opts, convert_options=convert_opts)
    except (pa.ArrowInvalid, pa.ArrowException, OSError, EOFError, zlib.error) as exc:
        header = names is None or skip_rows > 0
        _scan_field_counts(p, _splitter(sep, quoting), None if names is None else len(names), header, expected)
        for _ in _iter_lines(p):  # locates undecodable bytes, if that was the problem
            pass
        raise DataError(f"{p}: cannot parse as {expected} ({exc})") from None
    if table.num_rows == 0:
        raise DataError(f"{p}: no interaction lines (empty file or header only)")
    return table.to_pandas()


def _ids(col: pd.Series, what: str, where: _Where) -> pd.Series:
    """Ids as strings without surrounding whitespace (" u1" and "u1" are one user); empty ids and ids holding line
    breaks, tabs or other control characters (an unbalanced quote or a wrong separator) are refused."""
    col = col.astype(str).str.strip()
    bad = (col.str.len() == 0).to_numpy()
    if bad.any():
        raise DataError(f"{where(int(np.argmax(bad)))}: expected a non-empty {what} id")
    bad = col.str.contains(r"[\x00-\x1f\x7f]", regex=True).to_numpy()
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(f"{where(row)}: {what} id {col.iloc[row][:60]!r} holds a line break, tab or other control "
                        "character (an unbalanced quote, or the wrong separator?)")
    return col.reset_index(drop=True)


def _numbers(col: pd.Series, what: str, where: _Where) -> np.ndarray:
    if pd.api.types.is_bool_dtype(col.dtype):
        raise DataError(f"{where(0)}: expected numbers for {what}, got booleans")
    if pd.api.types.is_numeric_dtype(col.dtype):
        out = col.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        out = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(out)  # inf (e.g. "1e999") is no time or rating either
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(f"{where(row)}: expected a finite number for {what}, got {col.iloc[row]!r}")
    return out


def _timestamps(col: pd.Series, what: str, where: _Where) -> np.ndarray:
    """Unix seconds as float64: numbers pass through, date/time strings are parsed (naive = UTC).

    A column whose first value is a number is numeric throughout; otherwise it holds dates.
    """
    if pd.api.types.is_datetime64_any_dtype(col.dtype):
        dt = col.dt.tz_localize("UTC") if col.dt.tz is None else col.dt.tz_convert("UTC")
    elif pd.api.types.is_numeric_dtype(col.dtype) or len(col) == 0:
        return _numbers(col, what, where)
    else:
        strings = col.astype(str)
        first = pd.to_numeric(strings.iloc[:1], errors="coerce")
        if not np.isnan(first.iloc[0]):
            return _numbers(strings, f"{what} (unix time)", where)
        with warnings.catch_warnings():  # "could not infer format": the per-element fallback is what we want here
            warnings.simplefilter("ignore", UserWarning)
            dt = pd.to_datetime(strings, errors="coerce", utc=True)
        missing = dt.isna()
        if missing.any():
            dt[missing] = pd.to_datetime(strings[missing], errors="coerce", utc=True, format="mixed")
    bad = dt.isna().to_numpy()
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(f"{where(row)}: expected a date/time for {what}, got {col.iloc[row]!r}")
    # the epoch in the column's own unit: pandas parses far dates (year 8812) at "us", out of nanosecond range
    epoch = pd.Timestamp(0, tz="UTC").as_unit(getattr(dt.dt, "unit", "ns"))
    return ((dt - epoch) / pd.Timedelta(seconds=1)).to_numpy(dtype=np.float64)


def _frame(user: pd.Series, item: pd.Series, timestamp: np.ndarray | None, rating: np.ndarray | None) -> pd.DataFrame:
    n = len(user)
    nan = np.full(n, np.nan)
    return pd.DataFrame(
        {
            "user": user.astype(str).reset_index(drop=True),
            "item": item.astype(str).reset_index(drop=True),
            "timestamp": nan if timestamp is None else np.asarray(timestamp, dtype=np.float64),
            "rating": nan.copy() if rating is None else np.asarray(rating, dtype=np.float64),
        }
    )


def _frame_from(df: pd.DataFrame, where: _Where, user: str, item: str, timestamp: str | None = None,
                rating: str | None = None, ids=_ids, with_role: bool = False) -> pd.DataFrame:
    """The interaction frame from the named columns of a parsed table, each checked by ``ids`` /
    ``_timestamps`` / ``_numbers``; errors name the column, as ``role (column)`` with ``with_role``."""
    def name(role: str, column: str) -> str:
        return f"{role} ({column})" if with_role else column

    return _frame(
        ids(df[user], name("user", user), where),
        ids(df[item], name("item", item), where),
        None if timestamp is None else _timestamps(df[timestamp], name("timestamp", timestamp), where),
        None if rating is None else _numbers(df[rating], name("rating", rating), where),
    )


def _fixed_fields(p: Path, sep: str, quoting: bool, expected: str) -> pd.DataFrame:
    """Headerless ``user item rating timestamp`` files."""
    names = ["user", "item", "rating", "timestamp"]
    df = _arrow_table(p, sep, names=names, columns=names, quoting=quoting, expected=expected)
    return _frame_from(df, _Where(p), "user", "item", "timestamp", "rating")


