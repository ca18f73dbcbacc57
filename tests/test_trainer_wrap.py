"""The trainer drives the model through ``forward`` (so DDP and torch.compile wrappers see training) and
advances per-step schedules through the ``on_train_step`` hook."""

from __future__ import annotations

import json

import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from sigmarec.runs import make_config
from sigmarec.train.trainer import Trainer


class CountingWrapper(nn.Module):
    """A stand-in for a DDP-style wrapper: it only calls the wrapped module's ``forward``."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module
        self.calls = 0

    def forward(self, batch):
        self.calls += 1
        return self.module(batch)


def _cfg(tiny_overrides, model="sasrec", epochs=2):
    tiny_overrides["train"]["epochs"] = epochs
    return make_config(model, tiny_overrides)


def _test_metrics(run_dir):
    return json.loads((run_dir / "metrics.json").read_text())["test"]


def test_a_forward_only_wrapper_trains_exactly_like_the_model(tmp_path, tiny_overrides):
    cfg = _cfg(tiny_overrides)
    plain = Trainer(cfg, tmp_path / "plain").fit()["test"]
    wrappers = []
    trainer = Trainer(cfg, tmp_path / "wrapped", wrap=lambda m: wrappers.append(CountingWrapper(m)) or wrappers[-1])
    wrapped = trainer.fit()["test"]
    assert wrappers and wrappers[0].calls > 0 and trainer.train_module is wrappers[0]
    assert wrapped == plain


def test_distributed_data_parallel_on_one_gloo_process_trains(tmp_path, tiny_overrides):
    if not dist.is_available():
        pytest.skip("torch.distributed is not available in this build")
    cfg = _cfg(tiny_overrides)
    plain = Trainer(cfg, tmp_path / "plain").fit()["test"]
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        ddp = Trainer(cfg, tmp_path / "ddp", wrap=DistributedDataParallel).fit()["test"]
    finally:
        dist.destroy_process_group()
    for k, v in plain.items():
        assert ddp[k] == pytest.approx(v, abs=1e-6), k


def test_sigma_anneals_once_per_optimizer_step_under_the_trainer(tmp_path, tiny_overrides):
    tiny_overrides["model"] = {"hidden_size": 16}
    cfg = _cfg(tiny_overrides, "sigma", epochs=1)
    trainer = Trainer(cfg, tmp_path / "sigma")
    trainer.fit()
    lines = (tmp_path / "sigma" / "epochs.jsonl").read_text().splitlines()
    assert len(lines) == 1
    from sigmarec.data.batching import n_train_batches

    steps = n_train_batches(trainer.split, cfg.train.batch_size, cfg.data.max_len, cfg.train.bucket_by_length)
    assert int(trainer.model.step) == steps


def test_weight_decay_spares_biases_norms_and_scalars_by_default(tiny_overrides):
    from sigmarec.models.sasrec import SASRec, SASRecConfig
    from sigmarec.train.trainer import make_optimizer

    model = SASRec(SASRecConfig(hidden_size=16, n_layers=1), n_items=30, max_len=10)
    tc = make_config("sasrec", {"train": {"weight_decay": 0.1}}).train
    groups = make_optimizer(model, tc).param_groups
    decayed = {id(p) for g in groups if g["weight_decay"] == 0.1 for p in g["params"]}
    spared = {id(p) for g in groups if g["weight_decay"] == 0.0 for p in g["params"]}
    named = dict(model.named_parameters())
    assert {id(named["item.weight"]), id(named["encoder.blocks.0.qkv.weight"])} <= decayed
    assert {id(named["encoder.blocks.0.qkv.bias"]), id(named["encoder.norm.weight"])} <= spared
    assert decayed | spared == {id(p) for p in model.parameters()} and not decayed & spared
    everything = make_optimizer(model, make_config("sasrec", {"train": {"weight_decay": 0.1, "decay": "all"}}).train)
    assert len(everything.param_groups) == 1 and everything.param_groups[0]["weight_decay"] == 0.1
    assert len(make_optimizer(model, make_config("sasrec").train).param_groups) == 1  # no decay: the old layout
