"""The records a run or head folder keeps, without the paths of the machine that wrote them.

A run's ``tweetheads_run.json`` records its data files and its base model by path, a head's
``head.json`` and ``train_report.json`` the paths it was given; nothing reads those paths back
except on the machine that trained it (``compare`` finds the training file through the run). What
leaves the machine (``export``, ``push``) carries them by file name instead. None of these files is
covered by its folder's digests (those cover the weights and the head's arrays), so rewriting them
changes no check.
"""
from __future__ import annotations

import json
from pathlib import Path

from embed.models import looks_like_hub_id, run_base_model


def name_of(value) -> str | None:
    """A path as its last part; a hub id or alias as given; None stays None."""
    if value is None:
        return None
    text = str(value)
    if looks_like_hub_id(text) and not Path(text).is_absolute() and not Path(text).exists():
        return text
    return Path(text.rstrip("/")).name or text


def run_info(info: dict) -> dict:
    """A copy of a run's ``tweetheads_run.json`` with paths (its data files, the file its temperature was fitted
    on) replaced by their names (``name_of``) and ``base_model_path`` and ``run_dir`` left out.
    """
    out = json.loads(json.dumps(info))
    out.pop("base_model_path", None)
    out.pop("run_dir", None)
    out["base_model_id"] = run_base_model(info)
    out["base_model"] = name_of(info.get("base_model"))
    if isinstance(out.get("config"), dict) and "model" in out["config"]:
        out["config"]["model"] = name_of(out["config"]["model"])
    calibration = out.get("calibration") if isinstance(out.get("calibration"), dict) else {}
    for entry in [*(out.get("data") or {}).values(), calibration.get("fitted_on")]:  # the file T was fitted on too
        if isinstance(entry, dict) and "path" in entry:
            entry["path"] = name_of(entry["path"])
    return out


def head_config(config: dict) -> dict:
    """A copy of a head's ``head.json`` config with the model's path left out and its model name made portable."""
    out = json.loads(json.dumps(config))
    model = out.get("model")
    if isinstance(model, dict):
        model.pop("path", None)
        if "model" in model:
            model["model"] = name_of(model["model"])
    return out


def train_report(record: dict) -> dict:
    """A copy of a head's ``train_report.json`` with its folder and data file paths replaced by their names."""
    out = json.loads(json.dumps(record))
    for key in ("out_dir", "train_path", "eval_path"):
        if out.get(key) is not None:
            out[key] = name_of(out[key])
    for entry in (out.get("files") or {}).values():
        if isinstance(entry, dict) and "path" in entry:
            entry["path"] = name_of(entry["path"])
    return out


def write_json(path: Path, data: dict) -> None:
    """Write ``data`` to ``path`` as indented UTF-8 JSON with a final newline."""
    Path(path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
