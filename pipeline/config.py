"""YAML config -> frozen dataclasses, loaded once. Unknown keys and bad values are errors that
name the key (``unknown key 'sources[0].urll'``). ``--set a.b=value`` overrides are typed by
the dataclass field they land on."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engines.base import EngineConfig
from pipeline.ring import POLICIES, OverflowPolicy
from pipeline.wire import Encoding
from stbn.adapt import Objective
from stbn.io import project_data_folders
from stbn.noise_estimation import NoiseConfig
from stbn.yamlconfig import ConfigError, apply_override, enum_member, from_dict, read_yaml_mapping, to_dict

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

__all__ = ["ConfigError", "PipelineConfig", "load_config", "to_dict"]


class SourceKind(str, enum.Enum):
    """What a source is (``sources[].kind``)."""

    SYNTHETIC = "synthetic"  # a generated noisy scene with a drawn timestamp
    FILE = "file"
    CAMERA = "camera"  # a USB / V4L2 camera (index or device path)
    RTSP = "rtsp"
    GSTREAMER = "gstreamer"  # any GStreamer launch line ending in an appsink

    @property
    def live(self) -> bool:
        """A device or a stream: it does not wait for a slow reader."""
        return self in (SourceKind.CAMERA, SourceKind.RTSP, SourceKind.GSTREAMER)


class SourceBackend(str, enum.Enum):
    """Which library reads a source (``sources[].backend``); AUTO is each kind's default."""

    AUTO = "auto"
    GSTREAMER = "gstreamer"
    PYAV = "pyav"
    OPENCV = "opencv"


SOURCE_KINDS = tuple(k.value for k in SourceKind)
RING_POLICIES = ("auto", *POLICIES)


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
    kind: SourceKind = SourceKind.SYNTHETIC
    uri: str = ""  # file path, camera index/path, rtsp:// URL or a GStreamer pipeline ending in appsink
    backend: SourceBackend = SourceBackend.AUTO  # rtsp: gstreamer (default) | pyav | opencv; file: pyav | opencv
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
        # a SourceConfig built in code may name them as strings: one check, one enum
        object.__setattr__(self, "kind", enum_member(SourceKind, self.kind, "kind"))
        object.__setattr__(self, "backend", enum_member(SourceBackend, self.backend, "backend"))
        if self.policy not in RING_POLICIES:
            raise ValueError(f"policy must be one of {RING_POLICIES}, got {self.policy!r}")
        if self.kind in (SourceKind.FILE, SourceKind.RTSP, SourceKind.GSTREAMER) and not self.uri:
            raise ValueError(f"a {self.kind.value} source needs a uri")
        if not self.id or not self.id.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise ValueError(f"id must be a non-empty name of letters, digits, -_. ; got {self.id!r}")
        for key, ok, rule in (
            ("ring_slots", self.ring_slots >= 1, ">= 1"),
            ("fps", self.fps > 0, "> 0"),
            ("frames", self.frames >= 0, ">= 0"),
            ("width", self.width >= 0, ">= 0"),
            ("height", self.height >= 0, ">= 0"),
            ("noise_sigma", 0 <= self.noise_sigma <= 255, "in 0..255"),
        ):
            if not ok:
                raise ValueError(f"{key} must be {rule}, got {getattr(self, key)}")
        if self.open_timeout_s <= 0 or self.read_timeout_s <= 0:
            raise ValueError("timeouts must be > 0")

    @property
    def live(self) -> bool:
        return self.kind.live or (self.kind is SourceKind.SYNTHETIC and self.pace)

    @property
    def ring_policy(self) -> OverflowPolicy:
        if self.policy != "auto":
            return OverflowPolicy(self.policy)
        return OverflowPolicy.DROP_OLDEST if self.live else OverflowPolicy.BLOCK

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
    encoding: Encoding = Encoding.RAW
    jpeg_quality: int = 90
    sndhwm: int = 4  # small high-water mark: slow live viewers lose frames, the pipeline never waits
    lossless: bool = False  # XPUB_NODROP: the publisher waits for slow subscribers (recorders)
    wait_subscribers: int = 0  # wait for this many subscriptions before the first frame
    wait_timeout_s: float = 10.0
    # lossless: at shutdown, wait at most this long for subscribers to take the queued frames, then
    # give up on them (counted as abandoned); a second Ctrl-C gives up at once. 8 s: the whole stop
    # fits `docker stop`'s 10 s grace (Kubernetes gives 30, systemd 90: raise it there if wanted)
    drain_timeout_s: float = 8.0
    # live viewers: do not send a frame captured longer ago than this (after a stall or an outage),
    # counted as stale_dropped; 0 = send every frame. The sinks (files, RTSP) still get it.
    max_age_ms: float = 0.0
    curve: CurveConfig | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "encoding", enum_member(Encoding, self.encoding, "encoding"))
        if not self.endpoint.startswith(("tcp://", "ipc://", "inproc://")):
            raise ValueError(f"endpoint must be tcp://, ipc:// or inproc://, got {self.endpoint!r}")
        if self.endpoint.startswith("tcp://"):
            port = self.endpoint.rsplit(":", 1)[-1]
            if port != "*" and not (port.isdigit() and 1 <= int(port) <= 65535):
                raise ValueError(f"endpoint port must be 1..65535 (or *), got {self.endpoint!r}")
        if self.lossless and self.max_age_ms:
            raise ValueError("max_age_ms drops frames: it cannot go with lossless")
        for key, ok, rule in (
            ("jpeg_quality", 1 <= self.jpeg_quality <= 100, "in 1..100"),
            ("sndhwm", self.sndhwm >= 1, ">= 1"),
            ("wait_subscribers", self.wait_subscribers >= 0, ">= 0"),
            ("wait_timeout_s", self.wait_timeout_s > 0, "> 0"),
            ("drain_timeout_s", self.drain_timeout_s > 0, "> 0"),
            ("max_age_ms", self.max_age_ms >= 0, ">= 0"),
        ):
            if not ok:
                raise ValueError(f"{key} must be {rule}, got {getattr(self, key)}")


