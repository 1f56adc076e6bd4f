"""The one command surface: ``stbn`` carries every tool (run, denoise, subscribe, engines, train,
eval, info), run here in-process through the console script's entry point."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster.cli import main


def test_stbn_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    usage = capsys.readouterr().out.splitlines()[0]  # usage: stbn [-h] {info,train,...} ...
    assert usage.split("{")[1].split("}")[0].split(",") == [
        "info", "train", "eval", "run", "denoise", "subscribe", "engines"
    ]


def test_stbn_engines_check_streams_a_backend_against_the_reference(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["engines", "check", "--backend", "onnxruntime", "--height", "48", "--width", "64", "--frames", "4",
                 "--cache-dir", str(tmp_path)])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert "PSNR vs ref" in out and out.rstrip().endswith("OK")


def test_stbn_engines_reports_a_bad_checkpoint_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    code = main(["engines", "build", "--backend", "torch", "--checkpoint", str(bad), "--height", "32", "--width", "32"])
    assert code == 2 and "error:" in capsys.readouterr().err


def test_stbn_subscribe_refuses_a_record_path_in_a_missing_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["subscribe", "--record", str(tmp_path / "no" / "such" / "x.mp4")])
    assert code == 2 and "does not exist" in capsys.readouterr().err
