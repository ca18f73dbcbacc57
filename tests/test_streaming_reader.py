"""The streaming reader of large delimited files (readers/streaming.py): the same interactions and the same
preprocessed sequences as the in-memory reader, read in many small blocks, and errors that name the line."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import sigmarec.data.readers.streaming as streaming
from sigmarec.data.preprocess import PreprocessConfig, preprocess
from sigmarec.data.readers.tables import read_delimited
from sigmarec.data.sequences import DataError


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    monkeypatch.setattr(streaming, "BLOCK_BYTES", 1 << 12)  # a few hundred lines a block: many blocks


def write(tmp_path, lines, name="log.csv"):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("dates", [False, True])
def test_same_interactions_and_sequences_as_the_in_memory_reader(tmp_path, dates):
    rng = np.random.default_rng(0)
    n = 4000
    users = [f"u{x}" for x in rng.integers(0, 200, n)]
    items = [(" " if x % 5 == 0 and k % 2 else "") + f"i{x}" for k, x in enumerate(rng.integers(0, 600, n))]  # " i5" = "i5"
    stamps = rng.integers(1_600_000_000, 1_600_100_000, n)
    when = pd.to_datetime(stamps, unit="s").strftime("%Y-%m-%d %H:%M:%S") if dates else stamps.astype(str)
    path = write(tmp_path, ["user,item,timestamp,rating"] + [f"{u},{i},{t},{r}" for u, i, t, r in
                                                             zip(users, items, when, rng.integers(1, 6, n))])
    a = read_delimited(path, rating_col="rating", stream=False)
    b = read_delimited(path, rating_col="rating", stream=True)
    assert isinstance(b.interactions["user"].dtype, pd.CategoricalDtype)  # codes, not a string per row
    for col in ("user", "item"):
        assert list(a.interactions[col]) == list(b.interactions[col].astype(str))
    for col in ("timestamp", "rating"):
        np.testing.assert_array_equal(a.interactions[col].to_numpy(), b.interactions[col].to_numpy())
    x = preprocess(a, PreprocessConfig(user_core=5, item_core=5))
    y = preprocess(b, PreprocessConfig(user_core=5, item_core=5))
    for field in ("items", "offsets", "user_ids", "item_ids", "timestamps"):
        np.testing.assert_array_equal(getattr(x, field), getattr(y, field), err_msg=field)


@pytest.mark.parametrize("bad,fragment", [("u7, ,5", "expected a non-empty item"),
                                          ("u7,i1,soon", "expected a finite number for timestamp"),
                                          ('u7,"i\tx",5', "control character")])
def test_errors_name_the_line(tmp_path, bad, fragment):
    lines = ["user,item,timestamp"] + [f"u{k % 30},i{k % 50},{k}" for k in range(700)]
    lines[601] = bad  # line 602 of the file
    path = write(tmp_path, lines)
    with pytest.raises(DataError, match=fragment) as err:
        read_delimited(path, stream=True)
    assert f"{path} line 602" in str(err.value)


def test_large_files_stream_by_default(tmp_path, monkeypatch):
    path = write(tmp_path, ["user,item"] + [f"u{k % 3},i{k}" for k in range(50)])
    monkeypatch.setattr("sigmarec.data.readers.tables.STREAM_BYTES", 100)
    assert isinstance(read_delimited(path, time_col=None).interactions["item"].dtype, pd.CategoricalDtype)
    monkeypatch.setattr("sigmarec.data.readers.tables.STREAM_BYTES", 10**9)
    assert not isinstance(read_delimited(path, time_col=None).interactions["item"].dtype, pd.CategoricalDtype)
