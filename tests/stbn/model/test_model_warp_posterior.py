"""Calibrated (nearest) warping keeps noise i.i.d.; the Bayesian head matches its closed form."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import stbn
from stbn.flow.pwc import pwc_output_to_flow
from stbn.layers import RingMean
from stbn.posterior import gaussian_nll, mean_l2, posterior_mean
from stbn.warp import warp_bilinear, warp_nearest


def _lag1_correlation(x: torch.Tensor) -> float:
    a, b = x[..., :, :-1].flatten(), x[..., :, 1:].flatten()
    return float(torch.corrcoef(torch.stack([a, b]))[0, 1])


def test_nearest_warping_preserves_noise_and_bilinear_does_not() -> None:
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(1, 1, 256, 256, generator=g)
    flow = torch.rand(1, 2, 256, 256, generator=g) * 6.0 - 3.0  # sub-pixel, random per pixel
    flow = flow.round() + 0.37  # a smooth-ish fractional shift everywhere, as real flows have
    inner = (slice(None), slice(None), slice(8, -8), slice(8, -8))  # away from zero padding
    near = warp_nearest(noise, flow)[inner]
    bil = warp_bilinear(noise, flow)[inner]
    assert abs(float(near.var()) - 1.0) < 0.05
    assert float(bil.var()) < 0.75  # bilinear averages neighbours: narrower distribution
    flow_global = torch.full((1, 2, 256, 256), 0.4)
    flow_global[:, 1] = 0.3
    near_g = warp_nearest(noise, flow_global)[inner]
    bil_g = warp_bilinear(noise, flow_global)[inner]
    assert abs(_lag1_correlation(near_g)) < 0.05
    assert _lag1_correlation(bil_g) > 0.3  # neighbours share source pixels
    assert abs(float(near_g.var()) - 1.0) < 0.05 and float(bil_g.var()) < 0.8


def _random_prior(h: int = 4, w: int = 5, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mean = torch.rand(1, 1, 3, h, w, generator=g)
    factor = torch.randn(1, 1, 6, h, w, generator=g) * 0.2
    return torch.cat([mean, factor], dim=2).double()


def _factor_matrix(v: np.ndarray) -> np.ndarray:
    return np.array([[v[0], v[1], v[2]], [v[3], v[4], 0.0], [v[5], 0.0, 0.0]])


def test_posterior_mean_equals_the_closed_form() -> None:
    prior = _random_prior()
    noisy = torch.rand(1, 1, 3, 4, 5, generator=torch.Generator().manual_seed(3)).double()
    sigma = 0.15
    got = posterior_mean(prior, noisy, torch.tensor(sigma, dtype=torch.float64))
    for y in range(4):
        for x in range(5):
            a = _factor_matrix(prior[0, 0, 3:, y, x].numpy())
            p = a.T @ a + 1e-5 * np.eye(3)
            mu = prior[0, 0, :3, y, x].numpy()
            obs = noisy[0, 0, :, y, x].numpy()
            n_inv = np.eye(3) / (sigma**2 + 1e-5)  # the authors' noise variance
            expect = np.linalg.solve(np.linalg.inv(p) + n_inv, np.linalg.inv(p) @ mu + n_inv @ obs)
            np.testing.assert_allclose(got[0, 0, :, y, x].numpy(), np.clip(expect, 0, 1), atol=1e-9)


def test_nll_equals_the_gaussian_log_likelihood() -> None:
    prior = _random_prior(seed=4)
    noisy = torch.rand(1, 1, 3, 4, 5, generator=torch.Generator().manual_seed(5)).double()
    sigma = 0.1
    got = float(gaussian_nll(prior, noisy, torch.tensor(sigma, dtype=torch.float64)))
    values = []
    for y in range(4):
        for x in range(5):
            a = _factor_matrix(prior[0, 0, 3:, y, x].numpy())
            s = a.T @ a + (sigma**2 + 1e-5) * np.eye(3)
            r = noisy[0, 0, :, y, x].numpy() - prior[0, 0, :3, y, x].numpy()
            values.append(0.5 * r @ np.linalg.solve(s, r) + 0.5 * np.linalg.slogdet(s)[1])
    assert abs(got - float(np.mean(values))) < 1e-9


def test_nll_falls_when_optimised_on_a_toy_problem() -> None:
    torch.manual_seed(0)
    model = stbn.build_model("cpu-rt", flow="zero")
    clean = torch.linspace(0.2, 0.8, 24).view(1, 1, 1, 1, 24).expand(2, 3, 3, 20, 24)
    noisy = clean + 0.1 * torch.randn(clean.shape)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        loss = gaussian_nll(model.prior(noisy, 0.1), noisy, torch.tensor(0.1))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(float(loss))
    assert losses[-1] < losses[0] - 0.5


def test_mean_l2_ignores_the_covariance_and_scales_by_the_noise_variance() -> None:
    prior = _random_prior(seed=6)
    noisy = torch.rand(1, 1, 3, 4, 5, generator=torch.Generator().manual_seed(7)).double()
    sigma = 0.2
    expect = 0.5 * float(((noisy - prior[:, :, :3]) ** 2).mean()) / (sigma**2 + 1e-5)
    assert abs(float(mean_l2(prior, noisy, torch.tensor(sigma, dtype=torch.float64))) - expect) < 1e-12
    wider = prior.clone()
    wider[:, :, 3:] *= 10.0  # the NLL changes with the covariance, the mean term does not
    assert float(mean_l2(wider, noisy, torch.tensor(sigma, dtype=torch.float64))) == pytest.approx(expect)


def test_ring_mean_averages_the_eight_neighbours_and_never_the_pixel() -> None:
    x = torch.arange(30.0).view(1, 1, 5, 6)
    got = RingMean(1)(x)
    inner = x[0, 0, 1:4, 1:5]
    box = torch.nn.functional.avg_pool2d(x, 3, stride=1)[0, 0] * 9.0
    np.testing.assert_allclose(got[0, 0, 1:4, 1:5].numpy(), ((box - inner) / 8.0).numpy(), rtol=1e-6)
    assert float(got[0, 0, 0, 0]) == pytest.approx((1.0 + 6.0 + 7.0) / 3.0)  # a corner has 3 neighbours


def test_pwc_flow_counts_pixels_of_the_callers_frame() -> None:
    # PWC-Net's 1/4-grid output times 20 is flow in pixels of its input (here the frame resized
    # to 448x512). A uniform translation of 10.0 network pixels in x and 4.0 in y is, for the
    # caller's 427x500 frame, 10.0 * 500/512 and 4.0 * 427/448 pixels, everywhere.
    raw = torch.empty(1, 2, 112, 128)
    raw[:, 0], raw[:, 1] = 10.0 / 20.0, 4.0 / 20.0
    flow = pwc_output_to_flow(raw, 427, 500, (448, 512))
    assert flow.shape == (1, 2, 427, 500)
    assert torch.allclose(flow[:, 0], torch.full((1, 427, 500), 10.0 * 500 / 512))
    assert torch.allclose(flow[:, 1], torch.full((1, 427, 500), 4.0 * 427 / 448))


@pytest.mark.parametrize("size", [(2, 3), (9, 14)])
@pytest.mark.parametrize("padding", ["zeros", "border"])
def test_bilinear_warp_equals_grid_sample_and_exports_exactly(size: tuple[int, int], padding: str) -> None:
    import io

    import onnxruntime as ort

    h, w = size
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, h, w, generator=g)
    flow = torch.randn(2, 2, h, w, generator=g) * 2.0  # some samples fall outside the frame
    grid = torch.stack(
        [
            (torch.arange(w).view(1, 1, w) + flow[:, 0]) * (2.0 / (w - 1)) - 1.0,
            (torch.arange(h).view(1, h, 1) + flow[:, 1]) * (2.0 / (h - 1)) - 1.0,
        ],
        dim=-1,
    )
    expect = torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode=padding, align_corners=True)
    got = warp_bilinear(x, flow, padding)
    assert torch.allclose(got, expect, atol=1e-5)

    class Warp(torch.nn.Module):
        def forward(self, image: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
            return warp_bilinear(image, motion, padding)

    buffer = io.BytesIO()
    torch.onnx.export(Warp(), (x, flow), buffer, opset_version=17, dynamo=False)
    session = ort.InferenceSession(buffer.getvalue())
    names = [i.name for i in session.get_inputs()]
    exported = session.run(None, dict(zip(names, (x.numpy(), flow.numpy()), strict=True)))[0]
    np.testing.assert_allclose(exported, got.numpy(), atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_warps_index_a_720p_frame_exactly_from_a_half_precision_flow(dtype: torch.dtype) -> None:
    """Autocast and fp16 engines hand the warp a half-precision flow: its pixel indices (up to
    921,600 at 720p) must still be computed exactly (fp16 overflows at 65,504, bf16 rounds past 256)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 720, 1280, generator=gen)
    flow = torch.randint(-3, 4, (1, 2, 720, 1280), generator=gen).float()  # exact in any precision
    for warp in (warp_nearest, warp_bilinear):
        assert torch.equal(warp(x, flow.to(dtype)), warp(x, flow))
