"""Checkpoints carry config + preset + noise model; the authors' layout imports by name."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import stbn
from stbn.checkpoint import model_from_authors_state
from stbn.noise_estimation import NoiseFamily

DATA = Path(__file__).parent / "data"


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    model = stbn.build_model("cpu-rt").eval()
    path = tmp_path / "m.pt"
    stbn.save_checkpoint(path, model, "cpu-rt", stbn.NoiseModel(NoiseFamily.GAUSSIAN, (5.0, 55.0)), {"steps": 3})
    loaded = stbn.load_checkpoint(path, preset="cpu-rt")
    assert loaded.preset == "cpu-rt" and loaded.metadata == {"steps": 3}
    assert loaded.model.config == model.config
    clip = torch.rand(1, 2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded.model.eval()(clip, 0.1), model(clip, 0.1))


def test_wrong_preset_and_bad_files_are_clear_errors(tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    stbn.save_checkpoint(path, stbn.build_model("cpu-rt"), "cpu-rt")
    with pytest.raises(stbn.CheckpointError, match=r"holds preset 'cpu-rt'.*'gpu-rt'"):
        stbn.load_checkpoint(path, preset="gpu-rt")
    with pytest.raises(stbn.CheckpointError, match="not found"):
        stbn.load_checkpoint(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(stbn.CheckpointError, match="not a readable") as error:
        stbn.load_checkpoint(junk)
    assert "weights_only" not in str(error.value)  # torch's unsafe advice is no help for random bytes
    for text in ("hello\n", "x" * 5000, "model: cpu-rt\nweights: none\n"):  # text files: no unpickler riddles
        junk.write_text(text)
        with pytest.raises(stbn.CheckpointError, match=r"not a file written by torch\.save: \w+\)$"):
            stbn.load_checkpoint(junk)
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(stbn.CheckpointError, match="not an STBN checkpoint"):
        stbn.load_checkpoint(tmp_path / "other.pt")


def _authors_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A random state_dict with the authors' bdc_2_unify keys and shapes (DataParallel prefixes)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for line in (DATA / "authors_bdc_2_unify_keys.txt").read_text().splitlines():
        key, shape = line.split(" ", 1)
        dims = [int(d) for d in shape.strip("[]").split(",") if d.strip()]
        state["module." + key] = torch.randn(*dims, generator=g)
    return state


def test_authors_checkpoint_imports_by_name(tmp_path: Path) -> None:
    state = _authors_state()
    path = tmp_path / "pretrained.pth"
    torch.save({"state_dict": state, "args": None}, path)
    model = stbn.import_authors_checkpoint(path, flow="pwc")
    assert model.config.noise_map and model.config.flow == "pwc"
    ours = model.state_dict()
    # Every tensor arrives somewhere, exactly once.
    assert len(ours) == len([k for k in state if not k.endswith(".mask")])
    pairs = {
        "module.forward_rnn.head.0.weight": "forward_rnn.entry.weight",
        "module.backward_rnn.branch1.body.0.bias": "backward_rnn.masked.bias",
        "module.forward_rnn.branch1.body.4.weight": "forward_rnn.mix.2.weight",
        "module.forward_rnn.branch1.body.8.body.2.weight": "forward_rnn.body.2.conv1.weight",
        "module.forward_rnn.branch1.body.11.bias": "forward_rnn.exit.bias",
        "module.backward_rnn.tail.4.weight": "backward_rnn.tail.4.weight",
        "module.concat.convs.0.weight": "fusion.entry.weight",
        "module.concat.convs.3.body.0.weight": "fusion.body.2.conv3.weight",
        "module.concat.convs.6.weight": "fusion.exit.weight",
        "module.d.encoder.interpolate.headConv.weight": "srfe.head.weight",
        "module.d.encoder.interpolate.body.1.body.7.body.body.2.bias": "srfe.body.1.units.7.conv1.bias",
        "module.d.encoder.interpolate.tailConv.2.weight": "srfe.tail.2.weight",
        "module.d2.convs.3.weight": "head.exit.weight",
        "module.pwcnet.netFiv.netUpfeat.weight": "flow.netFiv.netUpfeat.weight",
        "module.pwcnet.netRefiner.netMain.12.bias": "flow.netRefiner.netMain.12.bias",
    }
    for theirs, mine in pairs.items():
        assert torch.equal(ours[mine], state[theirs]), theirs
    with torch.no_grad():
        out = model.eval()(torch.rand(1, 2, 3, 64, 64), 0.1)
    assert out.shape == (1, 2, 3, 64, 64)


def test_authors_import_without_pwc_and_bad_layouts() -> None:
    state = {k: v for k, v in _authors_state().items() if ".pwcnet." not in k}
    with pytest.raises(stbn.CheckpointError, match="no pwcnet"):
        model_from_authors_state(state, flow="pwc")
    model = model_from_authors_state(state, flow="zero")
    assert torch.equal(model.head.exit.weight, state["module.d2.convs.3.weight"])
    state["module.extra.weight"] = torch.zeros(1)
    with pytest.raises(stbn.CheckpointError, match="unrecognised key"):
        model_from_authors_state(state, flow="zero")


def test_shipped_weights_are_found_by_preset_from_any_directory(tmp_path, monkeypatch) -> None:
    from stbn.weights import REGISTRY, WeightsNotFound, resolve_checkpoint, shipped_checkpoint

    monkeypatch.chdir(tmp_path)  # not the checkout: relative paths mean nothing here
    monkeypatch.delenv("STBN_WEIGHTS", raising=False)
    shipped = shipped_checkpoint("cpu-rt")
    assert shipped.is_file() and shipped.name == REGISTRY["cpu-rt"].file
    assert resolve_checkpoint("") == resolve_checkpoint("shipped") == shipped
    assert resolve_checkpoint("weights/stbn-cpu-rt.pt") == shipped  # a config written for the checkout
    assert resolve_checkpoint("", "gpu-rt") == shipped_checkpoint("gpu-rt")
    assert resolve_checkpoint("mine.pt") == Path("mine.pt")  # the loader reports it missing
    with pytest.raises(WeightsNotFound, match="no shipped weights for preset 'base'"):
        shipped_checkpoint("base")
    model = stbn.build_model("cpu-rt", weights="shipped")
    loaded = stbn.load_checkpoint(shipped).model
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
    with pytest.raises(ValueError, match="no flow or overrides"):
        stbn.build_model("cpu-rt", weights="shipped", channels=8)
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / REGISTRY["cpu-rt"].file).write_bytes(shipped.read_bytes())
    monkeypatch.setenv("STBN_WEIGHTS", str(other))
    assert shipped_checkpoint() == other / REGISTRY["cpu-rt"].file  # $STBN_WEIGHTS comes first
