from __future__ import annotations

import pytest
import torch

import stbn


@pytest.fixture
def tiny_model() -> stbn.STBN:
    torch.manual_seed(0)
    return stbn.build_model("cpu-rt").eval()
