"""Checkpoints carry the config with the weights; loading never runs code.

Two formats, chosen by suffix:

* `.safetensors`: weights plus the config (JSON) in the header metadata.  No
  pickle at all: what the project ships.

Either may record what the model was trained on (`trained_on`: the
normalisation and the range of the normalised training pixels), which `model
info` prints and a job's planning checks its input against.
* `.pt`: a torch.save dict {format, config, state_dict, ...} that may also hold
  optimizer state and the training step; read with `weights_only=True`, which
  refuses any pickled object that is not plain data or a tensor.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from pipeline.errors import CheckpointError
from pipeline.model.config import UNetConfig
from pipeline.model.unet import UNet

FORMAT = "segment-archive/unet/1"


def save_checkpoint(model: UNet, path: str | Path, trained_on: dict[str, Any] | None = None, **extra: Any) -> Path:
    """Write `model` (config + weights, and `trained_on` if given); `extra` goes into `.pt` files only."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    config = model.config.model_dump(mode="json")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    if path.suffix == ".safetensors":
        if extra:
            raise CheckpointError(f"{path}: .safetensors holds weights and config only, not {sorted(extra)}")
        metadata = {"format": FORMAT, "config": json.dumps(config)}
        if trained_on is not None:
            metadata["trained_on"] = json.dumps(trained_on, sort_keys=True)
        save_file(state, str(tmp), metadata=metadata)
    else:
        record = {} if trained_on is None else {"trained_on": trained_on}
        torch.save({"format": FORMAT, "config": config, "state_dict": state, **record, **extra}, tmp)
    tmp.chmod(0o666 & ~current_umask())  # safetensors writes 0600; every checkpoint gets the usual mode
    tmp.replace(path)  # a reader never sees half a checkpoint
    return path


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint's contents as plain data and tensors, without building a model."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{path}: refused to load: not a plain-data checkpoint (only tensors and plain values are "
            f"accepted; nothing in it was executed): {first_line}"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a segment-archive checkpoint (expected format {FORMAT!r})")
    return payload


def _read_safetensors(path: Path) -> dict[str, Any]:
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file: {exc}") from None
    if metadata.get("format") != FORMAT or "config" not in metadata:
        raise CheckpointError(f"{path}: safetensors file without segment-archive metadata (format {FORMAT!r})")
    try:
        config = json.loads(metadata["config"])
        trained_on = json.loads(metadata["trained_on"]) if "trained_on" in metadata else None
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: metadata is not JSON: {exc}") from None
    payload = {"format": FORMAT, "config": config, "state_dict": state}
    return payload if trained_on is None else {**payload, "trained_on": trained_on}


def trained_on(path: str | Path) -> dict[str, Any] | None:
    """What the checkpoint says it was trained on ({"normalize", "low", "high"}), or None if it does not say."""
    path = Path(path)
    if path.suffix == ".safetensors":  # the header alone, not the weights
        try:
            with safe_open(str(path), framework="numpy") as f:
                text = (f.metadata() or {}).get("trained_on")
            record = None if text is None else json.loads(text)
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"{path}: cannot read its trained_on record: {exc}") from None
    else:
        record = read_checkpoint(path).get("trained_on")
    if record is None:
        return None
    valid = (
        isinstance(record, dict)
        and isinstance(record.get("normalize"), dict)
        and all(isinstance(record.get(k), (int, float)) and math.isfinite(record[k]) for k in ("low", "high"))
    )
    if not valid:
        raise CheckpointError(f"{path}: trained_on record is not {{normalize, low, high}}: {record!r}")
    return dict(record)


def model_from_payload(payload: dict[str, Any], source: str) -> UNet:
    try:
        config = UNetConfig.model_validate(payload["config"])
    except (ValidationError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{source}: the config stored in the checkpoint is not valid: {exc}") from None
    state = payload.get("state_dict")
    if not isinstance(state, dict):
        raise CheckpointError(f"{source}: checkpoint has no state_dict")
    # The config's shapes first, on the meta device (no memory): a tiny file whose config claims a
    # huge net is refused at once, not after allocating it.
    with torch.device("meta"):
        expected = UNet(config).state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        details = "; ".join(
            part
            for part in (
                f"missing {missing[:3]}" if missing else "",
                f"unexpected {unexpected[:3]}" if unexpected else "",
                ", ".join(
                    f"{k}: weights {tuple(state[k].shape)} vs config {tuple(expected[k].shape)}" for k in wrong[:3]
                ),
            )
            if part
        )
        raise CheckpointError(f"{source}: weights do not match the stored config ({details})")
    model = UNet(config)
    model.load_state_dict(state)
    return model.eval()


def load_checkpoint(path: str | Path) -> UNet:
    """The model saved at `path`, in eval mode."""
    return model_from_payload(read_checkpoint(path), str(path))


def model_fingerprint(model: UNet) -> str:
    """sha256 over the config and every tensor (names, shapes, dtypes, bytes)."""
    digest = hashlib.sha256(json.dumps(model.config.model_dump(mode="json"), sort_keys=True).encode())
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()
