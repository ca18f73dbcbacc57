import json
import os

import pytest
import torch
from safetensors.torch import load_file

from sigmarec.data.batching import Batch
from sigmarec.models.sasrec import SASRec, SASRecConfig
from sigmarec.config import RunError
from sigmarec.runs import find_checkpoint, load_checkpoint, save_checkpoint

N_ITEMS, MAX_LEN = 30, 8


@pytest.fixture(autouse=True)
def _single_thread(one_thread):
    """Tiny tensors: one intra-op thread (see conftest)."""


def make_model(seed=0):
    torch.manual_seed(seed)
    return SASRec(SASRecConfig(hidden_size=16, n_layers=1, n_heads=2, dropout=0.0, attn_dropout=0.0), N_ITEMS, MAX_LEN)


def make_batch(seed):
    g = torch.Generator().manual_seed(seed)
    w = torch.randint(1, N_ITEMS + 1, (6, MAX_LEN + 1), generator=g)
    w[:2, :3] = 0  # some left padding
    inputs, targets = w[:, :-1].clone(), w[:, 1:].clone()
    targets[inputs == 0] = 0
    return Batch(inputs, targets, torch.arange(6))


def train_steps(model, opt, seeds):
    model.train()
    for s in seeds:
        loss = model.loss(make_batch(s))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def all_files(root):
    return [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs]


def test_round_trip_continues_identically(tmp_path):
    model = make_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    train_steps(model, opt, range(3))
    state = {"epoch": 3, "best_value": 0.25, "best_epoch": 2, "bad_epochs": 1, "finished": False}
    save_checkpoint(tmp_path / "last", model, opt, state)

    other = make_model(seed=123)  # different initial weights
    other_opt = torch.optim.Adam(other.parameters(), lr=0.5)  # different lr: must come back from the checkpoint
    assert not torch.equal(other.item.weight, model.item.weight)
    got = load_checkpoint(tmp_path / "last", other, other_opt)
    assert got == state
    for (k, a), b in zip(model.state_dict().items(), other.state_dict().values()):
        assert torch.equal(a, b), k
    assert other_opt.param_groups[0]["lr"] == pytest.approx(1e-2)
    src_state, dst_state = opt.state_dict()["state"], other_opt.state_dict()["state"]
    assert src_state.keys() == dst_state.keys() and len(src_state) == len(list(model.parameters()))
    for pid in src_state:
        for key in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(torch.as_tensor(src_state[pid][key]), torch.as_tensor(dst_state[pid][key])), (pid, key)

    # continuing both gives bit-identical parameters
    train_steps(model, opt, range(3, 6))
    train_steps(other, other_opt, range(3, 6))
    for (k, a), b in zip(model.state_dict().items(), other.state_dict().values()):
        assert torch.equal(a, b), k
    # ...and differs from continuing without the optimizer state (so the check above has teeth)
    fresh = make_model(seed=5)
    load_checkpoint(tmp_path / "last", fresh, None)
    fresh_opt = torch.optim.Adam(fresh.parameters(), lr=1e-2)
    train_steps(fresh, fresh_opt, range(3, 6))
    assert not torch.equal(fresh.item.weight, model.item.weight)


def test_files_are_safetensors_and_json_only(tmp_path):
    model = make_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    train_steps(model, opt, range(2))
    save_checkpoint(tmp_path / "ckpt", model, opt, {"epoch": 2})
    save_checkpoint(tmp_path / "best", model, None, {"epoch": 2, "ndcg@10": 0.5})
    files = all_files(tmp_path)
    assert not [f for f in files if f.endswith((".pt", ".pth", ".pkl", ".pickle", ".bin"))]
    assert sorted(os.listdir(tmp_path / "ckpt")) == ["model.safetensors", "optimizer.safetensors", "state.json"]
    assert sorted(os.listdir(tmp_path / "best")) == ["model.safetensors", "state.json"]
    assert sorted(os.listdir(tmp_path)) == ["best", "ckpt"]  # no temporaries or .old copies left behind
    meta = json.loads((tmp_path / "ckpt" / "state.json").read_text())
    assert meta["epoch"] == 2 and "param_groups" in meta["optimizer"]
    best = json.loads((tmp_path / "best" / "state.json").read_text())
    assert set(best.pop("files")) == {"model.safetensors"} and best == {"epoch": 2, "ndcg@10": 0.5}
    weights = load_file(str(tmp_path / "ckpt" / "model.safetensors"))
    assert set(weights) == set(model.state_dict())
    # not pickles: each tensor file starts with the safetensors length-prefixed JSON header
    for name in ("model.safetensors", "optimizer.safetensors"):
        raw = (tmp_path / "ckpt" / name).read_bytes()
        header_len = int.from_bytes(raw[:8], "little")
        json.loads(raw[8 : 8 + header_len])