@dataclass(frozen=True)
class RtspOutConfig:
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 8555  # served at rtsp://host:port/<stream id>
    bitrate_kbps: int = 2000

    def __post_init__(self) -> None:
        if not 1 <= self.port <= 65535:
            raise ValueError(f"port must be 1..65535, got {self.port}")
        if self.bitrate_kbps < 1:
            raise ValueError(f"bitrate_kbps must be >= 1, got {self.bitrate_kbps}")


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

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0..65535 (0 = any free port), got {self.port}")


# what cluster.address (and --cluster) may be: local, auto, HOST:PORT or ray://HOST:PORT
CLUSTER_ADDRESS = re.compile(r"^(local|auto|(ray://)?[A-Za-z0-9.\-]+:\d{1,5})$")


@dataclass(frozen=True)
class StreamPlacement:
    """One stream's own resources on a cluster, where they differ from cluster.num_cpus / num_gpus."""

    stream: str
    num_cpus: float | None = None
    num_gpus: float | None = None
    node: str = ""  # run only on the node with this address (a USB camera plugged into it)

    def __post_init__(self) -> None:
        if (self.num_cpus is not None and self.num_cpus < 0) or (self.num_gpus is not None and self.num_gpus < 0):
            raise ValueError(f"cluster.streams[{self.stream}]: num_cpus and num_gpus must be >= 0")


@dataclass(frozen=True)
class ClusterConfig:
    """Where the streams run (the cluster layer, package ``cluster``, reads it; this layer never does).

    ``address`` "" runs every stream in this process. Otherwise each stream runs in its own Ray actor
    that owns its whole path (capture -> ring -> inference -> publish): "local" starts a Ray instance
    for the run, "auto" joins the cluster this machine belongs to, "HOST:PORT" a cluster's head,
    "ray://HOST:PORT" through Ray Client.
    """

    address: str = ""
    num_cpus: float = 0.0  # per stream; 0 = engine.threads (at least 1)
    num_gpus: float | None = None  # per stream; None = 1 on a CUDA engine, else 0 (fractions share a GPU)
    max_restarts: int = 5  # per stream: an actor (or its node) lost this often more ends the stream as failed
    restart_initial_s: float = 1.0  # back-off before a restart, doubling up to restart_max_s
    restart_max_s: float = 30.0
    poll_s: float = 0.5  # how often the driver reads every actor's snapshot (a lost actor shows within it)
    # where an actor binds its ZeroMQ publisher: "node" = the address of the node it runs on (the
    # endpoint is logged, reported and in /healthz), or an interface address such as 0.0.0.0; the
    # port is always a free one, since several streams may share a node
    publish_host: str = "node"
    spread: bool = True  # place streams on as many nodes as possible (Ray's SPREAD), else pack them
    streams: tuple[StreamPlacement, ...] = ()  # per-stream resources or node, by source id

    def __post_init__(self) -> None:
        if self.address and not CLUSTER_ADDRESS.match(self.address):
            raise ValueError(f"cluster.address must be local, auto, HOST:PORT or ray://HOST:PORT, got {self.address!r}")
        if self.num_cpus < 0 or (self.num_gpus is not None and self.num_gpus < 0):
            raise ValueError("cluster.num_cpus and cluster.num_gpus must be >= 0")
        if self.max_restarts < 0:
            raise ValueError(f"cluster.max_restarts must be >= 0, got {self.max_restarts}")
        if not 0 < self.restart_initial_s <= self.restart_max_s:
            raise ValueError("cluster.restart_initial_s must be > 0 and <= cluster.restart_max_s")
        if self.poll_s <= 0:
            raise ValueError(f"cluster.poll_s must be > 0, got {self.poll_s}")

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def placement(self, stream: str) -> StreamPlacement:
        """The stream's own entry, or the defaults."""
        own = next((p for p in self.streams if p.stream == stream), None)
        return own or StreamPlacement(stream)


