"""The configuration resolver: one precedence, explicit layers, and a record of who set what."""

from __future__ import annotations

import pytest
import yaml

from sigmarec.cli import main
from sigmarec.config import ConfigError, describe, resolve
from sigmarec.models.sasrec import SASRec, SASRecConfig
from sigmarec.runs import config_layers, make_config


def test_a_user_value_equal_to_the_code_default_still_wins_over_the_catalog():
    """``tools`` needs a 5-core by default; ``--set data.user_core=0`` (the code default) must stay 0."""
    sources: dict[str, str] = {}
    cfg = make_config("sasrec", {"data": {"dataset": "tools", "user_core": 0}}, sources=sources)
    assert cfg.data.user_core == 0 and cfg.data.item_core == 5
    assert sources["data.user_core"] == "--set (over data set tools: 5)"
    assert sources["data.item_core"] == "data set tools"
    assert make_config("sasrec", {"data": {"dataset": "tools"}}).data.user_core == 5
    assert make_config("sasrec", {"data": {"dataset": "office"}}).data.user_core == 0


def test_precedence_code_model_dataset_preset_file_set(tmp_path, monkeypatch):
    """Each layer beats the ones below it, key by key."""
    monkeypatch.setattr(SASRec, "train_defaults", {"train": {"epochs": 7, "patience": 3, "lr": 0.5}})
    (tmp_path / "sasrec-tools.yaml").write_text("train: {patience: 4, lr: 0.25}\ndata: {user_core: 2}\n")
    monkeypatch.setattr("sigmarec.runs.config.PRESETS", tmp_path)
    file = tmp_path / "mine.yaml"
    file.write_text("train: {lr: 0.125, batch_size: 32}\n")
    sources: dict[str, str] = {}
    cfg = make_config("sasrec", {"data": {"dataset": "tools"}, "train": {"batch_size": 16}}, config_file=file, sources=sources)
    assert cfg.train.epochs == 7 and sources["train.epochs"] == "sasrec training defaults"
    assert cfg.train.patience == 4 and sources["train.patience"].startswith("preset sasrec-tools.yaml")
    assert cfg.data.user_core == 2 and cfg.data.item_core == 5  # preset over the catalog for one key only
    assert cfg.train.lr == 0.125 and sources["train.lr"].startswith(f"config file {file}")
    assert cfg.train.batch_size == 16 and sources["train.batch_size"] == f"--set (over config file {file}: 32)"
    assert cfg.train.optimizer == "adam" and "train.optimizer" not in sources
    names = [name for name, _ in config_layers("sasrec", {"data": {"dataset": "tools"}}, config_file=file)]
    assert names == ["sasrec training defaults", "data set tools", "preset sasrec-tools.yaml", f"config file {file}", "--set"]


