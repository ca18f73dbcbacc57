"""Readers: good small files, malformed files (errors name file and line), dispatch, real files."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sigmarec.config import DataConfig
from sigmarec.data.preprocess import PreprocessConfig, preprocess
from sigmarec.data.readers import (
    FORMATS,
    guess_format,
    read_amazon_csv,
    read_amazon_json,
    read_atomic,
    read_delimited,
    read_file,
    read_movielens_dat,
    read_movielens_udata,
    read_s3rec,
)
from sigmarec.data.sequences import DataError

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    if name.endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def raises_at(path: Path, line: int | None, *fragments: str):
    """Context manager: DataError naming ``path`` (and ``line N``) plus each fragment."""
    pattern = re.escape(str(path)) + (rf" line {line}\b" if line is not None else "")
    ctx = pytest.raises(DataError, match=pattern)

    class _Check:
        def __enter__(self):
            self.info = ctx.__enter__()
            return self.info

        def __exit__(self, *exc):
            result = ctx.__exit__(*exc)
            for frag in fragments:
                assert frag in str(self.info.value), (frag, str(self.info.value))
            return result

    return _Check()


def check_frame(df: pd.DataFrame) -> None:
    assert list(df.columns) == ["user", "item", "timestamp", "rating"]
    assert df["timestamp"].dtype == np.float64 and df["rating"].dtype == np.float64
    assert all(isinstance(v, str) for v in df["user"]) and all(isinstance(v, str) for v in df["item"])


# ------------------------------------------------------------------------------------ common
@pytest.mark.parametrize(
    "reader", [read_s3rec, read_delimited, read_atomic, read_movielens_dat, read_movielens_udata, read_amazon_json, read_amazon_csv]
)
def test_missing_and_empty_files(tmp_path, reader):
    missing = tmp_path / "nope.dat"
    with raises_at(missing, None, "not found"):
        reader(missing)
    empty = write(tmp_path, "empty.csv", "")
    with raises_at(empty, None, "empty"):
        reader(empty)


# ------------------------------------------------------------------------------------ s3rec
def test_s3rec_good(tmp_path):
    path = write(tmp_path, "seq.txt", "7 0 5 3\n\n8 5 0\n")
    df = read_s3rec(path).interactions
    check_frame(df)
    assert df["user"].tolist() == ["7", "7", "7", "8", "8"]
    assert df["item"].tolist() == ["0", "5", "3", "5", "0"]
    assert df["timestamp"].tolist() == [0, 1, 2, 0, 1]
    assert df["rating"].isna().all()


def test_s3rec_user_without_items(tmp_path):
    path = write(tmp_path, "seq.txt", "1 2 3\n\n2\n3 4\n")
    with raises_at(path, 3, "at least one item"):
        read_s3rec(path)


@pytest.mark.parametrize("line", ["13\t14,15 ;; 16", "13 14;15", "u1,i1,5"])
def test_s3rec_tokens_with_separators_are_a_wrong_format(tmp_path, line):
    path = write(tmp_path, "seq.txt", f"1 2 3\n{line}\n")
    with raises_at(path, 2, "whitespace-separated"):
        read_s3rec(path)


def test_s3rec_blank_only(tmp_path):
    path = write(tmp_path, "seq.txt", "\n\n")
    with raises_at(path, None, "empty"):
        read_s3rec(path)


def test_bad_utf8_names_line(tmp_path):
    path = tmp_path / "seq.txt"
    path.write_bytes(b"1 2 3\n2 \xff\xfe 4\n")
    with raises_at(path, 2, "UTF-8"):
        read_s3rec(path)


# ------------------------------------------------------------------------------------ delimited
def test_csv_good(tmp_path):
    path = write(tmp_path, "x.csv", 'uid,iid,ts,r,extra\na,b,10,4.5,z\n\n"c,d",b,5,3,z\n')
    df = read_delimited(path, user_col="uid", item_col="iid", time_col="ts", rating_col="r").interactions
    check_frame(df)
    assert df["user"].tolist() == ["a", "c,d"]
    assert df["timestamp"].tolist() == [10.0, 5.0]
    assert df["rating"].tolist() == [4.5, 3.0]


def test_tsv_sep_guess_and_no_time(tmp_path):
    path = write(tmp_path, "x.tsv", "user\titem\n1\t2\n1\t3\n")
    df = read_delimited(path, time_col=None).interactions
    assert df["item"].tolist() == ["2", "3"]
    assert df["timestamp"].isna().all() and df["rating"].isna().all()


def test_csv_explicit_sep_and_gz(tmp_path):
    path = write(tmp_path, "x.txt.gz", "user;item;timestamp\n1;2;3\n")
    df = read_delimited(path, sep=";").interactions
    assert df.iloc[0].tolist()[:3] == ["1", "2", 3.0]


def test_csv_datetimes(tmp_path):
    path = write(tmp_path, "x.csv", "user,item,timestamp\n1,2,2020-01-01 00:00:00\n1,3,2020-01-01 00:00:10\n")
    df = read_delimited(path).interactions
    assert df["timestamp"].tolist() == [1577836800.0, 1577836810.0]


def test_csv_bad_datetime_names_line(tmp_path):
    path = write(tmp_path, "x.csv", "user,item,timestamp\n1,2,2020-01-01\n\n1,3,not a date\n")
    with raises_at(path, 4, "date/time", "not a date"):
        read_delimited(path)


def test_csv_bad_number_names_line(tmp_path):
    path = write(tmp_path, "x.csv", "user,item,timestamp\n1,2,10\n1,3,11\n1,4,eleven\n")
    with raises_at(path, 4, "finite number"):
        read_delimited(path)


def test_csv_missing_column_lists_available(tmp_path):
    path = write(tmp_path, "x.csv", "u,i,t\n1,2,3\n")
    with raises_at(path, None, "'user'", "available columns: u, i, t"):
        read_delimited(path)


@pytest.mark.parametrize("bad,line", [("1,2\n", 3), ("1,2,3,4\n", 3), ("   \n", 3)])
def test_csv_field_count_names_line(tmp_path, bad, line):
    path = write(tmp_path, "x.csv", "user,item,timestamp\n1,2,3\n" + bad + "5,6,7\n")
    with raises_at(path, line, "expected 3 fields", "got"):
        read_delimited(path)


def test_csv_empty_id_names_line(tmp_path):
    path = write(tmp_path, "x.csv", "user,item,timestamp\n1,2,3\n\n\n,2,3\n")
    with raises_at(path, 5, "user"):
        read_delimited(path)


def test_csv_header_only(tmp_path):
    path = write(tmp_path, "x.csv", "user,item,timestamp\n")
    with raises_at(path, None, "no interaction"):
        read_delimited(path)


def test_parquet(tmp_path):
    path = tmp_path / "x.parquet"
    pd.DataFrame(
        {"u": [1, 2], "i": [3.0, 4.0], "t": pd.to_datetime(["2020-01-01", "2020-01-02"]), "r": [1, 5]}
    ).to_parquet(path)
    df = read_delimited(path, user_col="u", item_col="i", time_col="t", rating_col="r").interactions
    check_frame(df)
    assert df["user"].tolist() == ["1", "2"] and df["item"].tolist() == ["3", "4"]
    assert df["timestamp"].tolist() == [1577836800.0, 1577923200.0]
    with raises_at(path, None, "available columns: u, i, t, r"):
        read_delimited(path)
    cfg = DataConfig(format="parquet", user_col="u", item_col="i", time_col=None)
    assert read_file(path, cfg).interactions["timestamp"].isna().all()


# ------------------------------------------------------------------------------------ atomic
INTER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t10\t4\t100\n2\t11\t3\t50\n1\t11\t5\t90\n"
ITEM = "item_id:token\ttitle:token_seq\tyear:float\tclass:token_seq\n10\tToy Story\t1995\tAnimation Comedy\n11\tHeat\t\tAction\n"
USER = "user_id:token\tage:token\tgender:token\n1\t24\tM\n2\t53\tF\n"


def test_atomic_with_side_tables(tmp_path):
    path = write(tmp_path, "d.inter", INTER)
    write(tmp_path, "d.item", ITEM)
    write(tmp_path, "d.user", USER)
    raw = read_atomic(path)
    check_frame(raw.interactions)
    assert raw.interactions["item"].tolist() == ["10", "11", "11"]
    assert raw.interactions["timestamp"].tolist() == [100.0, 50.0, 90.0]
    assert raw.interactions["rating"].tolist() == [4.0, 3.0, 5.0]
    side = raw.item_side
    assert list(side.columns) == ["title", "year", "class"]
    assert list(side.index) == ["10", "11"]
    assert side.loc["10", "class"] == "Animation Comedy" and side.loc["10", "title"] == "Toy Story"
    assert side.loc["10", "year"] == 1995.0 and np.isnan(side.loc["11", "year"])
    assert raw.user_side.loc["2", "gender"] == "F" and list(raw.user_side.columns) == ["age", "gender"]


def test_atomic_without_sides_and_optional_columns(tmp_path):
    path = write(tmp_path, "d.inter", "item_id:token\tuser_id:token\n5\t6\n")
    raw = read_atomic(path)
    assert raw.item_side is None and raw.user_side is None
    assert raw.interactions["user"].tolist() == ["6"] and raw.interactions["timestamp"].isna().all()


def test_atomic_errors(tmp_path):
    path = write(tmp_path, "a.inter", "user_id:token\tthing:token\n1\t2\n")
    with raises_at(path, None, "'item_id'", "available columns: user_id, thing"):
        read_atomic(path)
    path = write(tmp_path, "b.inter", "user_id:token\titem_id:bogus\n1\t2\n")
    with raises_at(path, 1, "name:type"):
        read_atomic(path)
    path = write(tmp_path, "c.inter", "user_id:token\titem_id:token\trating:float\n1\t2\t3\n1\t2\n")
    with raises_at(path, 3, "expected 3 fields"):
        read_atomic(path)
    path = write(tmp_path, "d.inter", "user_id:token\titem_id:token\trating:float\n1\t2\t3\n\n1\t2\tgood\n")
    with raises_at(path, 4, "number for rating"):
        read_atomic(path)


def test_atomic_bad_side_table_names_its_file(tmp_path):
    path = write(tmp_path, "d.inter", INTER)
    item = write(tmp_path, "d.item", ITEM + "12\tonly two\n")
    with raises_at(item, 4, "expected 4 fields"):
        read_atomic(path)
    item = write(tmp_path, "d.item", ITEM + "10\tdup\t1\tx\n")
    with raises_at(item, 4, "duplicate item_id"):
        read_atomic(path)


# ------------------------------------------------------------------------------------ movielens
def test_ml_dat(tmp_path):
    path = write(tmp_path, "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n")
    df = read_movielens_dat(path).interactions
    check_frame(df)
    assert df["item"].tolist() == ["1193", "661"] and df["rating"].tolist() == [5.0, 3.0]
    assert df["timestamp"].tolist() == [978300760.0, 978302109.0]


def test_ml_dat_errors(tmp_path):
    lines = [f"1::{i}::5::97830076{i}" for i in range(16)]
    path = write(tmp_path, "ratings.dat", "\n".join(lines) + "\n2::3::4\n")
    with raises_at(path, 17, "expected 4 fields user::item::rating::timestamp, got 3"):
        read_movielens_dat(path)
    path = write(tmp_path, "ratings.dat", "1::2::5::9\n1::3::five::9\n")
    with raises_at(path, 2, "number for rating", "'five'"):
        read_movielens_dat(path)


def test_ml_udata(tmp_path):
    path = write(tmp_path, "u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n")
    df = read_movielens_udata(path).interactions
    check_frame(df)
    assert df["user"].tolist() == ["196", "186"]
    path = write(tmp_path, "u.data", "196\t242\t3\t881250949\n186 302 3 891717742\n")
    with raises_at(path, 2, "expected 4 fields"):
        read_movielens_udata(path)


def test_ml_udata_reads_uitem_genres(tmp_path):
    flags = lambda *on: "|".join("1" if i in on else "0" for i in range(19))  # noqa: E731
    (tmp_path / "u.item").write_bytes(
        f"242|Kolya (1996)|24-Jan-1997||http://x|{flags(5)}\n"
        f"302|L.A. Confidential (1997)|01-Jan-1997||http://y|{flags(6, 10, 13, 16)}\n"
        f"7|Cr\u00e8me (1995)|01-Jan-1995||http://z|{flags(0)}\n".encode("latin-1")
    )
    path = write(tmp_path, "u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n")
    side = read_movielens_udata(path).item_side
    assert list(side.columns) == ["movie_title", "release_year", "class"]
    assert side.loc["302", "class"] == "Crime Film-Noir Mystery Thriller"  # u.item column order: first = Crime
    assert side.loc["242", "class"] == "Comedy" and side.loc["242", "release_year"] == "1997"
    assert side.loc["7", "movie_title"] == "Cr\u00e8me (1995)" and side.loc["7", "class"] == "unknown"
    (tmp_path / "u.item").write_text("1|Toy Story|01-Jan-1995||url|0|1\n")
    with raises_at(tmp_path / "u.item", 1, "expected 24 |-separated fields"):
        read_movielens_udata(path)


# ------------------------------------------------------------------------------------ amazon
JSON_LINES = [
    '{"reviewerID": "A1", "asin": "B1", "overall": 5.0, "unixReviewTime": 1400000000, "style": {"x": 1}}',
    '{"reviewerID": "A2", "asin": "B2", "overall": 3, "unixReviewTime": 1400000001, "helpful": [1, 2]}',
]


@pytest.mark.parametrize("name", ["r.json", "r.jsonl", "r.json.gz"])
def test_amazon_json_strict(tmp_path, name):
    path = write(tmp_path, name, "\n".join(JSON_LINES) + "\n\n")
    df = read_amazon_json(path).interactions
    check_frame(df)
    assert df["user"].tolist() == ["A1", "A2"] and df["item"].tolist() == ["B1", "B2"]
    assert df["rating"].tolist() == [5.0, 3.0] and df["timestamp"].tolist() == [1400000000.0, 1400000001.0]


def test_amazon_json_dict_literals(tmp_path):
    old = "{'reviewerID': 'A3', 'asin': 'B3', 'helpful': [0, 0], 'overall': 4.0, 'unixReviewTime': 1400000002, 'x': True}"
    path = write(tmp_path, "old.json.gz", "\n".join(JSON_LINES + [old]) + "\n")
    df = read_amazon_json(path).interactions
    assert df["user"].tolist() == ["A1", "A2", "A3"] and df["rating"].tolist() == [5.0, 3.0, 4.0]


def test_amazon_json_errors(tmp_path):
    path = write(tmp_path, "r.json", "\n".join(JSON_LINES) + "\n\n{not json at all\n")
    with raises_at(path, 4, "JSON"):
        read_amazon_json(path)
    path = write(tmp_path, "r.json", JSON_LINES[0] + '\n{"reviewerID": "A", "asin": "B", "unixReviewTime": 1}\n')
    with raises_at(path, 2, "'overall'"):
        read_amazon_json(path)
    path = write(tmp_path, "r.json", JSON_LINES[0] + '\n[1, 2]\n')
    with raises_at(path, 2, "JSON object"):
        read_amazon_json(path)


def test_amazon_csv(tmp_path):
    path = write(tmp_path, "ratings_Beauty.csv", "A1,B1,5.0,1400000000\nA2,B1,1.0,1400000001\n")
    df = read_amazon_csv(path).interactions
    check_frame(df)
    assert df["user"].tolist() == ["A1", "A2"] and df["rating"].tolist() == [5.0, 1.0]
    path = write(tmp_path, "bad.csv", "A1,B1,5.0,1400000000\nA2,B1,1.0\n")
    with raises_at(path, 2, "expected 4 fields user,item,rating,timestamp, got 3"):
        read_amazon_csv(path)


# ------------------------------------------------------------------------------------ dispatch
def test_read_file_auto_dispatch(tmp_path):
    sub = tmp_path / "sub"
    sub.mkdir()
    cases = {
        "seq.txt": ("1 2 3\n", "s3rec"),
        "d.inter": (INTER, "atomic"),
        "ratings.dat": ("1::2::3::4\n", "ml-dat"),
        "u.data": ("1\t2\t3\t4\n", "ml-udata"),
        "r.json.gz": (JSON_LINES[0] + "\n", "amazon-json"),
        "h.csv": ("user,item,timestamp\n1,2,3\n", "csv"),
        "h.tsv": ("user\titem\ttimestamp\n1\t2\t3\n", "csv"),
        "ratings_x.csv": ("A,B,5.0,1400000000\n", "amazon-csv"),
    }
    for name, (text, fmt) in cases.items():
        path = write(sub, name, text)
        assert guess_format(path) == fmt, name
        raw = read_file(path)
        check_frame(raw.interactions)
        assert len(raw.interactions) >= 1
        assert raw.source == str(path)


def test_read_file_explicit_and_unknown(tmp_path):
    path = write(tmp_path, "data.whatever", "uid|iid|t\n1|2|3\n")
    with raises_at(path, None, "cannot guess", "s3rec"):
        read_file(path)
    cfg = DataConfig(format="csv", sep="|", user_col="uid", item_col="iid", time_col="t")
    assert read_file(path, cfg).interactions["item"].tolist() == ["2"]
    with pytest.raises(DataError, match="accepted formats: auto, s3rec, csv"):
        read_file(path, DataConfig(format="nonsense"))
    assert "amazon-json" in FORMATS


def test_auto_csv_header_without_user_col(tmp_path):
    path = write(tmp_path, "x.csv", "user_id,item_id,timestamp\n1,2,3\n")
    with raises_at(path, 1, "no user column 'user'"):
        read_file(path)
    cfg = DataConfig(user_col="user_id", item_col="item_id")
    assert read_file(path, cfg).interactions["user"].tolist() == ["1"]


# ------------------------------------------------------------------------------------ real files
def test_real_office_products():
    path = SHARED / "Office_Products.txt"
    if not path.is_file():
        pytest.skip(f"real data file {path} is absent (shared data not mounted)")
    raw = read_file(path)
    data = preprocess(raw, PreprocessConfig(), name="office")
    assert (data.n_users, data.n_items, data.n_interactions) == (4905, 2420, 53258)
    assert data.item_index()["0"] > 0
    assert (data.items > 0).all() and data.item_ids[0] == "<pad>"


def test_real_ml100k_atomic():
    path = SHARED / "ml-100k" / "ml-100k.inter"
    if not path.is_file():
        pytest.skip(f"real data file {path} is absent (shared data not mounted)")
    raw = read_file(path)
    assert raw.item_side is not None and "class" in raw.item_side.columns
    data = preprocess(raw, PreprocessConfig(), name="ml-100k")
    assert (data.n_users, data.n_items, data.n_interactions) == (943, 1682, 100000)
    assert "class" in data.item_side.columns and list(data.item_side.index) == list(range(1, 1683))
    assert data.item_side["class"].notna().all()
    assert list(data.user_side.index) == list(range(943))
    for u in (0, 500):  # chronological
        ts = data.timestamps[data.offsets[u] : data.offsets[u + 1]]
        assert np.all(np.diff(ts) >= 0)


def test_ids_are_stripped_and_control_characters_refused(tmp_path):
    path = write(tmp_path, "x.csv", "user,item,timestamp\nu1,a,1\n u1 , a ,2\n")
    assert read_delimited(path).interactions["user"].tolist() == ["u1", "u1"]
    path = write(tmp_path, "y.csv", "user,item,timestamp\nu1,a,1\nu\x012,b,2\n")
    with raises_at(path, 3, "control character"):
        read_delimited(path)
    path = write(tmp_path, "z.csv", "user,item,timestamp\nu1,a,1\nu2,b,1e999\n")
    with raises_at(path, 3, "finite number"):
        read_delimited(path)
