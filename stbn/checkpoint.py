"""Checkpoints that carry their config, and the importer for the authors' published layout."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stbn.config import FlowKind, STBNConfig
from stbn.model import STBN
from stbn.noise_estimation import NoiseFamily

FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be used as asked (wrong preset, wrong format, missing keys)."""


@dataclass(frozen=True)
class NoiseModel:
    """The noise the weights were trained for: AWGN over a sigma range or Poisson-Gaussian."""

    kind: NoiseFamily = NoiseFamily.GAUSSIAN
    sigma_range: tuple[float, float] = (5.0, 55.0)  # on the 0..255 scale
    extra: dict[str, Any] = field(default_factory=dict)


def save_checkpoint(
    path: str | Path,
    model: STBN,
    preset: str,
    noise: NoiseModel | None = None,
    metadata: dict[str, Any] | None = None,
) -> None:
    """Write weights, config, preset name and noise model together."""
    noise = noise or NoiseModel()
    payload = {
        "format": "stbn",
        "format_version": FORMAT_VERSION,
        "preset": preset,
        "config": model.config.to_dict(),
        "noise": {
            "kind": NoiseFamily(noise.kind).value,  # a plain string: the file does not pickle this module's enum
            "sigma_range": list(noise.sigma_range),
            "extra": dict(noise.extra),
        },
        "metadata": dict(metadata or {}),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, str(path))


@dataclass(frozen=True)
class LoadedCheckpoint:
    model: STBN
    preset: str
    noise: NoiseModel
    metadata: dict[str, Any]


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The raw payload of one of our checkpoints, validated."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several unrelated types for a bad file
        # torch's own text is the unpickler's (a bare "101", "pop from empty list") or suggests
        # weights_only=False (unsafe, and no help): say what the file is not; the cause stays chained.
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint (not a file written by torch.save: {type(exc).__name__})"
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != "stbn":
        raise CheckpointError(
            f"{path} is not an STBN checkpoint of this project (for the authors' files use import_authors_checkpoint)"
        )
    return payload


def load_checkpoint(path: str | Path, preset: str | None = None) -> LoadedCheckpoint:
    """Build the model described by the checkpoint and load its weights.

    ``preset``, when given, must match the checkpoint's preset; a mismatch is a CheckpointError
    naming both.
    """
    payload = read_checkpoint(path)
    if preset is not None and payload["preset"] != preset:
        raise CheckpointError(
            f"checkpoint {path} holds preset {payload['preset']!r}, but preset {preset!r} was asked for"
        )
    config = STBNConfig.from_dict(payload["config"])
    model = STBN(config)
    load_state(model, payload["state_dict"], source=str(path))
    noise = payload.get("noise", {})
    return LoadedCheckpoint(
        model=model,
        preset=payload["preset"],
        noise=NoiseModel(
            NoiseFamily(noise.get("kind", NoiseFamily.GAUSSIAN.value)),
            tuple(noise.get("sigma_range", (5.0, 55.0))),
            noise.get("extra", {}),
        ),
        metadata=payload.get("metadata", {}),
    )


