"""Named data sets and the processed-data cache.

``load_dataset(cfg)`` turns a catalog name or a file path into ``SequenceData``: it finds (or
downloads) the file, reads it, preprocesses it and caches the result on disk under a key made of
the input file's hash and every setting that changes the output.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from sigmarec.config import DataConfig
from sigmarec.data.preprocess import PreprocessConfig, preprocess
from sigmarec.data.readers import read_file
from sigmarec.data.sequences import DataError, MissingDataError, SequenceData

CACHE_VERSION = 1
log = logging.getLogger("sigmarec")


@dataclass(frozen=True)
class CatalogEntry:
    """A named data set: candidate file names (relative to a data folder), format, and a canonical source."""

    name: str
    description: str
    files: tuple[str, ...] = ()
    format: str = "auto"
    url: str | None = None
    checksum: str | None = None  # "sha256:..." or "md5:..." of the downloaded file
    member: str | None = None  # file inside a downloaded zip
    extra_members: tuple[str, ...] = ()  # side files extracted next to ``member`` (e.g. MovieLens u.item)
    defaults: dict = field(default_factory=dict)  # DataConfig fields this data set needs


SYNTHETIC = ("synthetic", "synthetic-sessions")  # generated, not read from a file
CATALOG: dict[str, CatalogEntry] = {
    "synthetic": CatalogEntry("synthetic", "generated multi-interest sequences with planted categories and sessions"),
    "synthetic-sessions": CatalogEntry("synthetic-sessions", "the same generator with focused sessions: one interest per session"),
    "office": CatalogEntry(
        "office", "Amazon Office Products, 5-core, S3Rec preprocessing (SIGMA / ContrastVAE tables)",
        files=("Office_Products.txt",), format="s3rec",
        checksum="sha256:adc4056de39e8bf939ddc9fd059e555b5f940fbdce33f9aaf4bcbb6dd4aa36e2",
    ),
    "beauty": CatalogEntry(
        "beauty", "Amazon Beauty, 5-core, S3Rec preprocessing (SIGMA / ContrastVAE / S3Rec tables)",
        files=("Beauty.txt",), format="s3rec",
        url="https://raw.githubusercontent.com/RUCAIBox/CIKM2020-S3Rec/master/data/Beauty.txt",
        checksum="sha256:226cce9c3105299ca0db9615d7d3fb32b3175e90da43100ae352599f0f0107b8",
    ),
    "toys": CatalogEntry(
        "toys", "Amazon Toys and Games, 5-core, S3Rec preprocessing",
        files=("Toys_and_Games.txt",), format="s3rec",
        url="https://raw.githubusercontent.com/RUCAIBox/CIKM2020-S3Rec/master/data/Toys_and_Games.txt",
    ),
    "tools": CatalogEntry(
        "tools", "Amazon Tools and Home Improvement 5-core reviews (2014 release), 5-core filtered here",
        files=("Tools_and_Home_Improvement.txt", "reviews_Tools_and_Home_Improvement_5.json.gz"), format="auto",
        url="http://snap.stanford.edu/data/amazon/productGraph/categoryFiles/reviews_Tools_and_Home_Improvement_5.json.gz",
        defaults={"user_core": 5, "item_core": 5},
    ),
    "ml-100k": CatalogEntry(
        "ml-100k", "MovieLens 100K (RecBole atomic files with genres and user attributes)",
        files=("ml-100k/ml-100k.inter", "ml-100k.inter", "ml-100k/u.data", "u.data"), format="auto",
        url="https://files.grouplens.org/datasets/movielens/ml-100k.zip",
        checksum="md5:0e33842e24a9c977be4e0107933c0723", member="ml-100k/u.data", extra_members=("ml-100k/u.item",),
    ),
    "ml-1m": CatalogEntry(
        "ml-1m", "MovieLens 1M ratings",
        files=("ml-1m/ratings.dat", "ratings.dat", "ml-1m/ml-1m.inter"), format="auto",
        url="https://files.grouplens.org/datasets/movielens/ml-1m.zip",
        checksum="md5:c4d9eecfca2ab87c1945afe126590906", member="ml-1m/ratings.dat",
    ),
}


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "sigmarec"


def data_dirs(cfg: DataConfig) -> list[Path]:
    """Folders searched for catalog files, in order."""
    dirs = [Path(cfg.data_dir)] if cfg.data_dir else []
    project = Path(__file__).resolve().parents[3]
    dirs += [Path.cwd() / "../shared/data", project / "../shared/data", Path.cwd() / "data"]
    cache = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir()
    dirs.append(cache / "downloads")
    return dirs


def file_digest(path: Path, algo: str = "sha256") -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _download(entry: CatalogEntry, dest_dir: Path) -> Path:
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / Path(entry.url).name
    if not target.exists():
        fd, tmp = tempfile.mkstemp(prefix=".download-", dir=dest_dir)
        os.close(fd)
        try:
            with urllib.request.urlopen(entry.url, timeout=20) as resp, open(tmp, "wb") as f:  # noqa: S310 - fixed catalog URLs
                while chunk := resp.read(1 << 20):
                    f.write(chunk)
        except OSError as exc:
            os.unlink(tmp)
            raise MissingDataError(
                f"data set {entry.name!r} not found locally and the download from {entry.url} failed ({exc}). "
                f"Put {' or '.join(entry.files)} into one of the data folders (e.g. ../shared/data or ./data), "
                f"set data.data_dir, or pass the file path as --dataset."
            ) from None
        if entry.checksum:
            algo, expected = entry.checksum.split(":", 1)
            got = file_digest(Path(tmp), algo)
            if got != expected:
                os.unlink(tmp)
                raise DataError(f"download of {entry.url} has {algo} {got}, expected {expected}; refusing to use it")
        os.replace(tmp, target)
    if entry.member:
        missing = [m for m in (*entry.extra_members, entry.member) if not (dest_dir / m).exists()]
        if missing:
            with zipfile.ZipFile(target) as zf:
                for member in missing:  # the main file last: its presence means "done"
                    out = dest_dir / member
                    out.parent.mkdir(parents=True, exist_ok=True)
                    out.write_bytes(zf.read(member))
        return dest_dir / entry.member
    return target


def locate(entry: CatalogEntry, cfg: DataConfig, download: bool = True) -> Path:
    """Find a catalog file locally, else download it (fails fast offline with where to put it)."""
    for d in data_dirs(cfg):
        for name in entry.files:
            if (d / name).exists():
                return (d / name).resolve()
    searched = ", ".join(str(d) for d in data_dirs(cfg))
    if entry.url and download:
        return _download(entry, data_dirs(cfg)[-1])
    raise MissingDataError(
        f"data set {entry.name!r} not found: looked for {' or '.join(entry.files)} in {searched}. "
        f"Put the file in one of those folders, set data.data_dir, or pass its path as --dataset."
    )


def dataset_defaults(dataset: str) -> dict:
    """The ``data`` settings a catalog data set needs (e.g. the 5-core of ``tools``): one layer of the
    configuration resolver (``sigmarec.runs.make_config``), below presets, files and ``--set``."""
    entry = CATALOG.get(dataset)
    return dict(entry.defaults) if entry is not None else {}


def resolve_config(cfg: DataConfig) -> DataConfig:
    """A catalog entry's file format where ``format`` is ``auto`` (a fact about the file, not a default
    the user could mean to keep; the entry's other settings are applied by the config resolver)."""
    entry = CATALOG.get(cfg.dataset)
    if entry is None or entry.format == "auto" or cfg.format != "auto":
        return cfg
    return dataclasses.replace(cfg, format=entry.format)


