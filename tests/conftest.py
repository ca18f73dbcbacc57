import subprocess
import sys
from pathlib import Path

import pytest
import torch

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def shared_file(name: str) -> Path:
    path = SHARED / name
    if not path.exists():
        pytest.skip(f"{path} not present (the shared reference data sets are not available here)")
    return path


@pytest.fixture
def tiny_overrides(tmp_path):
    """A small synthetic data set and model so end-to-end runs take seconds."""
    return {
        "data": {"dataset": "synthetic", "synthetic_users": 150, "cache_dir": str(tmp_path / "cache"), "max_len": 20},
        "model": {"hidden_size": 16, "n_layers": 1},
        "eval": {"ks": [5, 10]},
        "train": {"epochs": 4, "batch_size": 64, "progress": False, "seed": 3, "patience": 50, "valid_metric": "ndcg@10"},
    }


def run_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "sigmarec", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"sigmarec {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


@pytest.fixture
def one_thread():
    """Tiny tensors: one intra-op thread is faster and avoids oversubscribing a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def train_tiny(model: str, root: Path, users: int = 150, epochs: int = 1, train: dict | None = None, **settings) -> Path:
    """A small run of ``model`` on the synthetic data in ``root/run`` (seed 3, max length 20, metrics at 5 and 10),
    for the tests that need a trained run directory; ``settings`` are model settings."""
    from sigmarec.runs import make_config
    from sigmarec.train.trainer import Trainer

    cfg = make_config(model, {
        "data": {"dataset": "synthetic", "synthetic_users": users, "cache_dir": str(root / "cache"), "max_len": 20},
        "model": settings, "eval": {"ks": [5, 10]},
        "train": {"epochs": epochs, "progress": False, "seed": 3, "valid_metric": "ndcg@10", **(train or {})}})
    Trainer(cfg, root / "run").fit()
    return root / "run"
