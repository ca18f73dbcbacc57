import io
import os
import urllib.request

import numpy as np
import pandas as pd
import pytest

import sigmarec.data.catalog as catalog
from sigmarec.config import DataConfig
from sigmarec.data.catalog import CATALOG, cache_path, load_dataset
from sigmarec.data.sequences import DataError, SequenceData

from conftest import shared_file

S3REC = "u1 a b c d\nu2 b c\nu3 c d e a b\nu4 e a\nu5 a c e\n"


def patch_network(monkeypatch, payload: bytes | None, error: str = "network unreachable"):
    """Replace both download entry points: serve ``payload``, or fail with OSError(error) when None."""

    def urlopen(url, *args, **kwargs):
        if payload is None:
            raise OSError(error)
        return io.BytesIO(payload)

    def urlretrieve(url, filename=None, *args, **kwargs):
        if payload is None:
            raise OSError(error)
        with open(filename, "wb") as f:
            f.write(payload)
        return filename, None

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    monkeypatch.setattr(urllib.request, "urlretrieve", urlretrieve)


def write_s3rec(tmp_path, text=S3REC, name="seqs.txt"):
    path = tmp_path / name
    path.write_text(text)
    return path


def assert_same(a: SequenceData, b: SequenceData):
    np.testing.assert_array_equal(a.items, b.items)
    np.testing.assert_array_equal(a.offsets, b.offsets)
    assert list(a.user_ids) == list(b.user_ids)
    assert list(a.item_ids) == list(b.item_ids)
    if a.timestamps is None:
        assert b.timestamps is None
    else:
        np.testing.assert_array_equal(a.timestamps, b.timestamps)
    assert a.name == b.name
    for side in ("item_side", "user_side"):
        x, y = getattr(a, side), getattr(b, side)
        assert (x is None) == (y is None)
        if x is not None:
            pd.testing.assert_frame_equal(x, y)


def processed_entries(cache_dir):
    root = cache_dir / "processed"
    return sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) if root.exists() else []


def test_s3rec_file_is_processed_and_cached(tmp_path, monkeypatch):
    path = write_s3rec(tmp_path)
    cfg = DataConfig(dataset=str(path), cache_dir=str(tmp_path / "cache"))
    assert cache_path(cfg) is None
    data = load_dataset(cfg)
    assert data.n_users == 5 and data.n_items == 5 and data.n_interactions == 16
    assert list(data.user_ids) == ["u1", "u2", "u3", "u4", "u5"]
    assert list(data.item_ids) == ["<pad>", "a", "b", "c", "d", "e"]
    np.testing.assert_array_equal(data.sequence(2), [3, 4, 5, 1, 2])  # c d e a b, in file order
    entries = processed_entries(tmp_path / "cache")
    assert len(entries) == 1 and entries[0].startswith("seqs-")
    cached = tmp_path / "cache" / "processed" / entries[0]
    assert (cached / "ids.json").exists() and (cached / "arrays.npz").exists()
    assert cache_path(cfg) == cached

    # the second call reads the cache, not the file
    def no_read(*args, **kwargs):
        raise AssertionError("read_file called although the data are cached")

    monkeypatch.setattr(catalog, "read_file", no_read)
    again = load_dataset(cfg)
    assert_same(data, again)
    # max_len does not change preprocessing: same cache entry
    assert_same(data, load_dataset(DataConfig(dataset=str(path), cache_dir=str(tmp_path / "cache"), max_len=7)))
    assert len(processed_entries(tmp_path / "cache")) == 1
    # use_cache=False reads the file
    with pytest.raises(AssertionError, match="read_file called"):
        load_dataset(cfg, use_cache=False)


def test_preprocessing_setting_gives_new_cache_entry(tmp_path):
    path = write_s3rec(tmp_path)
    cache = tmp_path / "cache"
    plain = load_dataset(DataConfig(dataset=str(path), cache_dir=str(cache)))
    cfg3 = DataConfig(dataset=str(path), cache_dir=str(cache), user_core=3)
    cored = load_dataset(cfg3)
    assert len(processed_entries(cache)) == 2
    assert plain.n_users == 5 and cored.n_users == 3  # u2 and u4 have 2 items
    assert list(cored.user_ids) == ["u1", "u3", "u5"]
    # each setting finds its own entry again
    assert_same(load_dataset(cfg3), cored)
    assert_same(load_dataset(DataConfig(dataset=str(path), cache_dir=str(cache))), plain)
    assert cache_path(cfg3) != cache_path(DataConfig(dataset=str(path), cache_dir=str(cache)))
    assert SequenceData.load(cache_path(cfg3)).n_users == 3
    assert SequenceData.load(cache_path(DataConfig(dataset=str(path), cache_dir=str(cache)))).n_users == 5
    load_dataset(DataConfig(dataset=str(path), cache_dir=str(cache), duplicates="first"))
    assert len(processed_entries(cache)) == 3


