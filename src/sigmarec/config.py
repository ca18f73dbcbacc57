"""Typed configuration: dataclass defaults in code, overridden by YAML files and ``key=value`` pairs.

A run's configuration has four fixed sections (``data``, ``train``, ``eval``, ``protocol``) and a
``model`` section whose type depends on the chosen model (each model registers its own dataclass).
``resolve`` merges explicit layers of overrides over the code defaults and records which layer set
each value; ``sigmarec.runs.make_config`` decides what the layers are. This module imports nothing
else from the package (the bottom of the import order).
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Sequence
from typing import Any, Literal

import yaml


class SigmarecError(Exception):
    """A problem with what the user asked for (a setting, a file, a run directory, an id), not a bug: the
    command line prints its message alone. Anything else that escapes is a bug and shows a traceback."""


class ConfigError(SigmarecError, ValueError):
    """A configuration key or value that does not fit the typed schema, or settings that do not fit together."""


class RunError(SigmarecError, ValueError):
    """A run directory that is missing, incomplete or holds something other than what was asked for."""


class MissingFileError(SigmarecError, FileNotFoundError):
    """A file or folder the user named (a run directory, a preset) does not exist."""


class UnknownIdError(SigmarecError, KeyError):
    """A user or item id the model does not know."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


DataFormat = Literal["auto", "s3rec", "csv", "parquet", "atomic", "ml-dat", "ml-udata", "amazon-json", "amazon-csv"]


def check(where: str, ok: bool, expected: str, value: Any) -> None:
    """Raise a ConfigError naming ``where`` unless ``ok``: the range checks of the config sections."""
    if not ok:
        raise ConfigError(f"{where}: expected {expected}, got {value!r}")


@dataclass
class DataConfig:
    """Where the interactions come from and how they are cleaned (see ``data/preprocess.py``)."""

    dataset: str = "synthetic"  # catalog name or a file path
    format: DataFormat = "auto"
    sep: str | None = None  # delimiter for csv-like files (None: guess from the extension)
    user_col: str = "user"
    item_col: str = "item"
    time_col: str | None = "timestamp"
    rating_col: str | None = None
    min_rating: float | None = None  # keep interactions with rating >= this
    duplicates: Literal["keep", "first", "last"] = "keep"  # repeated (user, item) pairs
    user_core: int = 0  # iterative k-core: minimum interactions per user (0 = off)
    item_core: int = 0  # minimum interactions per item (0 = off)
    session_gap: float = 1800.0  # seconds of inactivity that close a session (HNVM/HRNN: 30 minutes)
    min_session_len: int = 1  # drop sessions with fewer interactions (applied after the k-core)
    min_sessions: int = 1  # then drop users with fewer sessions
    max_len: int = 50  # maximum history length fed to a model
    cache_dir: str | None = None  # processed-data cache (default: ~/.cache/sigmarec)
    data_dir: str | None = None  # where catalog files are looked for (default: ../shared/data, ./data)
    synthetic_seed: int = 0
    synthetic_users: int = 2000

    def __post_init__(self) -> None:
        check("data.max_len", self.max_len >= 1, "an integer >= 1", self.max_len)
        for name in ("user_core", "item_core"):
            check(f"data.{name}", getattr(self, name) >= 0, "an integer >= 0 (0 = off)", getattr(self, name))
        check("data.session_gap", self.session_gap > 0, "a positive number of seconds", self.session_gap)
        check("data.synthetic_users", self.synthetic_users >= 1, "an integer >= 1", self.synthetic_users)
        check("data.synthetic_seed", self.synthetic_seed >= 0, "an integer >= 0", self.synthetic_seed)


