"""Property test: random damage to a small valid file of each format gives either a valid load or a DataError that
names the file (and a line that exists), never another exception and never ids cut wrongly (issue 17)."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sigmarec.config import DataConfig
from sigmarec.data.readers import read_file
from sigmarec.data.sequences import DataError

# format -> (file name, a small valid file, what may not appear inside an id)
VALID = {
    "s3rec": ("seq.txt", "1 10 11 12\n2 11 13\n3 10 12 13 14\n", re.compile(r"\s")),
    "csv": ("log.csv", "user,item,timestamp\nu1,i1,5\nu1,i2,7\nu2,i1,3\nu3,i3,9\n", None),
    "atomic": ("d.inter", "user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t10\t4\t100\n2\t11\t3\t50\n1\t11\t5\t90\n",
               re.compile(r"\t")),
    "ml-dat": ("ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n2::3::4::978300001\n", re.compile("::")),
    "ml-udata": ("u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n22\t377\t1\t878887116\n", re.compile(r"\t")),
    "amazon-json": ("r.json", '{"reviewerID": "A1", "asin": "B1", "overall": 5.0, "unixReviewTime": 1400000000}\n'
                              '{"reviewerID": "A2", "asin": "B2", "overall": 3, "unixReviewTime": 1400000001}\n', None),
    "amazon-csv": ("ratings_x.csv", "A1,B1,5.0,1400000000\nA2,B1,1.0,1400000001\nA1,B2,2.0,1400000002\n", None),
}

PIECES = ["\n", "\t", " ", ",", ";", ":", "::", '"', "'", "{", "}", "[", "]", "x", "7", "-1", ".", "e9", "nan", "\u00e9",
          "\r", "\x00", "\n\n"]

mutation = st.one_of(
    st.tuples(st.just("insert"), st.floats(0, 1), st.sampled_from(PIECES)),
    st.tuples(st.just("delete"), st.floats(0, 1), st.integers(1, 6)),
    st.tuples(st.just("drop line"), st.floats(0, 1), st.just(0)),
    st.tuples(st.just("repeat line"), st.floats(0, 1), st.just(0)),
    st.tuples(st.just("truncate"), st.floats(0, 1), st.just(0)),
    st.tuples(st.just("bad byte"), st.floats(0, 1), st.just(0)),
)


def mutate(text: str, ops: list[tuple]) -> bytes:
    data = text.encode("utf-8")
    for op, where, arg in ops:
        pos = int(where * len(data))
        if op == "insert":
            data = data[:pos] + arg.encode("utf-8") + data[pos:]
        elif op == "delete":
            data = data[:pos] + data[pos + arg:]
        elif op == "truncate":
            data = data[:pos]
        elif op == "bad byte":
            data = data[:pos] + b"\xff" + data[pos:]
        else:
            lines = data.split(b"\n")
            i = min(int(where * len(lines)), len(lines) - 1)
            lines = lines[:i] + lines[i + 1:] if op == "drop line" else lines[:i + 1] + lines[i:]
            data = b"\n".join(lines)
    return data


@pytest.mark.parametrize("fmt", sorted(VALID))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(mutation, min_size=1, max_size=3))
@example(ops=[("truncate", 0.25, 0), ("insert", 1.0, "-1")])  # ml-udata: a year-8812 date overflowed nanoseconds
def test_a_damaged_file_loads_validly_or_fails_naming_file_and_line(tmp_path, fmt, ops):
    name, text, forbidden = VALID[fmt]
    path = tmp_path / name
    raw = mutate(text, ops)
    path.write_bytes(raw)
    n_lines = raw.count(b"\n") + 1
    try:
        data = read_file(path, DataConfig(dataset=str(path), format=fmt))
    except DataError as exc:
        message = str(exc)
        assert str(path) in message, message
        for n in re.findall(r"line (\d+)", message):
            assert 1 <= int(n) <= n_lines, message
        return
    frame = data.interactions
    assert list(frame.columns) == ["user", "item", "timestamp", "rating"]
    body = raw.decode("utf-8", errors="replace")
    lines = [line for line in body.splitlines() if line.strip()]
    assert len(frame) <= (sum(len(line.split()) for line in lines) if fmt == "s3rec" else len(lines))
    for column in ("user", "item"):
        for value in frame[column]:
            assert isinstance(value, str) and value != "" and value == value.strip(), (column, repr(value))
            assert value.isprintable(), (column, repr(value))  # no line breaks, NULs or other control characters
            assert value in body, (column, value)  # an id is text of the file, not a product of the parse
            if forbidden is not None:
                assert not forbidden.search(value), (column, repr(value))  # not two fields run together
    for column in ("timestamp", "rating"):
        values = frame[column].to_numpy(dtype=np.float64)
        assert all(math.isnan(v) or math.isfinite(v) for v in values), (column, values)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=st.floats(0, 1), op=st.sampled_from(["flip", "truncate", "zero"]), xor=st.integers(1, 255))
def test_a_damaged_parquet_file_loads_validly_or_fails_naming_it(tmp_path, where, op, xor):
    import pandas as pd

    path = tmp_path / "log.parquet"
    pd.DataFrame({"user": ["u1", "u1", "u2"], "item": ["a", "b", "a"], "timestamp": [1.0, 2.0, 3.0]}).to_parquet(path)
    raw = bytearray(path.read_bytes())
    pos = min(int(where * len(raw)), len(raw) - 1)
    if op == "flip":
        raw[pos] ^= xor
    elif op == "zero":
        raw[pos:pos + 16] = bytes(len(raw[pos:pos + 16]))
    else:
        raw = raw[:pos]
    path.write_bytes(bytes(raw))
    try:
        frame = read_file(path, DataConfig(dataset=str(path), format="parquet")).interactions
    except DataError as exc:
        assert str(path) in str(exc), str(exc)
        return
    for column in ("user", "item"):
        assert all(isinstance(v, str) and v and v.isprintable() for v in frame[column]), frame[column].tolist()
    assert np.all(np.isfinite(frame["timestamp"].to_numpy()) | np.isnan(frame["timestamp"].to_numpy()))
