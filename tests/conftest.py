"""Suite-wide settings."""

from __future__ import annotations

import torch

# The test tensors are small: one intra-op thread is as fast as two and does not fight the other
# processes the tests start (subscribers, RTSP servers) for the two cores.
torch.set_num_threads(1)
