"""Readers that turn interaction files into :class:`RawData`.

Every reader parses with pyarrow/pandas first (fast, strict) and, only when that fails, rescans
the file line by line to raise a :class:`DataError` that names the path, the 1-based line number
and what was expected there.  Blank lines are skipped everywhere; ``.gz`` files are read
transparently by the text readers.
"""

from __future__ import annotations

import ast
import csv
import gzip
import io
import json
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json

from sigmarec.config import DataConfig
from sigmarec.data.sequences import DataError, RawData

FORMATS = ("auto", "s3rec", "csv", "parquet", "atomic", "ml-dat", "ml-udata", "amazon-json", "amazon-csv")
ATOMIC_TYPES = ("token", "float", "token_seq", "float_seq")
_FIELD_SEP = "\x1f"  # stands in for multi-character separators such as "::" before pyarrow parsing


# --------------------------------------------------------------------------------------------
# low-level helpers
# --------------------------------------------------------------------------------------------
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
    col = col.astype(str)
    bad = (col.str.len() == 0).to_numpy()
    if bad.any():
        raise DataError(f"{where(int(np.argmax(bad)))}: expected a non-empty {what} id")
    return col.reset_index(drop=True)


def _numbers(col: pd.Series, what: str, where: _Where) -> np.ndarray:
    if pd.api.types.is_bool_dtype(col.dtype):
        raise DataError(f"{where(0)}: expected numbers for {what}, got booleans")
    if pd.api.types.is_numeric_dtype(col.dtype):
        out = col.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        out = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = np.isnan(out)
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(f"{where(row)}: expected a number for {what}, got {col.iloc[row]!r}")
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
        dt = pd.to_datetime(strings, errors="coerce", utc=True)
        missing = dt.isna()
        if missing.any():
            dt[missing] = pd.to_datetime(strings[missing], errors="coerce", utc=True, format="mixed")
    bad = dt.isna().to_numpy()
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(f"{where(row)}: expected a date/time for {what}, got {col.iloc[row]!r}")
    return ((dt - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)).to_numpy(dtype=np.float64)


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


def _fixed_fields(p: Path, sep: str, quoting: bool, expected: str) -> pd.DataFrame:
    """Headerless ``user item rating timestamp`` files."""
    names = ["user", "item", "rating", "timestamp"]
    df = _arrow_table(p, sep, names=names, columns=names, quoting=quoting, expected=expected)
    where = _Where(p)
    return _frame(
        _ids(df["user"], "user", where),
        _ids(df["item"], "item", where),
        _timestamps(df["timestamp"], "timestamp", where),
        _numbers(df["rating"], "rating", where),
    )


# --------------------------------------------------------------------------------------------
# public readers
# --------------------------------------------------------------------------------------------
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


def _missing_columns(p: Path, wanted: list[str], available: list[str]) -> None:
    missing = [c for c in wanted if c not in available]
    if missing:
        raise DataError(
            f"{p}: column(s) {', '.join(map(repr, missing))} not found; available columns: {', '.join(map(str, available))}"
        )


def read_delimited(
    path: str | Path,
    sep: str | None = None,
    user_col: str = "user",
    item_col: str = "item",
    time_col: str | None = "timestamp",
    rating_col: str | None = None,
) -> RawData:
    """Read a CSV/TSV file with a header line (or a ``.parquet`` file) with the named columns."""
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
    _missing_columns(p, wanted, header_fields)
    expected = f"(header: {sep.join(header_fields)})"
    df = _arrow_table(p, sep, names=None, columns=wanted, quoting=True, expected=expected)
    where = _Where(p, header_lines=1)
    return RawData(
        _frame(
            _ids(df[user_col], f"user ({user_col})", where),
            _ids(df[item_col], f"item ({item_col})", where),
            None if time_col is None else _timestamps(df[time_col], f"timestamp ({time_col})", where),
            None if rating_col is None else _numbers(df[rating_col], f"rating ({rating_col})", where),
        ),
        source=str(p),
    )


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
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{p}: not a readable parquet file ({exc})") from None
    wanted = list(dict.fromkeys(c for c in (user_col, item_col, time_col, rating_col) if c is not None))
    _missing_columns(p, wanted, available)
    try:
        df = pd.read_parquet(p, columns=wanted)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{p}: not a readable parquet file ({exc})") from None
    if len(df) == 0:
        raise DataError(f"{p}: no interaction rows")
    where = _Where(p, lines=False)
    return RawData(
        _frame(
            _parquet_ids(df[user_col], f"user ({user_col})", where),
            _parquet_ids(df[item_col], f"item ({item_col})", where),
            None if time_col is None else _timestamps(df[time_col], f"timestamp ({time_col})", where),
            None if rating_col is None else _numbers(df[rating_col], f"rating ({rating_col})", where),
        ),
        source=str(p),
    )


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
    where = _Where(p, header_lines=1)
    interactions = _frame(
        _ids(df["user_id"], "user_id", where),
        _ids(df["item_id"], "item_id", where),
        _timestamps(df["timestamp"], "timestamp", where) if "timestamp" in df else None,
        _numbers(df["rating"], "rating", where) if "rating" in df else None,
    )
    stem = p.name[: -len(".gz")] if _is_gz(p) else p.name
    stem = stem[: -len(".inter")] if stem.lower().endswith(".inter") else Path(stem).stem
    item_path, user_path = p.with_name(stem + ".item"), p.with_name(stem + ".user")
    item_side = _atomic_side(item_path, "item_id") if item_path.is_file() else None
    user_side = _atomic_side(user_path, "user_id") if user_path.is_file() else None
    return RawData(interactions, source=str(p), item_side=item_side, user_side=user_side)


