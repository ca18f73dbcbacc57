"""The accelerator path (issue 20): what runs on CUDA where a GPU is present (marked ``gpu``, skipped elsewhere),
and the CPU-checkable parts of it: the compile switch and float32 KL terms under bf16 autocast."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import train_tiny
from sigmarec.models.layers.gaussian import kl_diag_gaussians, kl_standard_normal

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")


def test_kl_terms_are_float32_under_bf16():
    mean, logvar = torch.randn(4, 8).bfloat16(), torch.randn(4, 8).bfloat16()
    assert kl_standard_normal(mean, logvar).dtype == torch.float32
    assert kl_diag_gaussians(mean, logvar, mean, logvar).dtype == torch.float32
    assert kl_standard_normal(mean.double(), logvar.double()).dtype == torch.float64  # never lowered


def test_train_compile_wraps_the_training_module(tmp_path, monkeypatch, one_thread):
    compiled = []

    def fake_compile(module):  # the wiring, without paying inductor's compilation on CPU
        compiled.append(module)
        return module

    monkeypatch.setattr(torch, "compile", fake_compile)
    train_tiny("sasrec", tmp_path, users=60, train={"compile": True}, hidden_size=8, n_layers=1)
    assert len(compiled) == 1 and compiled[0].__class__.__name__ == "SASRec"


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("model", ["sasrec", "sigma"])
def test_trains_and_evaluates_on_cuda_with_bf16(tmp_path, model):
    run = train_tiny(model, tmp_path, users=200, epochs=2, train={"device": "cuda", "amp": True}, hidden_size=16)
    metrics = json.loads((run / "metrics.json").read_text())
    losses = [json.loads(line)["loss"] for line in (run / "epochs.jsonl").read_text().splitlines()]
    assert all(map(lambda v: v == v and abs(v) < 1e6, losses)) and losses[-1] < losses[0]
    assert 0 < metrics["test"]["ndcg@10"] <= 1
