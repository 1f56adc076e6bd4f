"""YAML config -> frozen dataclasses, loaded once. Unknown keys and bad values are errors that
name the key (``unknown key 'sources[0].urll'``). ``--set a.b=value`` overrides are typed by
the dataclass field they land on."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml

from engines.base import EngineConfig
from stbn.noise_estimation import NoiseConfig

SOURCE_KINDS = ("synthetic", "file", "camera", "rtsp", "gstreamer")
SOURCE_BACKENDS = ("auto", "gstreamer", "pyav", "opencv")
RING_POLICIES = ("auto", "drop_oldest", "block", "drop_newest")
ENCODINGS = ("raw", "jpeg")


class ConfigError(ValueError):
    """A config that cannot be used; the message names the offending key."""


@dataclass(frozen=True)
class ReconnectConfig:
    enabled: bool = True
    initial_s: float = 0.5
    max_s: float = 8.0  # back-off cap
    factor: float = 2.0
    max_attempts: int = 0  # 0 = forever
    fail_on_first_open: bool = True  # a source that never opened is a fatal error (bad URL...)

    def __post_init__(self) -> None:
        if self.initial_s <= 0 or self.max_s < self.initial_s or self.factor < 1:
            raise ValueError("need 0 < initial_s <= max_s and factor >= 1")
        if self.max_attempts < 0:
            raise ValueError("max_attempts must be >= 0")


@dataclass(frozen=True)
class SourceConfig:
    id: str = "cam0"
    kind: str = "synthetic"
    uri: str = ""  # file path, camera index/path, rtsp:// URL or a GStreamer pipeline ending in appsink
    backend: str = "auto"  # rtsp: gstreamer (default) | pyav | opencv; file: pyav (default) | opencv
    topic: str = ""  # ZeroMQ topic; defaults to the id
    loop: bool = False  # file: start again at the end
    pace: bool = True  # file/synthetic: deliver at the frame rate (False: as fast as possible)
    width: int = 320  # synthetic size; camera request (0 = device default)
    height: int = 180
    fps: float = 30.0
    frames: int = 0  # stop after this many frames (0 = until the source ends / forever)
    noise_sigma: float = 25.0  # synthetic: AWGN added to the clean scene (0..255)
    timestamp: bool = True  # synthetic: draw the capture time as a bar code
    seed: int = 0
    policy: str = "auto"  # ring overflow policy; auto = block for files, drop_oldest for live
    ring_slots: int = 4
    open_timeout_s: float = 5.0
    read_timeout_s: float = 3.0
    reconnect: ReconnectConfig = field(default_factory=ReconnectConfig)

    def __post_init__(self) -> None:
        if self.kind not in SOURCE_KINDS:
            raise ValueError(f"kind must be one of {SOURCE_KINDS}, got {self.kind!r}")
        if self.backend not in SOURCE_BACKENDS:
            raise ValueError(f"backend must be one of {SOURCE_BACKENDS}, got {self.backend!r}")
        if self.policy not in RING_POLICIES:
            raise ValueError(f"policy must be one of {RING_POLICIES}, got {self.policy!r}")
        if self.kind in ("file", "rtsp", "gstreamer") and not self.uri:
            raise ValueError(f"a {self.kind} source needs a uri")
        if not self.id or not self.id.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise ValueError(f"id must be a non-empty name of letters, digits, -_. ; got {self.id!r}")
        if self.ring_slots < 1 or self.fps <= 0 or self.frames < 0 or self.width < 0 or self.height < 0:
            raise ValueError("ring_slots >= 1, fps > 0, frames >= 0 and width/height >= 0 are required")
        if self.open_timeout_s <= 0 or self.read_timeout_s <= 0:
            raise ValueError("timeouts must be > 0")

    @property
    def live(self) -> bool:
        return self.kind in ("camera", "rtsp", "gstreamer") or (self.kind == "synthetic" and self.pace)

    @property
    def ring_policy(self) -> str:
        if self.policy != "auto":
            return self.policy
        return "drop_oldest" if self.live else "block"

    @property
    def zmq_topic(self) -> str:
        return self.topic or self.id


@dataclass(frozen=True)
class CurveConfig:
    """CURVE keys from files written by ``zmq.auth.create_certificates``."""

    server_secret_file: str = ""  # the publisher's .key_secret file
    clients_dir: str = ""  # directory of allowed client .key files ("" = any client with the server key)

    def __post_init__(self) -> None:
        if not self.server_secret_file:
            raise ValueError("server_secret_file is required")


@dataclass(frozen=True)
class PublishConfig:
    enabled: bool = True
    endpoint: str = "tcp://127.0.0.1:5556"
    encoding: str = "raw"
    jpeg_quality: int = 90
    sndhwm: int = 4  # small high-water mark: slow live viewers lose frames, the pipeline never waits
    lossless: bool = False  # XPUB_NODROP: the publisher waits for slow subscribers (recorders)
    wait_subscribers: int = 0  # wait for this many subscriptions before the first frame
    wait_timeout_s: float = 10.0
    curve: CurveConfig | None = None

    def __post_init__(self) -> None:
        if self.encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {ENCODINGS}, got {self.encoding!r}")
        if not self.endpoint.startswith(("tcp://", "ipc://", "inproc://")):
            raise ValueError(f"endpoint must be tcp://, ipc:// or inproc://, got {self.endpoint!r}")
        if not 1 <= self.jpeg_quality <= 100 or self.sndhwm < 1 or self.wait_subscribers < 0:
            raise ValueError("need 1 <= jpeg_quality <= 100, sndhwm >= 1, wait_subscribers >= 0")


@dataclass(frozen=True)
class RtspOutConfig:
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 8555  # served at rtsp://host:port/<stream id>
    bitrate_kbps: int = 2000


@dataclass(frozen=True)
class OutputConfig:
    video_dir: str = ""  # write <video_dir>/<stream>.mp4 when set
    video_codec: str = "libx264"
    rtsp: RtspOutConfig = field(default_factory=RtspOutConfig)


@dataclass(frozen=True)
class MetricsConfig:
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 9100  # 0 = any free port


@dataclass(frozen=True)
class ReportConfig:
    dir: str = "out"
    name: str = "latency"  # <dir>/<name>.json and <dir>/<name>.png
    plot: bool = True
    max_frames: int = 100_000  # per-frame rows kept for the report


@dataclass(frozen=True)
class PipelineConfig:
    sources: tuple[SourceConfig, ...] = (SourceConfig(),)
    engine: EngineConfig = field(default_factory=EngineConfig)
    lookahead: int = 2
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    publish: PublishConfig = field(default_factory=PublishConfig)
    outputs: OutputConfig = field(default_factory=OutputConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    duration_s: float = 0.0  # stop after this long (0 = when every source has ended)
    log_level: str = "INFO"

    def __post_init__(self) -> None:
        if not self.sources:
            raise ValueError("at least one source is required")
        ids = [s.id for s in self.sources]
        if len(set(ids)) != len(ids):
            raise ValueError(f"source ids must be unique, got {ids}")
        topics = [s.zmq_topic for s in self.sources]
        for i, a in enumerate(topics):
            for b in topics[i + 1 :]:
                if a.startswith(b) or b.startswith(a):
                    raise ValueError(f"topics {a!r} and {b!r} overlap as ZeroMQ prefixes")
        if not 0 <= self.lookahead <= 8:
            raise ValueError(f"lookahead must be in 0..8, got {self.lookahead}")


# -- generic loader ----------------------------------------------------------------------------


class _Override(str):
    """A ``--set`` value: typed by the field it lands on (strings stay strings)."""


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _convert(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, _Override) and value.lower() in ("null", "none", "~")):
            return None
        return _convert(args[0], value, key)
    if isinstance(value, _Override) and tp is not str:
        value = yaml.safe_load(str(value))
    if dataclasses.is_dataclass(tp):
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise ConfigError(f"key '{key}' must be a mapping, got {type(value).__name__}")
        return from_dict(tp, value, key)
    if origin is tuple:
        (item_tp, *_rest) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"key '{key}' must be a list, got {type(value).__name__}")
        return tuple(_convert(item_tp, v, f"{key}[{i}]") for i, v in enumerate(value))
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"key '{key}' must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"key '{key}' must be an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"key '{key}' must be a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"key '{key}' must be a string, got {value!r}")
    raise ConfigError(f"key '{key}': unsupported type {_type_name(tp)}")


def from_dict(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping; every error names the dotted key."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            raise ConfigError(f"unknown key '{dotted}'")
        kwargs[key] = _convert(hints[key], value, dotted)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (ValueError, TypeError) as exc:
        raise ConfigError(_name_key(str(exc), prefix, names)) from None


def _name_key(msg: str, prefix: str, names: set[str]) -> str:
    """Prefix a dataclass's own validation message with where it sits in the config."""
    first = msg.split(" ", 1)[0]
    if "." in first:  # already dotted (engine.backend must be ...): re-root it on the full prefix
        head, _, rest = msg.partition(".")
        return f"{prefix}.{rest}" if prefix and prefix.split(".")[-1].split("[")[0] == head else msg
    if first in names and prefix:
        return f"{prefix}.{msg}"
    return f"{prefix}: {msg}" if prefix else msg


