"""Learning-rate factors: by iteration (milestones of the run's iterations) or by the clock (of a
time-boxed run)."""

from __future__ import annotations

from collections.abc import Callable


def step_decay(milestones: tuple[float, ...], gamma: float, iterations: int) -> Callable[[int], float]:
    steps = sorted(round(m * iterations) for m in milestones)
    return lambda it: gamma ** sum(it >= s for s in steps)


def time_decay(
    milestones: tuple[float, ...], gamma: float, seconds: float, elapsed: Callable[[], float]
) -> Callable[[int], float]:
    """The learning-rate factor of a time-boxed run: milestones are fractions of ``seconds``."""
    return lambda _it: gamma ** sum(elapsed() >= m * seconds for m in milestones)
