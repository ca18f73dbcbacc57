"""Run directories, below evaluation, training and serving: the configuration resolver's layers,
checkpoints, atomic writers and reloading a finished run. Everything that reads or writes a run
directory imports from here, so nothing needs the trainer to load a model."""

from sigmarec.runs.checkpoint import find_checkpoint, load_checkpoint, read_state, remove_checkpoint, save_checkpoint
from sigmarec.runs.config import config_layers, default_run_dir, find_preset, load_run_config, make_config, refit_plan, show_config
from sigmarec.runs.files import write_json_atomic, write_text_atomic
from sigmarec.runs.lock import RunLock, remove_stale_temporaries
from sigmarec.runs.load import LoadedRun, build_model, check_data_pin, load_run, load_run_data, resolve_device, save_data_snapshot

__all__ = [
    "LoadedRun", "RunLock", "build_model", "check_data_pin", "config_layers", "default_run_dir", "find_checkpoint", "find_preset",
    "load_checkpoint", "load_run", "load_run_data", "load_run_config", "make_config", "read_state", "refit_plan", "remove_checkpoint", "remove_stale_temporaries", "resolve_device", "save_checkpoint",
    "save_data_snapshot", "show_config",
    "write_json_atomic", "write_text_atomic",
]