@dataclass
class TrainConfig:
    """Optimisation, early stopping and checkpointing (see ``train/trainer.py``)."""

    optimizer: Literal["adam", "adamw"] = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    decay: Literal["matrices", "all"] = "matrices"  # which parameters weight_decay applies to: matrices = every tensor
    # of 2+ dimensions (linear weights and embedding tables; biases, norms and scalars are left alone, as nanoGPT's
    # configure_optimizers does) | all = every parameter (the behaviour before this option)
    batch_size: int = 256
    bucket_by_length: bool = True  # batches of similar lengths, ~batch_size * mean length targets each
    epochs: int = 200
    patience: int = 10  # validations without improvement before stopping (epochs when eval_every = 1)
    valid_metric: str = "ndcg@20"
    eval_every: int = 1
    clip_grad: float | None = 5.0
    seed: int = 42
    device: str = "auto"  # auto|cpu|cuda|cuda:N
    amp: bool = True  # bf16 autocast, used on CUDA only (the losses' logsumexp and the VAEs' KL terms stay float32)
    compile: bool = False  # torch.compile the training step's module (CUDA: measure it on and off; on CPU it
    # needs a C++ compiler and pays a compilation of tens of seconds per shape family)
    num_threads: int | None = None  # torch intra-op threads on CPU. None: the cores not busy with other work when
    # training starts (cores minus the 1-minute load average, at least 1). Measured with the demo on 2 cores: idle,
    # 2 threads 5.0 s per SIGMA epoch and 1 thread 7.5 s; with one other CPU job, 2 threads 14.0 s and 1 thread 8.1 s
    reuse_freed_memory: bool = True  # CPU, glibc: keep freed tensor memory in the heap for the next step instead of
    # unmapping and page-faulting the step's large tensors (the logits) afresh (sigmarec/memory.py): SASRec on
    # Beauty 1.7x faster an epoch, resident memory held at the process's peak. false: the C library's behaviour
    progress: bool = True

    def __post_init__(self) -> None:
        check("train.lr", math.isfinite(self.lr) and self.lr > 0, "a positive finite number", self.lr)
        check("train.weight_decay", math.isfinite(self.weight_decay) and self.weight_decay >= 0, "a finite number >= 0",
              self.weight_decay)
        for name in ("batch_size", "epochs", "patience", "eval_every"):
            check(f"train.{name}", getattr(self, name) >= 1, "an integer >= 1", getattr(self, name))
        check("train.clip_grad", self.clip_grad is None or (math.isfinite(self.clip_grad) and self.clip_grad > 0),
              "a positive number, or null for no clipping", self.clip_grad)
        check("train.seed", self.seed >= 0, "an integer >= 0 (numpy's generators take no negative seed)", self.seed)
        check("train.num_threads", self.num_threads is None or self.num_threads >= 1, "an integer >= 1, or null", self.num_threads)
        check("train.device", re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", self.device) is not None, "auto, cpu, mps, cuda or cuda:N",
              self.device)


@dataclass
class EvalConfig:
    """Ranking protocol (see ``evaluate/``)."""

    ks: list[int] = field(default_factory=lambda: [10, 20, 40])
    exclude_history: bool = True
    batch_size: int = 1024
    max_scores: int = 2**27  # bound on the scores held at once (rows x interests x items; 2^27 float32 = 512 MB): at
    # large catalogs fewer rows are scored per batch (10^6 items: 134 rows), so memory stays bounded at any size
    item_chunk: int = 0  # > 0: full ranking over chunks of this many items with a running top-K (evaluate/chunked.py),
    # never a row's scores for the whole catalog; for dot-product models, one target per case. 0: whole rows
    sampled_negatives: int = 0  # 0: full ranking; N > 0: rank the target against N sampled items
    sampler: Literal["uniform", "popularity"] = "uniform"
    sampler_seed: int = 0

    def __post_init__(self) -> None:
        check("eval.ks", bool(self.ks) and all(k >= 1 for k in self.ks), "a non-empty list of integers >= 1", self.ks)
        check("eval.batch_size", self.batch_size >= 1, "an integer >= 1", self.batch_size)
        check("eval.max_scores", self.max_scores >= 1, "an integer >= 1", self.max_scores)
        check("eval.item_chunk", self.item_chunk >= 0, "an integer >= 0 (0 = whole rows)", self.item_chunk)
        check("eval.sampled_negatives", self.sampled_negatives >= 0, "an integer >= 0 (0 = full ranking)", self.sampled_negatives)
        check("eval.sampler_seed", self.sampler_seed >= 0, "an integer >= 0", self.sampler_seed)


@dataclass
class ProtocolConfig:
    name: Literal["loo", "comirec", "session", "next_session"] = "loo"
    train_windows: Literal["all", "last"] = "all"  # all: long sequences cut into windows so every position is a target; last: only the last window
    # name=comirec (ComiRec's user split): users shuffled with split_seed and divided train:valid:test by
    # user_split; a held-out user's first history_fraction of items is the input, the rest are targets
    user_split: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])
    history_fraction: float = 0.8
    split_seed: int = 0
    # the final refit: the validation targets join the training data (each validation case's whole range, so a user
    # or session model and an id model alike learn the item before the test one). Nothing is then held out to select
    # on, so training runs train.epochs (set it to the best epoch of a run without this) and keeps the last epoch.
    train_on_valid: bool = False


SECTIONS = {"data": DataConfig, "train": TrainConfig, "eval": EvalConfig, "protocol": ProtocolConfig}


