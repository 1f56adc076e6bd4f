"""A machine-readable timestamp drawn into frames: a bar code of big black/white blocks that
survives noise, denoising and H.264, used to measure glass-to-glass latency.

Layout: 48 bits in 3 rows of 16 blocks at the top-left corner: a sync pair (1, 0), 42 bits of the
wall-clock time in milliseconds (mod 2**42) and a 4-bit checksum (number of set data bits mod 16).
"""

from __future__ import annotations

import numpy as np

COLUMNS, ROWS = 16, 3
DATA_BITS = 42
_MASK = (1 << DATA_BITS) - 1


def block_size(width: int, height: int) -> int:
    """Side of one block in pixels for a frame of this size (at most 16)."""
    size = min(16, width // COLUMNS, height // (ROWS + 1))
    if size < 2:
        raise ValueError(f"frame {width}x{height} is too small for a timecode (needs >= 32x12)")
    return size


def _bits(value_ms: int) -> list[int]:
    data = [(value_ms >> (DATA_BITS - 1 - i)) & 1 for i in range(DATA_BITS)]
    check = sum(data) % 16
    return [1, 0, *data, *[(check >> (3 - i)) & 1 for i in range(4)]]


def draw(image: np.ndarray, value_ms: int) -> None:
    """Draw ``value_ms`` into the top-left corner of an (H, W, 3) uint8 image, in place."""
    h, w = image.shape[:2]
    b = block_size(w, h)
    for i, bit in enumerate(_bits(value_ms & _MASK)):
        r, c = divmod(i, COLUMNS)
        image[r * b : (r + 1) * b, c * b : (c + 1) * b] = 255 if bit else 0


def read(image: np.ndarray) -> int | None:
    """The value drawn by :func:`draw`, or None if the code is not there or does not check."""
    h, w = image.shape[:2]
    try:
        b = block_size(w, h)
    except ValueError:
        return None
    m = max(b // 4, 0)
    grey = image[: ROWS * b, : COLUMNS * b].astype(np.float32).mean(axis=2)
    blocks = grey.reshape(ROWS, b, COLUMNS, b)[:, m : b - m, :, m : b - m].mean(axis=(1, 3)).reshape(-1)
    bits = [int(v > 127.5) for v in blocks]
    if bits[:2] != [1, 0]:
        return None
    data = bits[2 : 2 + DATA_BITS]
    check = int("".join(map(str, bits[2 + DATA_BITS :])), 2)
    if sum(data) % 16 != check:
        return None
    return int("".join(map(str, data)), 2)


def unwrap(value_ms: int, reference_ms: int) -> int:
    """The full millisecond time nearest ``reference_ms`` whose low 42 bits are ``value_ms``."""
    base = reference_ms & ~_MASK
    candidates = (base - (1 << DATA_BITS) + value_ms, base + value_ms, base + (1 << DATA_BITS) + value_ms)
    return min(candidates, key=lambda c: abs(c - reference_ms))
