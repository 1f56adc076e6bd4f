"""The evaluation protocol: metrics, seeded noise, STBN offline/streaming and the baselines table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import stbn
from stbn.clipping import declip
from stbn.evaluation.cli import main as eval_main
from stbn.evaluation.metrics import mean, psnr, sequence_scores, ssim, to_uint8
from stbn.evaluation.noise import Awgn, add_noise
from stbn.evaluation.protocol import (
    Clip,
    Dataset,
    EvalSettings,
    Evaluator,
    markdown_table,
    method_rows,
    stbn_offline,
    stbn_streaming,
    summary_tables,
)

TINY = {"channels": 8, "stage_b_mid": 8, "srfe_channels": 16, "flow_channels": 8, "flow_levels": 2}


def smooth_clip(n: int = 6, h: int = 32, w: int = 48, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:h, 0:w] / max(h, w)
    frames = []
    for t in range(n):
        base = 0.5 + 0.25 * np.sin(6 * xs + 0.3 * t + rng.uniform(0, 0.01)) * np.cos(4 * ys)
        frames.append(np.stack([base, 0.9 * base + 0.05, 1.0 - base], -1))
    return np.asarray(frames, np.float32)


def test_eval_psnr_known_values_and_identical_frames() -> None:
    clean = np.full((8, 8, 3), 0.5, np.float32)
    assert psnr(clean, clean) == float("inf")
    assert psnr(clean + 0.1, clean) == pytest.approx(20.0, abs=1e-4)  # mse 0.01
    assert psnr(clean + 0.01, clean) == pytest.approx(40.0, abs=1e-3)
    over = np.full((8, 8, 3), 1.2, np.float32)  # ground truth is clipped to [0, 1]
    assert psnr(np.ones_like(over), over) == float("inf")
    assert mean([30.0, float("inf")]) == float("inf")
    assert mean([30.0, 40.0]) == 35.0
    assert np.isnan(mean([]))
    with pytest.raises(ValueError, match="shape"):
        psnr(clean, clean[:4])


def test_eval_ssim_is_one_for_identical_and_falls_with_noise() -> None:
    clean = smooth_clip(1, 48, 48)[0]
    assert ssim(clean, clean) == pytest.approx(1.0)
    noisy = add_noise(clean[None], 25.0)[0]
    worse = add_noise(clean[None], 50.0)[0]
    assert 0 < ssim(worse, clean) < ssim(noisy, clean) < 1
    scores = sequence_scores(np.stack([clean, noisy]), np.stack([clean, clean]))
    assert scores["psnr"][0] == float("inf") and scores["ssim"][0] == pytest.approx(1.0)


def test_eval_noise_is_seeded_per_sequence_like_the_reference() -> None:
    clean = smooth_clip(3, 16, 24)
    noisy = add_noise(clean, 30.0, seed=0)
    torch.manual_seed(0)  # the reference: torch.manual_seed(0) before each sequence, (N, 3, H, W) layout
    seq = torch.from_numpy(clean).permute(0, 3, 1, 2).contiguous()
    reference = (seq + torch.randn_like(seq) * (30.0 / 255)).permute(0, 2, 3, 1).numpy()
    assert np.array_equal(noisy, reference)
    assert np.array_equal(noisy, add_noise(clean, 30.0, seed=0))
    assert not np.array_equal(noisy, add_noise(clean, 30.0, seed=1))
    assert noisy.min() < clean.min() - 0.05  # not clipped
    assert float((noisy - clean).std()) == pytest.approx(30 / 255, rel=0.05)


def test_eval_streaming_with_full_lookahead_matches_offline() -> None:
    torch.manual_seed(0)
    model = stbn.build_model("cpu-rt", flow="pyramid", **TINY).eval()
    clean = smooth_clip(5, 32, 48)
    noisy8 = to_uint8(add_noise(clean, 25.0)).astype(np.float32) / 255  # the streaming path sees uint8
    offline, prior_mean = stbn_offline(model, noisy8, 25.0)
    assert prior_mean.shape == offline.shape and not np.array_equal(prior_mean, offline)
    stream = stbn_streaming(model, noisy8, 25.0, lookahead=4)
    # The stream also removes the clipping bias of its 8-bit input, by a table on its uint8 output
    # (slope up to 2 near black: rounding differences up to 2 levels).
    expected = declip(offline, 0.0, (25.0 / 255) ** 2)
    assert np.abs(expected - stream).max() <= 2.0 / 255 + 1e-6
    short = stbn_streaming(model, noisy8, 25.0, lookahead=1)
    assert np.abs(stream - short).max() > 2.0 / 255  # a shorter window really changes the result


def test_eval_table_with_baselines_and_cache(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = stbn.build_model("cpu-rt", flow="zero", **TINY).eval()
    dataset = Dataset("tiny", (Clip("a", smooth_clip(6)), Clip("b", smooth_clip(6, seed=1))), Clip("t", smooth_clip(5)))
    methods = ("noisy", "gauss", "stbn", "stbn-stream", "bm3d", "nlm", "hqdn3d")
    settings = EvalSettings(sigmas=(20.0, 40.0), methods=methods, bm3d_frames=(2,), cache_dir=str(tmp_path / "c"))
    rows = method_rows(methods, settings.lookaheads)
    assert rows == ["noisy", "gauss", "stbn", "stbn-prior", "stbn-L0", "stbn-L2", "bm3d", "nlm", "hqdn3d"]
    results = Evaluator(settings, model, log=lambda _m: None).evaluate(dataset)
    for sigma in (20.0, 40.0):
        r = results[Awgn(sigma)]
        assert set(r) == set(rows)
        assert r["noisy"].mean_psnr() == pytest.approx(20 * np.log10(255 / sigma), abs=0.3)
        for m in ("bm3d", "nlm", "hqdn3d", "gauss"):
            assert r[m].mean_psnr() > r["noisy"].mean_psnr() + 2.0, m
        assert r["bm3d"].frames == {"a": [2], "b": [2]} and r["bm3d"].n_frames == 2
        assert r["stbn"].n_frames == 12 and r["stbn"].seconds > 0
        assert r["stbn-prior"].mean_psnr() != r["stbn"].mean_psnr()
    table = markdown_table(dataset, results, rows)
    assert table.count("\n| ") >= 2 * len(rows) and "ms/frame" in table and "BM3D frames" in table
    again = Evaluator(settings, model, log=lambda _m: None).evaluate(dataset)  # baselines from the cache
    assert again[Awgn(20.0)]["nlm"].psnr == results[Awgn(20.0)]["nlm"].psnr
    assert len(list((tmp_path / "c").glob("*.json"))) >= 2 * 2 * 5
    other = Dataset("other", dataset.sequences, dataset.tuning)
    summary = summary_tables([(dataset, results), (other, again)], rows)
    assert "| tiny | other |" in summary and "BM3D's frames only" in summary
    assert summary.count("| stbn-L0 |") == 2


def test_eval_cli_json_on_a_frame_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import cv2

    torch.manual_seed(0)
    model = stbn.build_model("cpu-rt", flow="zero", **TINY)
    stbn.save_checkpoint(tmp_path / "m.pt", model, "cpu-rt")
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(to_uint8(smooth_clip(8))):
        cv2.imwrite(str(folder / f"{i:03d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    args = ["--checkpoint", str(tmp_path / "m.pt"), "--frames", str(folder), "--max-frames", "4", "--sigmas", "25"]
    args += ["--methods", "noisy,stbn,hqdn3d", "--json", str(tmp_path / "r.json"), "--quiet"]
    code = eval_main(args)
    assert code == 0
    out = capsys.readouterr().out
    assert "| stbn |" in out and "| hqdn3d |" in out
    report = json.loads((tmp_path / "r.json").read_text())
    res = report["datasets"][0]["results"]["25"]
    assert set(res) == {"noisy", "stbn", "stbn-prior", "hqdn3d"} and len(res["stbn"]["psnr"]["frames"]) == 4


def test_eval_cli_scores_camera_noise_beside_awgn(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--cameras: a simulated camera's noise, scored against its noiseless output, in the same table
    as AWGN, with the live default (blind) and the best-fixed-level bound."""
    import cv2

    torch.manual_seed(0)
    stbn.save_checkpoint(tmp_path / "m.pt", stbn.build_model("cpu-rt", flow="zero", **TINY), "cpu-rt")
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(to_uint8(smooth_clip(6, 32, 48))):
        cv2.imwrite(str(folder / f"{i:03d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    args = ["--checkpoint", str(tmp_path / "m.pt"), "--frames", str(folder), "--max-frames", "4", "--sigmas", "25",
            "--cameras", "iso-high,iso-low-h264", "--methods", "noisy,nlm,stbn-live,stbn-best", "--lookaheads", "2",
            "--json", str(tmp_path / "r.json"), "--quiet", "--camera-checkpoint", "none"]  # fmt: skip
    assert eval_main(args) == 0
    out = capsys.readouterr().out
    assert "(2x2 phases)" in out  # stbn-live on camera noise: this model's, the bound below is its own
    assert "| method | σ=25 | iso-high | iso-low-h264 |" in out
    assert "| stbn-live-L2 |" in out and "| stbn-best-L2 |" in out
    res = json.loads((tmp_path / "r.json").read_text())["datasets"][0]["results"]
    assert set(res) == {"25", "iso-high", "iso-low-h264"}
    for setting in res.values():
        assert setting["stbn-best-L2"]["mean_psnr"] >= setting["stbn-live-L2"]["mean_psnr"] - 0.5
    # stbn-live is told what a source of each setting says of its encoding, as the pipeline would be
    assert "compression lossy" in res["iso-low-h264"]["stbn-live-L2"]["note"]
    assert "compression unknown" in res["iso-high"]["stbn-live-L2"]["note"]
    assert res["iso-high"]["noisy"]["mean_psnr"] < res["iso-low-h264"]["noisy"]["mean_psnr"]
    assert eval_main([*args[:4], "--cameras", "iso-ultra"]) == 2
    # by default stbn-live hands camera noise to the camera model shipped for the preset
    assert eval_main([*args[:-2], "--cameras", "iso-high", "--methods", "stbn-live"]) == 0
    assert "(camera model)" in capsys.readouterr().out