@dataclass
class RunConfig:
    """Everything that defines a run; written to ``config.yaml`` in the run directory."""

    model_name: str
    model: Any
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"model_name": self.model_name, "model": dataclasses.asdict(self.model)}
        for name in SECTIONS:
            out[name] = dataclasses.asdict(getattr(self, name))
        return out


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Convert ``value`` to the annotated type ``tp`` or raise a ConfigError naming ``where``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: cannot use {value!r}")
    if origin is list:
        (inner,) = typing.get_args(tp) or (Any,)
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
    if tp is Any:
        return value
    if origin is Literal:
        allowed = typing.get_args(tp)
        for option in allowed:
            if value == option or (isinstance(value, str) and str(option) == value):
                return option
        raise ConfigError(f"{where}: expected one of {', '.join(map(str, allowed))}, got {value!r}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        try:
            f = float(value)
        except ValueError:
            raise ConfigError(f"{where}: expected an integer, got {value!r}") from None
        if not math.isfinite(f) or f != int(f):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return int(f)
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if tp is str:
        if value is None or isinstance(value, (dict, list)):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    return value


def options(cls: type, name: str) -> tuple[Any, ...]:
    """The allowed values of a ``Literal`` field of config dataclass ``cls`` (the one place they are declared)."""
    return typing.get_args(typing.get_type_hints(cls)[name])


def check_options(obj: Any, where: str) -> None:
    """Raise a ConfigError for any ``Literal`` field of dataclass ``obj`` holding a value outside its options
    (for configs built in code, which skip ``update_dataclass``)."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        if typing.get_origin(hints[f.name]) is Literal:
            _coerce(getattr(obj, f.name), hints[f.name], f"{where}.{f.name}")


def update_dataclass(obj: Any, values: dict[str, Any], where: str) -> Any:
    """Return a copy of dataclass ``obj`` with ``values`` applied, type-checked field by field."""
    hints = typing.get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    changes = {}
    for key, value in values.items():
        if key not in names:
            raise ConfigError(f"unknown key {where}.{key}; known keys: {', '.join(sorted(names))}")
        changes[key] = _coerce(value, hints[key], f"{where}.{key}")
    return dataclasses.replace(obj, **changes)


def parse_set(pairs: list[str]) -> dict[str, Any]:
    """Turn ``["train.lr=1e-3", "eval.ks=[10,20]"]`` into a nested dict (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--set expects key=value, got {pair!r}")
        key, raw = pair.split("=", 1)
        parts = key.strip().split(".")
        if len(parts) != 2 or not all(parts):
            raise ConfigError(f"--set key must be section.field (e.g. train.lr), got {key!r}")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {key.strip()}: {raw!r} is not a valid value ({' '.join(str(exc).split())})") from None
        out.setdefault(parts[0], {})[parts[1]] = value
    return out


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Nested dict merge; ``extra`` wins."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections (data, train, eval, protocol, model)")
    return data


def build_config(model_name: str, model_cls: type, values: dict[str, Any]) -> RunConfig:
    """Build a RunConfig for ``model_name`` from a nested dict of overrides."""
    values = dict(values)
    values.pop("model_name", None)
    unknown = set(values) - set(SECTIONS) - {"model"}
    if unknown:
        raise ConfigError(f"unknown config section(s) {sorted(unknown)}; expected model, {', '.join(SECTIONS)}")
    kwargs: dict[str, Any] = {}
    for name, cls in SECTIONS.items():
        section = values.get(name) or {}
        if not isinstance(section, dict):
            raise ConfigError(f"section {name} must be a mapping, got {section!r}")
        kwargs[name] = update_dataclass(cls(), section, name)
    model_values = values.get("model") or {}
    if not isinstance(model_values, dict):
        raise ConfigError(f"section model must be a mapping, got {model_values!r}")
    model = update_dataclass(model_cls(), model_values, "model")
    return RunConfig(model_name=model_name, model=model, **kwargs)


_UNSET = object()


def resolve(model_name: str, model_config_class: type, layers: Sequence[tuple[str, dict[str, Any]]]) -> tuple[RunConfig, dict[str, str]]:
    """The run configuration from the code defaults and ``layers`` of ``(name, values)``, lowest precedence first.

    A layer sets exactly the keys it names: a later layer wins for each of them, whatever the value, and a
    key no layer names keeps its code default (a value is never replaced because it happens to equal a
    default). Each layer is checked on its own, so an error names the layer it came from. Returns the
    config and, for every key some layer set, the name of the layer that decided it (``section.key``), with the
    layer and value it replaced when an earlier layer had set the key to something else.
    """
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name, values in layers:
        values = {k: v for k, v in (values or {}).items() if k != "model_name"}
        try:
            build_config(model_name, model_config_class, values)  # shape and types of this layer alone
        except ConfigError as exc:
            raise ConfigError(f"{name}: {exc}") from None
        for section, fields in values.items():
            for key, value in (fields or {}).items():
                where, before = f"{section}.{key}", merged.get(section, {}).get(key, _UNSET)
                overrides = before is not _UNSET and before != value
                sources[where] = f"{name} (over {sources[where].split(' (over ')[0]}: {before!r})" if overrides else name
                merged.setdefault(section, {})[key] = value
    return build_config(model_name, model_config_class, merged), sources


def describe(cfg: RunConfig, sources: dict[str, str]) -> str:
    """``cfg`` as YAML, each value that differs from its code default (or that overrode another layer's value)
    marked with the layer that set it."""
    lines = [f"model_name: {cfg.model_name}"]
    defaults = build_config(cfg.model_name, type(cfg.model), {}).to_dict()
    for section, fields in cfg.to_dict().items():
        if section == "model_name":
            continue
        lines.append(f"{section}:")
        for key, value in fields.items():
            text = yaml.safe_dump({key: value}, default_flow_style=True, width=10**6).strip()[1:-1]
            where = sources.get(f"{section}.{key}")
            shown = where and (value != defaults[section][key] or " (over " in where)
            lines.append(f"  {text}  # {where}" if shown else f"  {text}")
    return "\n".join(lines) + "\n"
