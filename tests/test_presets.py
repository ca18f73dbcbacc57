"""Presets: tuned settings per (model, data set) shipped in the package, below --config and --set."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from sigmarec.runs import config as run


@pytest.fixture
def presets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "sigma-office.yaml").write_text("model:\n  n_layers: 3\n  dropout: 0.4\ndata:\n  max_len: 60\n")
    (tmp_path / "sigma-default.yaml").write_text("model:\n  n_layers: 2\n")
    monkeypatch.setattr(run, "PRESETS", tmp_path)
    return tmp_path


def test_dataset_preset_then_default_then_none(presets: Path) -> None:
    assert run.find_preset("sigma", "office") == presets / "sigma-office.yaml"
    assert run.find_preset("SIGMA", "beauty") == presets / "sigma-default.yaml"
    assert run.find_preset("sasrec", "office") is None
    assert run.find_preset("sigma", "office", "none") is None
    assert run.find_preset("sigma", "beauty", "office") == presets / "sigma-office.yaml"


def test_unknown_preset_names_the_known_ones(presets: Path) -> None:
    with pytest.raises(FileNotFoundError, match="sigma-default"):
        run.find_preset("sigma", "office", "toys")


def test_preset_sits_between_code_defaults_and_overrides(presets: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="sigmarec"):
        cfg = run.make_config("sigma", {"data": {"dataset": "office"}, "model": {"dropout": 0.2}})
    assert "sigma-office.yaml" in caplog.text
    assert (cfg.model.n_layers, cfg.model.dropout, cfg.data.max_len) == (3, 0.2, 60)
    assert run.make_config("sigma", {"data": {"dataset": "office"}}, preset="none").model.n_layers == 1
    assert run.make_config("sigma", {"data": {"dataset": "synthetic"}}).model.n_layers == 2


def test_shipped_presets_are_valid_configs() -> None:
    shipped = sorted(run.PRESETS.glob("*.yaml"))
    for path in shipped:
        model, _, name = path.stem.partition("-")
        cfg = run.make_config(model, {"data": {"dataset": name if name != "default" else "synthetic"}}, preset=str(path))
        assert cfg.model_name == model
