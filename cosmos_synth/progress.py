"""Progress of a long stage, handed to an optional callback: the library never draws or prints it.

Each long stage function takes `progress: Progress | None`. The CLI passes a callback that draws tqdm bars
(cosmos_synth.cli), the Prefect tasks one that updates a progress artifact (tasks/progress.py), tests a list's
`append`. A stage reports through a :class:`ProgressReporter`, which counts units, times them and works out the rate
and the time left:

    report = ProgressReporter(progress, "generate", total=len(pairs), unit="video", done=num_skipped).start()
    for pair in pending:
        ...
        report.advance()
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True, kw_only=True)
class ProgressUpdate:
    """Where one stage stands."""

    stage: str  # "train", "cache", "generate", "train-idm", "label", "export"
    done: int  # units finished, those an earlier run already finished included
    total: int  # units the stage will have finished at the end
    unit: str  # "step", "clip", "video", "epoch", "episode"
    elapsed_s: float  # since the stage started reporting
    rate: float | None = None  # units per second since the first update (None until there are two)
    metrics: dict[str, float] = field(default_factory=dict)  # the latest values, e.g. {"loss": 0.51, "lr": 4.9e-4}

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total > 0 else 1.0

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the current rate (None while the rate is unknown)."""
        if self.done >= self.total:
            return 0.0
        return (self.total - self.done) / self.rate if self.rate else None

    def describe(self) -> str:
        """One line for people: `step 48/96, loss 0.512, lr 0.000494, 1.31 step/s, ETA 0:00:37`."""
        parts = [f"{self.unit} {self.done}/{self.total}"]
        parts += [f"{name} {value:.3g}" for name, value in self.metrics.items()]
        if self.rate:
            parts.append(f"{self.rate:.3g} {self.unit}/s" if self.rate >= 1 else f"{1 / self.rate:.3g} s/{self.unit}")
        if self.eta_s is not None and self.done < self.total:
            parts.append(f"ETA {format_duration(self.eta_s)}")
        return ", ".join(parts)


Progress = Callable[[ProgressUpdate], None]


def format_duration(seconds: float) -> str:
    """0:00:37, 5:02:11 (hours can exceed 24)."""
    seconds = round(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class ProgressReporter:
    """Counts a stage's units for one callback (a no-op without one); the rate is measured from the first update,
    so units an earlier run finished (skipped at once) do not inflate it."""

    def __init__(self, progress: Progress | None, stage: str, *, total: int, unit: str, done: int = 0) -> None:
        self.progress, self.stage, self.total, self.unit, self.done = progress, stage, total, unit, done
        self.started = time.monotonic()
        self._first: tuple[float, int] | None = None  # (time, done) of the first update

    def update(self, done: int, **metrics: float) -> None:
        """Report `done` units finished (and the latest metrics)."""
        self.done = done
        if self.progress is None:
            return
        now = time.monotonic()
        if self._first is None:
            self._first = (now, done)
        seconds, units = now - self._first[0], done - self._first[1]
        rate = units / seconds if units > 0 and seconds > 0 else None
        self.progress(
            ProgressUpdate(
                stage=self.stage,
                done=done,
                total=self.total,
                unit=self.unit,
                elapsed_s=now - self.started,
                rate=rate,
                metrics=metrics,
            )
        )

    def advance(self, num: int = 1, **metrics: float) -> None:
        """Report `num` more units finished."""
        self.update(self.done + num, **metrics)

    def start(self) -> ProgressReporter:
        """Report where the stage starts (the units already finished), so a bar or artifact appears at once."""
        self.update(self.done)
        return self
