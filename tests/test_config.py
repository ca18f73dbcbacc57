import numpy as np
import pytest
import yaml

from sigmarec.config import (
    ConfigError,
    DataConfig,
    EvalConfig,
    ProtocolConfig,
    RunConfig,
    TrainConfig,
    build_config,
    parse_set,
)
from sigmarec.data.sequences import SequenceData
from sigmarec.models import MODELS
from sigmarec.models.gru4rec import GRU4RecConfig
from sigmarec.models.sasrec import SASRecConfig
from sigmarec.runs import make_config
from sigmarec.train.trainer import Trainer, check_metric_name


def test_defaults():
    cfg = make_config("sasrec")
    assert isinstance(cfg, RunConfig)
    assert cfg.model_name == "sasrec"
    assert cfg.model == SASRecConfig()
    assert cfg.data == DataConfig() and cfg.data.dataset == "synthetic" and cfg.data.max_len == 50
    assert cfg.train == TrainConfig() and cfg.train.lr == 1e-3 and cfg.train.valid_metric == "ndcg@20"
    assert cfg.eval == EvalConfig() and cfg.eval.ks == [10, 20, 40] and cfg.eval.exclude_history is True
    assert cfg.protocol == ProtocolConfig() and cfg.protocol.name == "loo"
    # list defaults are not shared between instances
    a, b = EvalConfig(), EvalConfig()
    a.ks.append(99)
    assert b.ks == [10, 20, 40]
    # model names are case-insensitive
    assert make_config("SASRec").model_name == "sasrec"


def test_parse_set_yaml_values():
    values = parse_set([
        "train.lr=1e-3", "train.epochs=7", "train.weight_decay=0.5", "eval.ks=[10,20]", "data.time_col=null",
        "train.amp=false", "eval.exclude_history=true", "data.dataset=beauty", "train.clip_grad=null",
    ])
    assert values["train"]["epochs"] == 7 and values["train"]["weight_decay"] == 0.5
    assert values["eval"]["ks"] == [10, 20]
    assert values["data"]["time_col"] is None and values["train"]["clip_grad"] is None
    assert values["train"]["amp"] is False and values["eval"]["exclude_history"] is True
    assert values["data"]["dataset"] == "beauty"
    cfg = build_config("sasrec", SASRecConfig, values)
    assert cfg.train.lr == pytest.approx(1e-3) and isinstance(cfg.train.lr, float)  # "1e-3" is a string in YAML 1.1
    assert cfg.train.epochs == 7 and isinstance(cfg.train.epochs, int)
    assert cfg.eval.ks == [10, 20]
    assert cfg.data.time_col is None and cfg.train.clip_grad is None
    assert cfg.train.amp is False and cfg.eval.exclude_history is True
    assert cfg.data.dataset == "beauty"


def test_parse_set_later_pair_wins_and_value_may_contain_equals():
    values = parse_set(["train.lr=0.1", "train.lr=0.2", "data.sep=a=b"])
    assert values == {"train": {"lr": 0.2}, "data": {"sep": "a=b"}}


def test_parse_set_coercions():
    cfg = build_config("sasrec", SASRecConfig, parse_set(["eval.ks=5", "train.epochs=3.0", "train.lr=1", "train.amp=no"]))
    assert cfg.eval.ks == [5]  # a scalar becomes a one-element list
    assert cfg.train.epochs == 3 and isinstance(cfg.train.epochs, int)
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)
    assert cfg.train.amp is False


@pytest.mark.parametrize("pair", ["train.lr", "lr=1", "train.lr.x=1", "train.=1", ".lr=1"])
def test_parse_set_malformed(pair):
    with pytest.raises(ConfigError):
        parse_set([pair])


@pytest.mark.parametrize(
    "pair, key",
    [
        ("train.lr=abc", "train.lr"),
        ("train.lr=[1,2]", "train.lr"),
        ("train.lr=true", "train.lr"),
        ("train.epochs=2.5", "train.epochs"),
        ("train.epochs=ten", "train.epochs"),
        ("train.epochs=true", "train.epochs"),
        ("train.amp=maybe", "train.amp"),
        ("eval.ks=[10,x]", "eval.ks[1]"),
        ("eval.ks={a: 1}", "eval.ks"),
        ("data.dataset=[a,b]", "data.dataset"),
        ("data.dataset=null", "data.dataset"),
        ("train.batch_size=null", "train.batch_size"),
        ("model.hidden_size=big", "model.hidden_size"),
    ],
)
def test_type_errors_name_the_key(pair, key):
    with pytest.raises(ConfigError) as exc:
        build_config("sasrec", SASRecConfig, parse_set([pair]))
    assert key in str(exc.value)


def test_unknown_key_lists_known_keys():
    with pytest.raises(ConfigError) as exc:
        build_config("sasrec", SASRecConfig, parse_set(["train.learning_rate=0.1"]))
    msg = str(exc.value)
    assert "train.learning_rate" in msg
    for known in ("lr", "epochs", "batch_size", "valid_metric"):
        assert known in msg


def test_unknown_section_lists_known_sections():
    with pytest.raises(ConfigError) as exc:
        build_config("sasrec", SASRecConfig, {"optim": {"lr": 0.1}})
    msg = str(exc.value)
    assert "optim" in msg
    for known in ("model", "data", "train", "eval", "protocol"):
        assert known in msg


def test_section_must_be_mapping():
    with pytest.raises(ConfigError, match="train"):
        build_config("sasrec", SASRecConfig, {"train": 3})
    with pytest.raises(ConfigError, match="model"):
        build_config("sasrec", SASRecConfig, {"model": [1]})