def test_overwrite_replaces_previous(tmp_path):
    model = make_model()
    save_checkpoint(tmp_path / "last", model, None, {"epoch": 1})
    with torch.no_grad():
        model.item.weight.add_(1.0)
    save_checkpoint(tmp_path / "last", model, None, {"epoch": 2})
    other = make_model(seed=9)
    assert load_checkpoint(tmp_path / "last", other)["epoch"] == 2
    assert torch.equal(other.item.weight, model.item.weight)
    assert sorted(os.listdir(tmp_path)) == ["last"]


def test_crash_between_renames_is_recovered(tmp_path):
    model = make_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    train_steps(model, opt, range(2))
    save_checkpoint(tmp_path / "last", model, opt, {"epoch": 4})
    # a crash after "last -> last.old" and before "tmp -> last": only the old copy exists
    os.replace(tmp_path / "last", tmp_path / "last.old")
    found = find_checkpoint(tmp_path / "last")
    assert found == tmp_path / "last.old"
    other = make_model(seed=1)
    other_opt = torch.optim.Adam(other.parameters(), lr=1e-3)
    assert load_checkpoint(found, other, other_opt)["epoch"] == 4
    assert torch.equal(other.item.weight, model.item.weight)
    # the next save cleans the old copy up
    save_checkpoint(tmp_path / "last", other, other_opt, {"epoch": 5})
    assert find_checkpoint(tmp_path / "last") == tmp_path / "last"
    assert not (tmp_path / "last.old").exists()


def test_find_checkpoint_prefers_complete_current_and_ignores_partial(tmp_path):
    assert find_checkpoint(tmp_path / "last") is None
    model = make_model()
    save_checkpoint(tmp_path / "last", model, None, {"epoch": 1})
    (tmp_path / "last.old").mkdir()
    (tmp_path / "last.old" / "state.json").write_text("{}")
    assert find_checkpoint(tmp_path / "last") == tmp_path / "last"
    # a directory without state.json is not a checkpoint
    (tmp_path / "partial").mkdir()
    (tmp_path / "partial" / "model.safetensors").write_bytes(b"")
    assert find_checkpoint(tmp_path / "partial") is None


# ---------------------------------------------------------------- corruption


def _saved(tmp_path):
    torch.manual_seed(0)
    model = make_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    train_steps(model, opt, range(2))
    save_checkpoint(tmp_path / "last", model, opt, {"epoch": 2})
    return model, opt


@pytest.mark.parametrize("damage", ["flip one bit", "truncate", "delete"])
@pytest.mark.parametrize("name", ["model.safetensors", "optimizer.safetensors"])
def test_a_damaged_tensor_file_is_named_on_load(tmp_path, damage, name):
    model, opt = _saved(tmp_path)
    path = tmp_path / "last" / name
    raw = bytearray(path.read_bytes())
    if damage == "flip one bit":
        raw[len(raw) // 2] ^= 0x01
        path.write_bytes(bytes(raw))
    elif damage == "truncate":
        path.write_bytes(bytes(raw[: len(raw) // 3]))
    else:
        path.unlink()
    with pytest.raises(RunError, match=rf"{name}: (checksum mismatch|missing)"):
        load_checkpoint(tmp_path / "last", make_model(), torch.optim.Adam(make_model().parameters()))


def test_a_truncated_state_file_is_named(tmp_path):
    _saved(tmp_path)
    state = tmp_path / "last" / "state.json"
    state.write_text(state.read_text()[:40])
    with pytest.raises(RunError, match=r"state.json: not a valid checkpoint state"):
        load_checkpoint(tmp_path / "last", make_model())


def test_find_checkpoint_prefers_an_intact_copy_and_says_so(tmp_path, caplog):
    _saved(tmp_path)
    import shutil

    shutil.copytree(tmp_path / "last", tmp_path / "last.old")  # what a crash between the two renames leaves
    path = tmp_path / "last" / "model.safetensors"
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 0x10
    path.write_bytes(bytes(raw))
    with caplog.at_level("WARNING", logger="sigmarec"):
        assert find_checkpoint(tmp_path / "last") == tmp_path / "last.old"
    assert "checksum mismatch" in caplog.text and "last.old instead" in caplog.text
    shutil.rmtree(tmp_path / "last.old")
    assert find_checkpoint(tmp_path / "last") == tmp_path / "last"  # no intact copy: loading it will name the file