def load_state(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """load_state_dict with a readable error on missing, unexpected or mis-shaped tensors."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or mismatched:
        detail = "; ".join(
            f"{name}: {keys[:4]}{' ...' if len(keys) > 4 else ''}"
            for name, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", mismatched))
            if keys
        )
        raise CheckpointError(f"{source} does not fit this model ({detail})")
    model.load_state_dict(state)


# --- the authors' layout (bdc_2_unify / bdc_flow, DataParallel "module." prefixes) ---------------

_STAGE_A = [
    (r"head\.0\.", "entry."),
    (r"branch1\.body\.0\.", "masked."),
    (r"branch1\.body\.2\.", "mix.0."),
    (r"branch1\.body\.4\.", "mix.2."),
    (r"branch1\.body\.11\.", "exit."),
    (r"tail\.(\d)\.", r"tail.\1."),
]


def _authors_key(key: str, stage_a_units: int) -> str | None:
    """Map one of the authors' keys to ours; None for entries we do not keep (masks)."""
    if key.endswith(".mask"):
        return None
    for src, dst in (("forward_rnn.", "forward_rnn."), ("backward_rnn.", "backward_rnn.")):
        if key.startswith(src):
            rest = key[len(src) :]
            m = re.match(r"branch1\.body\.(\d+)\.body\.([02])\.(.*)", rest)
            if m and 6 <= int(m.group(1)) < 6 + stage_a_units:
                unit = int(m.group(1)) - 6
                return f"{dst}body.{unit}.{'conv3' if m.group(2) == '0' else 'conv1'}.{m.group(3)}"
            for pattern, repl in _STAGE_A:
                if re.match(pattern, rest):
                    return dst + re.sub(pattern, repl, rest, count=1)
    for src, dst in (("concat.", "fusion."), ("d2.", "head.")):
        if key.startswith(src):
            m = re.match(r"convs\.(\d+)\.(body\.([02])\.)?(.*)", key[len(src) :])
            if m:
                index, conv, tail = int(m.group(1)), m.group(3), m.group(4)
                if conv is not None:
                    return f"{dst}body.{index - 1}.{'conv3' if conv == '0' else 'conv1'}.{tail}"
                return f"{dst}{'entry' if index == 0 else 'exit'}.{tail}"
    prefix = "d.encoder.interpolate."
    if key.startswith(prefix):
        rest = key[len(prefix) :]
        if rest.startswith("headConv."):
            return "srfe.head." + rest[len("headConv.") :]
        m = re.match(r"tailConv\.(\d)\.(.*)", rest)
        if m:
            return f"srfe.tail.{m.group(1)}.{m.group(2)}"
        m = re.match(r"body\.(\d+)\.body\.(\d+)\.body\.body\.([02])\.(.*)", rest)
        if m:
            conv = "conv3" if m.group(3) == "0" else "conv1"
            return f"srfe.body.{m.group(1)}.units.{m.group(2)}.{conv}.{m.group(4)}"
    if key.startswith("pwcnet."):
        # The downloaded PWC weights say "module" where the port says "net".
        return "flow." + key[len("pwcnet.") :].replace("module", "net")
    raise CheckpointError(f"unrecognised key in the authors' checkpoint: {key!r}")


def import_authors_state_dict(state: dict[str, torch.Tensor], config: STBNConfig) -> dict[str, torch.Tensor]:
    """Translate an authors' ``state_dict`` (with or without ``module.``) into our key layout."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        key = key[len("module.") :] if key.startswith("module.") else key
        if key.startswith("pwcnet.") and config.flow is not FlowKind.PWC:
            continue  # the caller chose another flow network
        ours = _authors_key(key, config.stage_a_units)
        if ours is not None:
            out[ours] = value
    return out


def import_authors_checkpoint(path: str | Path, flow: FlowKind | str = FlowKind.PWC) -> STBN:
    """Load the authors' ``bdc_2_unify`` (noise map) or ``bdc_flow`` (no noise map) checkpoint.

    The variant is read from the first Stage A conv: 70 input channels = 3 + 64 + 3 (noise map).
    """
    payload = torch.load(str(path), map_location="cpu", weights_only=False)
    state = payload.get("state_dict", payload) if isinstance(payload, dict) else None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a dict with a 'state_dict'")
    return model_from_authors_state(state, flow)


def model_from_authors_state(state: dict[str, torch.Tensor], flow: FlowKind | str = FlowKind.PWC) -> STBN:
    flow = FlowKind(flow)
    key = next((k for k in state if k.endswith("forward_rnn.head.0.weight")), None)
    if key is None:
        raise CheckpointError("not an STBN authors' state_dict: no forward_rnn.head.0.weight")
    stage_in = state[key].shape[1]
    if stage_in not in (70, 67):
        raise CheckpointError(f"unexpected Stage A input width {stage_in} (70 = bdc_2_unify, 67 = bdc_flow)")
    if flow is FlowKind.PWC and not any(k.split("module.", 1)[-1].startswith("pwcnet.") for k in state):
        raise CheckpointError("the checkpoint has no pwcnet.* weights; pass flow='pyramid' or 'zero'")
    config = STBNConfig(noise_map=stage_in == 70, flow=flow)
    model = STBN(config)
    mapped = import_authors_state_dict(state, config)
    if flow is not FlowKind.PWC:  # keep this model's own (untrained or separately loaded) flow network
        mapped.update({k: v for k, v in model.state_dict().items() if k.startswith("flow.")})
    load_state(model, mapped, source="authors' checkpoint")
    return model