def test_changed_file_invalidates_cache(tmp_path):
    path = write_s3rec(tmp_path)
    cfg = DataConfig(dataset=str(path), cache_dir=str(tmp_path / "cache"))
    before = load_dataset(cfg)
    path.write_text(S3REC + "u6 d e\n")
    after = load_dataset(cfg)
    assert before.n_users == 5 and after.n_users == 6
    assert after.user_ids[-1] == "u6"
    assert len(processed_entries(tmp_path / "cache")) == 2
    # restoring the old content finds the old entry again
    path.write_text(S3REC)
    assert_same(load_dataset(cfg), before)


def test_missing_catalog_file_without_url_fails_fast(tmp_path, monkeypatch):
    assert CATALOG["office"].url is None
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setattr(catalog, "data_dirs", lambda cfg: [empty])
    patch_network(monkeypatch, None, "a download was attempted")
    cfg = DataConfig(dataset="office", data_dir=str(empty), cache_dir=str(tmp_path / "cache"))
    with pytest.raises(DataError) as exc:
        load_dataset(cfg)
    msg = str(exc.value)
    assert "office" in msg and "Office_Products.txt" in msg and str(empty) in msg
    assert "data.data_dir" in msg  # says how to point at the file
    assert "download was attempted" not in msg  # no URL: fails without trying the network
    assert cache_path(cfg) is None


def test_failed_download_fails_with_where_to_put_the_file(tmp_path, monkeypatch):
    empty, downloads = tmp_path / "empty", tmp_path / "downloads"
    empty.mkdir()
    monkeypatch.setattr(catalog, "data_dirs", lambda cfg: [empty, downloads])
    patch_network(monkeypatch, None)
    with pytest.raises(DataError) as exc:
        load_dataset(DataConfig(dataset="beauty", cache_dir=str(tmp_path / "cache")))
    msg = str(exc.value)
    assert "Beauty.txt" in msg and "download" in msg and "network unreachable" in msg
    assert os.listdir(downloads) == []  # no partial download left behind


def test_download_with_wrong_checksum_is_refused(tmp_path, monkeypatch):
    empty, downloads = tmp_path / "empty", tmp_path / "downloads"
    empty.mkdir()
    monkeypatch.setattr(catalog, "data_dirs", lambda cfg: [empty, downloads])
    patch_network(monkeypatch, b"1 2 3\n")
    with pytest.raises(DataError, match="refusing"):
        load_dataset(DataConfig(dataset="beauty", cache_dir=str(tmp_path / "cache")))
    assert os.listdir(downloads) == []


def test_missing_path_names_catalog(tmp_path):
    with pytest.raises(DataError) as exc:
        load_dataset(DataConfig(dataset=str(tmp_path / "nope.txt"), cache_dir=str(tmp_path / "cache")))
    assert "nope.txt" in str(exc.value) and "office" in str(exc.value)


def test_synthetic_keeps_categories(tmp_path):
    cfg = DataConfig(dataset="synthetic", synthetic_users=60, cache_dir=str(tmp_path / "cache"))
    data = load_dataset(cfg)
    assert data.n_users > 0 and data.n_items > 0
    assert data.item_side is not None and "category" in data.item_side.columns
    assert list(data.item_side.index) == list(range(1, data.n_items + 1))
    assert data.item_side["category"].notna().all()
    # the cached copy keeps them too
    again = load_dataset(cfg)
    assert_same(data, again)
    assert cache_path(cfg) is not None
    # seed and size are part of the key
    other = load_dataset(DataConfig(dataset="synthetic", synthetic_users=60, synthetic_seed=1, cache_dir=str(tmp_path / "cache")))
    assert not np.array_equal(other.items[:50], data.items[:50])
    assert len(processed_entries(tmp_path / "cache")) == 2


def test_real_office_file(tmp_path):
    shared_file("Office_Products.txt")
    cfg = DataConfig(dataset="office", cache_dir=str(tmp_path / "cache"))
    data = load_dataset(cfg)
    assert data.n_users == 4905 and data.n_items == 2420
    assert data.n_interactions == 53258
    assert data.items.min() >= 1  # the file's item "0" is remapped away from padding
    assert "0" in data.item_index()
    assert_same(load_dataset(cfg), data)


def test_zip_download_extracts_side_files(tmp_path, monkeypatch):
    import dataclasses
    import zipfile

    from sigmarec.data.readers import read_movielens_udata

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("ml-100k/u.data", "1\t7\t4\t881250949\n")
        zf.writestr("ml-100k/u.item", "7|Twelve Monkeys (1995)|01-Jan-1995||url|" + "|".join(["0"] * 15 + ["1"] + ["0"] * 3) + "\n")
    patch_network(monkeypatch, buf.getvalue())
    entry = dataclasses.replace(CATALOG["ml-100k"], checksum=None)
    path = catalog._download(entry, tmp_path / "downloads")
    assert path == tmp_path / "downloads" / "ml-100k" / "u.data" and (path.parent / "u.item").exists()
    assert read_movielens_udata(path).item_side.loc["7", "class"] == "Sci-Fi"