def test_an_error_names_the_layer_it_came_from(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {lr: fast}\n")
    with pytest.raises(ConfigError, match=r"config file .*bad.yaml: train.lr: expected a number"):
        make_config("sasrec", config_file=bad)
    with pytest.raises(ConfigError, match=r"--set: unknown key model.nope"):
        make_config("sasrec", {"model": {"nope": 1}})


def test_resolve_is_pure_and_reports_sources():
    cfg, sources = resolve("sasrec", SASRecConfig, [("a", {"train": {"lr": 0.1}}), ("b", {"train": {"lr": 0.1, "seed": 3}})])
    assert cfg.train.lr == 0.1 and cfg.train.seed == 3
    assert sources == {"train.lr": "b", "train.seed": "b"}  # same value again: no "over"


def test_described_config_round_trips_and_marks_non_defaults():
    sources: dict[str, str] = {}
    cfg = make_config("sigma", {"data": {"dataset": "office"}, "train": {"epochs": 3}}, sources=sources)
    text = describe(cfg, sources)
    assert yaml.safe_load(text) == cfg.to_dict()
    assert "epochs: 3  # --set" in text and "dataset: office  # --set" in text
    assert "lr: 0.001\n" in text  # untouched default: no note


def test_show_config_prints_and_trains_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "sasrec", "--dataset", "tools", "--set", "data.user_core=0", "--show-config", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "user_core: 0  # --set (over data set tools: 5)" in text
    assert "item_core: 5  # data set tools" in text
    assert not out.exists()


@pytest.mark.parametrize("key,value", [
    ("model.prior", "gaussian"), ("model.soft_pool", "max"), ("model.loss", "hinge"), ("train.optimizer", "sgd"),
    ("protocol.name", "random"), ("data.duplicates", "all"), ("eval.sampler", "zipf"),
])
def test_option_values_are_checked_by_the_config_layer(key, value):
    section, field = key.split(".")
    with pytest.raises(ConfigError, match=rf"{key}: expected one of .*got '{value}'"):
        make_config("sigma", {section: {field: value}})


@pytest.mark.parametrize("key,value", [
    ("train.clip_grad", -1), ("train.batch_size", 0), ("train.batch_size", -1), ("train.epochs", 0), ("train.epochs", -3),
    ("train.epochs", float("inf")), ("train.patience", 0), ("train.eval_every", 0), ("train.num_threads", -1),
    ("train.device", "bogus"), ("train.lr", float("nan")), ("data.max_len", 0), ("eval.batch_size", 0), ("eval.ks", [0]),
    ("train.seed", -1), ("data.synthetic_seed", -2), ("eval.sampler_seed", -1),  # numpy's generators take no negative seed
])
def test_nonsense_settings_are_rejected_naming_the_key(key, value):
    section, field = key.split(".")
    with pytest.raises(ConfigError, match=rf"{key}: expected"):
        make_config("sasrec", {section: {field: value}})


def test_a_bad_option_fails_before_any_data_is_read(tmp_path, capsys):
    missing = tmp_path / "no-such-log.csv"
    assert main(["train", "sigma", "--dataset", str(missing), "--set", "model.prior=bogus", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "model.prior: expected one of mixture, standard" in err and "no-such-log" not in err
    assert not (tmp_path / "r").exists()


def test_models_built_in_code_check_their_options_too():
    from sigmarec.models.sigma import SIGMA, SIGMAConfig

    with pytest.raises(ConfigError, match="model.prior_map: expected one of none, linear, norm"):
        SIGMA(SIGMAConfig(prior_map="projection"), n_items=10, max_len=5)


def test_cli_prints_project_errors_in_one_line_and_bugs_with_a_hint(tmp_path, capsys, monkeypatch):
    assert main(["evaluate", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "config.yaml: not found" in err and "Traceback" not in err

    import sigmarec.cli as cli

    def broken(args):
        raise KeyError("a real bug")

    monkeypatch.setattr(cli, "cmd_evaluate", broken)
    parser = cli.build_parser

    def patched_parser():
        p = parser()
        for action in p._subparsers._group_actions:
            action.choices["evaluate"].set_defaults(func=broken)
        return p

    monkeypatch.setattr(cli, "build_parser", patched_parser)
    assert main(["evaluate", "x"]) == 1
    err = capsys.readouterr().err
    assert "internal error (KeyError" in err and "-v" in err and "Traceback" not in err
    assert main(["-v", "evaluate", "x"]) == 1
    assert "Traceback" in capsys.readouterr().err


@pytest.mark.parametrize("model,key,value", [
    ("sasrec", "hidden_size", 0), ("sigma", "dropout", 1.0), ("gru4rec", "dropout", -0.1), ("mind", "n_interests", 0),
    ("sasrec", "n_heads", 3), ("sigma", "attn_dropout", 1.5), ("pop", "n_negatives", 0), ("dss", "init_std", -1),
])
def test_shared_model_fields_are_range_checked_for_every_model(model, key, value):
    with pytest.raises(ConfigError, match=rf"model.\w+: expected"):
        make_config(model, {"model": {key: value}})