def test_yaml_file_and_overrides_precedence(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump({
        "train": {"lr": 0.01, "epochs": 5, "batch_size": 32},
        "eval": {"ks": [1, 2]},
        "model": {"hidden_size": 32, "n_layers": 3},
    }))
    cfg = make_config("sasrec", None, path)
    assert cfg.train.lr == 0.01 and cfg.train.epochs == 5 and cfg.train.batch_size == 32  # file over defaults
    assert cfg.eval.ks == [1, 2] and cfg.model.hidden_size == 32 and cfg.model.n_layers == 3
    assert cfg.train.patience == TrainConfig().patience  # untouched keys keep the defaults
    cfg = make_config("sasrec", parse_set(["train.lr=0.5", "model.hidden_size=8"]), str(path))
    assert cfg.train.lr == 0.5 and cfg.model.hidden_size == 8  # overrides over the file
    assert cfg.train.epochs == 5 and cfg.train.batch_size == 32 and cfg.model.n_layers == 3  # rest of the file kept
    assert cfg.eval.ks == [1, 2]


def test_yaml_file_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        make_config("sasrec", None, bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        make_config("sasrec", None, listy)
    typo = tmp_path / "typo.yaml"
    typo.write_text("train:\n  lr: fast\n")
    with pytest.raises(ConfigError, match="train.lr"):
        make_config("sasrec", None, typo)


def test_model_section_typed_per_model():
    cfg = make_config("sasrec", {"model": {"hidden_size": "48", "n_heads": 4}})
    assert isinstance(cfg.model, SASRecConfig) and cfg.model.hidden_size == 48 and cfg.model.n_heads == 4
    cfg = make_config("gru4rec", {"model": {"gru_size": 16}})
    assert isinstance(cfg.model, GRU4RecConfig) and cfg.model.gru_size == 16
    # a SASRec-only key is unknown to GRU4Rec, and the error lists GRU4Rec's keys
    with pytest.raises(ConfigError) as exc:
        make_config("gru4rec", {"model": {"n_heads": 2}})
    assert "model.n_heads" in str(exc.value) and "gru_size" in str(exc.value)
    with pytest.raises(ConfigError, match="model.not_a_key"):
        make_config("sasrec", {"model": {"not_a_key": 1}})
    with pytest.raises(ValueError, match="unknown model"):
        make_config("no-such-model")


@pytest.mark.parametrize("model", sorted(MODELS))
def test_to_dict_round_trips_through_yaml(model):
    cfg = make_config(model, parse_set(["train.lr=3e-4", "eval.ks=[5,50]", "data.time_col=null", "train.clip_grad=null",
                                        "data.min_rating=4", "protocol.train_windows=last"]))
    text = yaml.safe_dump(cfg.to_dict(), sort_keys=False)
    values = yaml.safe_load(text)
    assert values["model_name"] == model
    back = build_config(values["model_name"], MODELS[model].config_class, values)
    assert back == cfg
    assert back.data.min_rating == 4.0 and isinstance(back.data.min_rating, float)


def test_make_config_resolves_existing_file_path(tmp_path, monkeypatch):
    f = tmp_path / "seqs.txt"
    f.write_text("u1 a b c\n")
    monkeypatch.chdir(tmp_path)
    cfg = make_config("sasrec", {"data": {"dataset": "seqs.txt"}})
    assert cfg.data.dataset == str(f.resolve())
    cfg = make_config("sasrec", {"data": {"dataset": "beauty"}})
    assert cfg.data.dataset == "beauty"  # catalog names stay names


@pytest.mark.parametrize("name", ["ndcg@10", "recall@20", "hit@10", "precision@20", "mrr", "coverage@10"])
def test_check_metric_name_accepts(name):
    check_metric_name(name, [10, 20])


@pytest.mark.parametrize("name", ["ndcg@15", "ndcg", "ndcg@", "auc@10", "recall@x", "MRR", "ndcg10", "mrr@15"])
def test_check_metric_name_rejects(name):
    with pytest.raises(ValueError, match="valid_metric"):
        check_metric_name(name, [10, 20])


def test_coverage_not_produced_by_sampled_evaluation():
    check_metric_name("ndcg@10", [10], sampled=True)
    with pytest.raises(ValueError, match="valid_metric"):
        check_metric_name("coverage@10", [10], sampled=True)


def _tiny_data():
    lengths = [6, 5, 4, 7]
    rng = np.random.default_rng(0)
    items = rng.integers(1, 13, sum(lengths))
    return SequenceData(items, np.concatenate([[0], np.cumsum(lengths)]), np.array([f"u{i}" for i in range(4)], dtype=object),
                        np.array(["<pad>"] + [f"i{i}" for i in range(1, 13)], dtype=object))


@pytest.mark.parametrize("overrides", [
    ["train.valid_metric=ndcg@15", "eval.ks=[10,20]"],
    ["train.valid_metric=auc"],
    ["train.valid_metric=coverage@10", "eval.ks=[10]", "eval.sampled_negatives=5"],
])
def test_invalid_valid_metric_raises_before_training(tmp_path, overrides):
    cfg = make_config("sasrec", parse_set(overrides + ["train.progress=false", "model.hidden_size=8", "model.n_layers=1"]))
    run_dir = tmp_path / "run"
    with pytest.raises(ValueError, match="valid_metric"):
        Trainer(cfg, run_dir, data=_tiny_data()).fit()
    assert not run_dir.exists()  # failed in the constructor: nothing written, no epoch trained