@dataclass(frozen=True)
class ViewerConfig:
    """A page in the browser with every stream's noisy input beside its denoised output (the same
    frame), its state and latency (pipeline.viewer). Off by default; ``run_pipeline.py --view``."""

    enabled: bool = False
    host: str = "127.0.0.1"  # loopback unless configured, as /metrics
    port: int = 8090  # 0 = any free port (logged)
    # previews per stream per second, and a pane's width (the aspect is kept), at most: what a tab
    # costs a browser on the pipeline's own machine grows with both (bench/viewer.py)
    max_fps: float = 4.0
    max_width: int = 480
    jpeg_quality: int = 80
    token: str = ""  # when set, the page and its socket need ?token=<this>

    def __post_init__(self) -> None:
        for key, ok, rule in (
            ("port", 0 <= self.port <= 65535, "0..65535 (0 = any free port)"),
            ("max_fps", 0 < self.max_fps <= 60, "in (0, 60]"),
            ("max_width", 32 <= self.max_width <= 4096, "in 32..4096"),
            ("jpeg_quality", 1 <= self.jpeg_quality <= 100, "in 1..100"),
        ):
            if not ok:
                raise ValueError(f"viewer.{key} must be {rule}, got {getattr(self, key)}")


@dataclass(frozen=True)
class ReportConfig:
    dir: str = "out"
    name: str = "latency"  # <dir>/<name>.json and <dir>/<name>.png
    plot: bool = True
    max_frames: int = 100_000  # per-frame rows kept for the report


@dataclass(frozen=True)
class OnlineAdaptConfig:
    """Self-supervised adaptation to the live stream, in the background (off by default).

    Every ``every_s`` seconds, once ``history_frames`` recent frames are held (its own memory:
    history_frames x H x W x 3 bytes per stream), ``steps`` steps on random crops of them train a
    copy of the model; the new weights replace the running ones between two frames when a
    held-back loss fell, else they are dropped (a rollback). Both are logged and counted.
    """

    enabled: bool = False
    history_frames: int = 32
    every_s: float = 30.0
    steps: int = 50
    lr: float = 5e-4
    frames: int = 5  # T of each training crop
    crop: int = 64
    batch_size: int = 2
    objective: Objective = Objective.MEAN  # stbn.adapt: mean (any noise) or trained (the checkpoint's loss)

    def __post_init__(self) -> None:
        if self.steps < 1 or self.every_s <= 0 or self.lr <= 0:
            raise ValueError("adapt: steps >= 1, every_s > 0 and lr > 0")
        if self.history_frames < 2 * self.frames:
            raise ValueError(f"adapt.history_frames must be >= 2 x adapt.frames ({2 * self.frames})")


@dataclass(frozen=True)
class PipelineConfig:
    sources: tuple[SourceConfig, ...] = (SourceConfig(),)
    engine: EngineConfig = field(default_factory=EngineConfig)
    lookahead: int = 2
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    publish: PublishConfig = field(default_factory=PublishConfig)
    outputs: OutputConfig = field(default_factory=OutputConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    viewer: ViewerConfig = field(default_factory=ViewerConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    adapt: OnlineAdaptConfig = field(default_factory=OnlineAdaptConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    duration_s: float = 0.0  # stop after this long (0 = when every source has ended)
    fail_fast: bool = False  # a failed stream stops every stream (batch jobs); else it ends alone
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
        unknown = sorted({p.stream for p in self.cluster.streams} - set(ids))
        if unknown:
            raise ValueError(f"cluster.streams names no source: {unknown} (sources: {ids})")
        if not 0 <= self.lookahead <= 8:
            raise ValueError(f"lookahead must be in 0..8, got {self.lookahead}")
        if self.duration_s < 0:
            raise ValueError(f"duration_s must be >= 0 (0 = until the sources end), got {self.duration_s}")
        if self.log_level.upper() not in LOG_LEVELS:
            raise ValueError(f"log_level must be one of {LOG_LEVELS}, got {self.log_level!r}")


DEFAULT_CONFIG = "default.yaml"


def default_config_path() -> Path:
    """The embedded default config: the checkout's ``configs/default.yaml``, or the copy an installed
    wheel carries (``<prefix>/share/stbn-stream/configs``)."""
    places = project_data_folders("configs")
    for folder in places:
        if (folder / DEFAULT_CONFIG).is_file():
            return folder / DEFAULT_CONFIG
    searched = ", ".join(map(str, places))
    raise ConfigError(f"the embedded {DEFAULT_CONFIG} is missing (looked in {searched}); give --config")


def load_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> PipelineConfig:
    """Read a YAML file (or start from the defaults) and apply ``key=value`` overrides."""
    data: dict[str, Any] = read_yaml_mapping(path) if path is not None else {}
    if overrides and "sources" not in data:
        data["sources"] = [{}]
    for assignment in overrides:
        apply_override(data, assignment)
    return from_dict(PipelineConfig, data)
