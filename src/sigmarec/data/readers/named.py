"""Readers of the published files of MovieLens and Amazon reviews."""

from __future__ import annotations

import ast
import json
import math
import re
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.json as pa_json

from sigmarec.data.sequences import DataError, RawData
from sigmarec.data.readers.parsing import _check_path, _fixed_fields, _frame, _iter_lines

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


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
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
    try:
        for column in ("reviewerID", "asin"):
            table.column(column).validate(full=True)  # bytes that are not UTF-8 inside a string
    except pa.ArrowInvalid:
        return None
    df = table.to_pandas()
    ids = pd.concat([df["reviewerID"], df["asin"]])
    suspect = ((ids.str.strip() != ids).any() or ids.str.contains(_CONTROL.pattern, regex=True).any()
               or (ids == "").any() or not np.isfinite(df[["overall", "unixReviewTime"]].to_numpy()).all())
    return None if suspect else df  # the line-by-line reader names the line of anything suspect


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
                if not math.isfinite(value):
                    raise DataError(f"{p} line {n}: expected a finite number for {key!r}, got {record.get(key)!r}")
            elif isinstance(value, (dict, list, bool)):
                raise DataError(f"{p} line {n}: expected a string id for {key!r}, got {value!r}")
            else:
                value = str(value).strip()
                if not value or _CONTROL.search(value):
                    raise DataError(f"{p} line {n}: expected a non-empty {_JSON_FIELDS[key]} id for {key!r} without line "
                                    f"breaks, tabs or control characters, got {record.get(key)!r}")
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


