"""Large delimited files read in blocks with bounded memory (issue 20): ids dictionary-encoded as they stream in,
so memory holds int32 codes per row and each distinct id once, never a Python string per interaction.

``read_delimited`` hands a file over here when it is larger than ``STREAM_BYTES``. The result is the same
``RawData`` as the in-memory reader gives (tested): the ``user`` and ``item`` columns are pandas categoricals whose
categories are the ids in order of first appearance, which ``preprocess`` factorises without building strings.
Ids are checked once per distinct value (empty, control characters) and a bad one is located by its first row.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from sigmarec.data.readers.parsing import _numbers, _timestamps, _Where
from sigmarec.data.sequences import DataError, RawData

STREAM_BYTES = 256 << 20  # files above this size are streamed
BLOCK_BYTES = 64 << 20  # bytes parsed per block


def _ids(column: pa.ChunkedArray, what: str, where: _Where) -> pd.Categorical:
    """A dictionary-encoded id column as a categorical of stripped ids in order of first appearance; the distinct
    values are checked as ``parsing._ids`` checks every row, and a bad one is named by its first row."""
    column = column.unify_dictionaries() if column.num_chunks > 1 else column
    codes = np.concatenate([c.indices.to_numpy(zero_copy_only=False) for c in column.chunks]) if column.num_chunks else \
        np.zeros(0, np.int32)
    values = pd.Index(column.chunk(0).dictionary.to_pylist() if column.num_chunks else [], dtype=object).astype(str)
    stripped = values.str.strip()
    for bad, why in ((stripped.str.len() == 0, f"expected a non-empty {what} id"),
                     (stripped.str.contains(r"[\x00-\x1f\x7f]", regex=True), None)):
        bad = np.asarray(bad)
        if bad.any():
            code = int(np.argmax(bad))
            row = int(np.argmax(codes == code))
            raise DataError(f"{where(row)}: " + (why or f"{what} id {stripped[code][:60]!r} holds a line break, tab or "
                                                        "other control character (an unbalanced quote, or the wrong separator?)"))
    # " u1" and "u1" are one id: merge the codes of values that strip alike, keeping first appearance
    if not stripped.equals(values):
        uniq, inverse = np.unique(np.asarray(stripped, dtype=object), return_inverse=True)
        codes, values = inverse[codes], pd.Index(uniq, dtype=object)
    else:
        values = stripped
    # first-appearance order (what pd.factorize(sort=False) gives the in-memory path), in linear time: written in
    # reverse, each code's slot ends holding its first row
    first = np.full(len(values), len(codes), dtype=np.int64)
    first[codes[::-1]] = np.arange(len(codes) - 1, -1, -1)
    present = np.flatnonzero(first < len(codes))
    order = present[np.argsort(first[present], kind="stable")]
    rank = np.empty(len(values), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return pd.Categorical.from_codes(rank[codes].astype(np.int32), pd.Index(np.asarray(values, dtype=object)[order], dtype=object))


def _fast_numbers(col: pa.Array, what: str, where: _Where, slow) -> np.ndarray:
    """A block's string column as float64 by Arrow's cast; a block holding anything else (dates, a bad value,
    inf) goes through the in-memory reader's ``slow`` parser, which converts dates and names a bad line."""
    try:
        out = pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        out = None
    if out is None or not np.isfinite(out).all():
        return slow(col.to_pandas(), what, where)
    return out


def read_delimited_stream(p: Path, sep: str, user_col: str, item_col: str, time_col: str | None,
                          rating_col: str | None, expected: str) -> RawData:
    """The interactions of a large CSV/TSV with a header line (single-character separator), block by block."""
    wanted = list(dict.fromkeys(c for c in (user_col, item_col, time_col, rating_col) if c is not None))
    ids = pa.dictionary(pa.int32(), pa.string())
    types = {user_col: ids, item_col: ids}
    for c in (time_col, rating_col):
        if c is not None and c not in types:
            types[c] = pa.string()  # parsed per block below: numbers stay numbers, date strings become seconds
    read_opts = pa_csv.ReadOptions(block_size=BLOCK_BYTES)
    parse_opts = pa_csv.ParseOptions(delimiter=sep, quote_char='"', newlines_in_values=False, ignore_empty_lines=True)
    convert_opts = pa_csv.ConvertOptions(column_types=types, include_columns=wanted, strings_can_be_null=False)
    where = _Where(p, header_lines=1)
    users, items, times, ratings, offset = [], [], [], [], 0
    try:
        reader = pa_csv.open_csv(str(p), read_options=read_opts, parse_options=parse_opts, convert_options=convert_opts)
        for batch in reader:
            n = batch.num_rows
            users.append(batch.column(user_col))
            items.append(batch.column(item_col))
            block_where = _Where(p, header_lines=1 + offset)
            if time_col is not None:
                times.append(_fast_numbers(batch.column(time_col), f"timestamp ({time_col})", block_where, _timestamps))
            if rating_col is not None:
                ratings.append(_fast_numbers(batch.column(rating_col), f"rating ({rating_col})", block_where, _numbers))
            offset += n
    except (pa.ArrowInvalid, pa.ArrowException, OSError, EOFError) as exc:
        raise DataError(f"{p}: cannot parse as {expected} ({exc})") from None
    if offset == 0:
        raise DataError(f"{p}: no interaction lines (empty file or header only)")
    nan = np.full(offset, np.nan)
    frame = pd.DataFrame({
        "user": _ids(pa.chunked_array(users, ids), f"user ({user_col})", where),
        "item": _ids(pa.chunked_array(items, ids), f"item ({item_col})", where),
        "timestamp": np.concatenate(times) if times else nan,
        "rating": np.concatenate(ratings) if ratings else nan.copy(),
    })
    return RawData(frame, source=str(p))