def _cache_key(source: str, cfg: DataConfig) -> str:
    settings = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("dataset", "max_len", "cache_dir", "data_dir")}
    blob = json.dumps({"v": CACHE_VERSION, "source": source, "settings": settings}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def dataset_name(cfg: DataConfig) -> str:
    return cfg.dataset if cfg.dataset in CATALOG else Path(cfg.dataset).name.split(".")[0]


def _source(cfg: DataConfig, download: bool = True) -> tuple[Path | None, str]:
    """The input file (None for synthetic data) and the source part of the cache key (resolved ``cfg``)."""
    if cfg.dataset in SYNTHETIC:
        return None, f"{cfg.dataset}:{cfg.synthetic_seed}:{cfg.synthetic_users}"
    path = locate(CATALOG[cfg.dataset], cfg, download) if cfg.dataset in CATALOG else Path(cfg.dataset)
    if not path.exists():
        raise MissingDataError(f"{path}: no such file, and {cfg.dataset!r} is not a catalog name ({', '.join(CATALOG)})")
    return path, f"file:{file_digest(path)}"


def _cache_dir(cfg: DataConfig, source: str) -> Path:
    cache_root = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir()
    return cache_root / "processed" / f"{dataset_name(cfg)}-{_cache_key(source, cfg)}"


def load_dataset(cfg: DataConfig, use_cache: bool = True, download: bool = True) -> SequenceData:
    """Catalog name or file path -> processed ``SequenceData`` (cached on disk). A missing input raises
    ``MissingDataError`` (after trying the catalog's download when ``download``)."""
    cfg = resolve_config(cfg)
    name = dataset_name(cfg)
    path, source = _source(cfg, download)
    cache = _cache_dir(cfg, source)
    fingerprint = f"{source}|settings:{_cache_key(source, cfg)}"
    if use_cache and (cache / "ids.json").exists():
        try:
            data = SequenceData.load(cache)
        except Exception as exc:  # noqa: BLE001 - a damaged cache (truncated zip, bad JSON, wrong arrays) is rebuilt
            log.warning("%s: unreadable processed-data cache (%s: %s); rebuilding it from the input", cache,
                        type(exc).__name__, exc)
        else:
            data.fingerprint = fingerprint
            return data
    if path is None:
        from sigmarec.data.synthetic import SyntheticConfig, generate

        raw = generate(SyntheticConfig(n_users=cfg.synthetic_users, seed=cfg.synthetic_seed,
                                       session_focus=cfg.dataset == "synthetic-sessions"))
    else:
        raw = read_file(path, cfg)
    data = preprocess(raw, PreprocessConfig.from_data_config(cfg), name=name)
    if use_cache:
        data.save(cache)
    data.fingerprint = fingerprint
    return data


def cache_path(cfg: DataConfig) -> Path | None:
    """Where ``load_dataset`` keeps this data set's processed form (None if not yet cached)."""
    cfg = resolve_config(cfg)
    try:
        _, source = _source(cfg, download=False)
    except DataError:
        return None
    cache = _cache_dir(cfg, source)
    return cache if (cache / "ids.json").exists() else None