def _apply_override(data: dict[str, Any], assignment: str) -> None:
    if "=" not in assignment:
        raise ConfigError(f"--set expects key=value, got {assignment!r}")
    key, value = assignment.split("=", 1)
    parts: list[str | int] = []
    for part in key.strip().split("."):
        while "[" in part:  # sources[0] -> sources, 0
            name, rest = part.split("[", 1)
            index, part = rest.split("]", 1)
            if name:
                parts.append(name)
            try:
                parts.append(int(index))
            except ValueError:
                raise ConfigError(f"bad index in --set key {key!r}") from None
        if part:
            parts.append(int(part) if part.isdigit() else part)
    node: Any = data
    for i, part in enumerate(parts[:-1]):
        nxt = parts[i + 1]
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                raise ConfigError(f"--set {key}: index {part} out of range")
            if node[part] is None:
                node[part] = {}
            node = node[part]
        else:
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: '{part}' is not inside a mapping")
            if node.get(part) is None:
                node[part] = [] if isinstance(nxt, int) else {}
            node = node[part]
    last = parts[-1]
    if isinstance(last, int):
        if not isinstance(node, list) or last >= len(node):
            raise ConfigError(f"--set {key}: index {last} out of range")
        node[last] = yaml.safe_load(value)
    else:
        if not isinstance(node, dict):
            raise ConfigError(f"--set {key}: not a mapping")
        node[last] = _Override(value)


def load_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> PipelineConfig:
    """Read a YAML file (or start from the defaults) and apply ``key=value`` overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {str(p)!r} not found")
        try:
            loaded = yaml.safe_load(p.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {str(p)!r} is not valid YAML: {exc}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file {str(p)!r} must hold a mapping at the top level")
        data = loaded or {}
    if overrides and "sources" not in data:
        data["sources"] = [{}]
    for assignment in overrides:
        _apply_override(data, assignment)
    return from_dict(PipelineConfig, data)


def to_dict(config: Any) -> Any:
    """Plain dict of a config (for the report)."""
    if dataclasses.is_dataclass(config):
        return {f.name: to_dict(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, tuple):
        return [to_dict(v) for v in config]
    return config
