"""The clipping bias of 8-bit noisy frames: f(x) = E[clip(x + n)] against sampling, its inverse,
and the streaming loop's output on a dark flat clip with and without it removed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import stbn
from stbn.clipping import apply_table, declip, declip_table, expected_clipped
from stbn.noise_estimation import NoiseConfig, NoiseMode
from stbn.step import EagerRunner
from stbn.streaming import StreamingDenoiser
from stbn.weights import shipped_checkpoint

SHIPPED = shipped_checkpoint()


@pytest.mark.parametrize(("a", "b"), [(0.0, 0.2**2), (0.02, 0.05**2)])
def test_expected_clipped_value_matches_sampling(a: float, b: float) -> None:
    x = np.array([0.0, 0.03, 0.5, 0.97, 1.0])
    rng = np.random.default_rng(0)
    n = rng.standard_normal((200_000, 1))
    sampled = np.clip(x + np.sqrt(a * x + b) * n, 0.0, 1.0).mean(axis=0)
    np.testing.assert_allclose(expected_clipped(x, a, b), sampled, atol=2e-3)
    assert expected_clipped(np.array([0.0]), a, b)[0] > 0.015  # the bias this module exists for


def test_declip_inverts_the_expected_value_and_sends_darker_values_to_black() -> None:
    b = (40 / 255) ** 2
    x = np.linspace(0.0, 1.0, 101)
    np.testing.assert_allclose(declip(expected_clipped(x, 0.0, b), 0.0, b), x, atol=1e-3)
    floor = expected_clipped(np.array([0.0]), 0.0, b)[0]
    assert declip(np.array([floor / 2, 0.0]), 0.0, b).tolist() == [0.0, 0.0]


def test_declip_table_is_monotone_and_the_identity_without_noise() -> None:
    assert np.array_equal(declip_table(0.0, 0.0), np.arange(256))
    table = declip_table(0.0, (30 / 255) ** 2)
    assert np.all(np.diff(table.astype(int)) >= 0) and table[0] == 0 and table[255] == 255
    assert table[128] in (127, 128, 129) and table[12] == 0  # mid-grey kept, noise floor to black
    image = np.full((2, 2, 3), 200, np.uint8)
    assert apply_table(image, table).dtype == np.uint8 and apply_table(image, table)[0, 0, 0] == table[200]


def _stream(clip: np.ndarray, clipped: bool) -> np.ndarray:
    torch.manual_seed(0)
    model = stbn.load_checkpoint(SHIPPED).model
    noise = NoiseConfig(mode=NoiseMode.FIXED, sigma=40.0, clipped=clipped)
    denoiser = StreamingDenoiser(EagerRunner(model), lookahead=0, noise=noise)
    out = [f.image for i, frame in enumerate(clip) for f in denoiser.push(frame, i)]
    return np.stack(out).astype(np.float64)


def test_streaming_output_of_a_dark_clip_loses_the_clipping_bias() -> None:
    rng = np.random.default_rng(3)
    true_level = 8.0
    clip = np.clip(np.round(true_level + 40.0 * rng.standard_normal((4, 64, 64, 3))), 0, 255).astype(np.uint8)
    assert clip.mean() > true_level + 10  # what the camera delivers is far brighter than the scene
    biased, debiased = _stream(clip, clipped=False).mean(), _stream(clip, clipped=True).mean()
    assert abs(debiased - true_level) < 3.0 < abs(biased - true_level), (biased, debiased)