def read_movielens_dat(path: str | Path) -> RawData:
    """Read MovieLens-1M ``ratings.dat``: ``user::item::rating::timestamp``."""
    p = _check_path(path)
    return RawData(_fixed_fields(p, "::", False, "user::item::rating::timestamp"), source=str(p))


# the 19 genre flags of MovieLens-100K ``u.item``, in column order
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama", "Fantasy",
    "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)


def read_movielens_uitem(path: str | Path) -> pd.DataFrame:
    """MovieLens-100K ``u.item`` (``|``-separated, Latin-1) as a side table indexed by item id.

    Columns as in the RecBole ``ml-100k.item`` file: ``movie_title``, ``release_year`` and
    ``class``, the item's genres (flags set to 1) space-separated in ``u.item`` column order.
    """
    p = _check_path(path)
    try:
        text = p.read_bytes().decode("latin-1")
    except OSError as exc:
        raise DataError(f"{p}: cannot read ({exc})") from None
    n_fields = 5 + len(ML100K_GENRES)
    rows: dict[str, list[str]] = {"item_id": [], "movie_title": [], "release_year": [], "class": []}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("|")
        flags = fields[5:]
        if len(fields) != n_fields or any(f not in ("0", "1") for f in flags):
            raise DataError(f"{p} line {n}: expected {n_fields} |-separated fields (id|title|date|video date|url and "
                            f"{len(ML100K_GENRES)} genre flags 0/1)")
        if not fields[0]:
            raise DataError(f"{p} line {n}: expected a non-empty item id")
        rows["item_id"].append(fields[0])
        rows["movie_title"].append(fields[1])
        rows["release_year"].append(fields[2][-4:])
        rows["class"].append(" ".join(g for g, f in zip(ML100K_GENRES, flags) if f == "1"))
    if not rows["item_id"]:
        raise DataError(f"{p}: empty file (only blank lines)")
    return pd.DataFrame(rows).set_index("item_id")


def read_movielens_udata(path: str | Path) -> RawData:
    """Read MovieLens-100K ``u.data``: tab-separated ``user item rating timestamp``, no header.

    A sibling ``u.item`` becomes the item side table (titles and genres, see ``read_movielens_uitem``).
    """
    p = _check_path(path)
    item_path = p.with_name("u.item")
    item_side = read_movielens_uitem(item_path) if item_path.is_file() else None
    return RawData(_fixed_fields(p, "\t", False, "user<TAB>item<TAB>rating<TAB>timestamp"), source=str(p), item_side=item_side)


def read_amazon_csv(path: str | Path) -> RawData:
    """Read an Amazon ratings CSV without header: ``user,item,rating,timestamp``."""
    p = _check_path(path)
    return RawData(_fixed_fields(p, ",", True, "user,item,rating,timestamp"), source=str(p))


_JSON_FIELDS = {"reviewerID": "user", "asin": "item", "overall": "rating", "unixReviewTime": "timestamp"}


def _amazon_json_fast(p: Path) -> pd.DataFrame | None:
    schema = pa.schema(
        [("reviewerID", pa.string()), ("asin", pa.string()), ("overall", pa.float64()), ("unixReviewTime", pa.float64())]
    )
    try:
        with pa.input_stream(str(p), compression="detect") as stream:
            table = pa_json.read_json(
                stream,
                read_options=pa_json.ReadOptions(block_size=1 << 24),
                parse_options=pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore"),
            )
    except (pa.ArrowException, OSError, EOFError, zlib.error):
        return None
    if table.num_rows == 0 or any(table.column(c).null_count for c in _JSON_FIELDS):
        return None
    return table.to_pandas()


def _amazon_json_slow(p: Path) -> pd.DataFrame:
    """Line by line: strict JSON, else a Python dict literal (old Amazon dumps)."""
    cols: dict[str, list] = {k: [] for k in _JSON_FIELDS}
    for n, line in _iter_lines(p):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as json_exc:
            try:
                record = ast.literal_eval(line)
            except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
                raise DataError(f"{p} line {n}: expected a JSON object (or Python dict literal): {json_exc}") from None
        if not isinstance(record, dict):
            raise DataError(f"{p} line {n}: expected a JSON object, got {type(record).__name__}")
        for key, values in cols.items():
            value = record.get(key)
            if value is None or value == "":
                raise DataError(f"{p} line {n}: expected field {key!r} ({_JSON_FIELDS[key]})")
            if key in ("overall", "unixReviewTime"):
                try:
                    value = float(value)
                except (TypeError, ValueError):
                    raise DataError(f"{p} line {n}: expected a number for {key!r}, got {value!r}") from None
                if value != value:
                    raise DataError(f"{p} line {n}: expected a number for {key!r}, got {value!r}")
            elif isinstance(value, (dict, list, bool)):
                raise DataError(f"{p} line {n}: expected a string id for {key!r}, got {value!r}")
            else:
                value = str(value)
            values.append(value)
    if not cols["asin"]:
        raise DataError(f"{p}: empty file (only blank lines)")
    return pd.DataFrame(cols)


def read_amazon_json(path: str | Path) -> RawData:
    """Read Amazon review JSON lines (``.json``/``.jsonl``, optionally ``.gz``), strict or dict-literal style."""
    p = _check_path(path)
    df = _amazon_json_fast(p)
    if df is None:
        df = _amazon_json_slow(p)
    return RawData(
        _frame(
            df["reviewerID"].astype(str),
            df["asin"].astype(str),
            df["unixReviewTime"].to_numpy(dtype=np.float64),
            df["overall"].to_numpy(dtype=np.float64),
        ),
        source=str(p),
    )


# --------------------------------------------------------------------------------------------
# dispatch
# --------------------------------------------------------------------------------------------
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
