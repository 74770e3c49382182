"""Feature statistics in LeRobot's format, computed episode by episode.

Per episode the statistics are exact over the rows given (every frame of a numeric feature; for images the
pixels of up to MAX_IMAGE_SAMPLES evenly spaced frames, spatially strided to about IMAGE_TARGET_SIZE pixels, as
lerobot samples them). Over the dataset, min/max/mean/std/count are merged exactly from the episodes (parallel
variance); quantiles come from a fixed-size uniform reservoir of rows (seeded, so reruns agree), which keeps
memory bounded however many episodes stream through.
"""

from __future__ import annotations

import numpy as np

QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)  # written as q01, q10, q50, q90, q99
QUANTILE_KEYS = tuple(f"q{round(q * 100):02d}" for q in QUANTILES)
MAX_IMAGE_SAMPLES = 100  # frames per episode sampled for image statistics
IMAGE_TARGET_SIZE = 150  # pixels: images with a side >= 300 are strided down to ~this
RESERVOIR_ROWS = 100_000  # rows kept per feature for the dataset's quantiles


def image_rows(frames: np.ndarray) -> tuple[np.ndarray, int]:
    """Pixels of sampled frames as (M, 3) float64 rows in [0, 1] (lerobot normalises image stats by 255), and
    the number of frames sampled (lerobot's image `count`)."""
    num_frames, height, width, _ = frames.shape
    picks = np.unique(np.round(np.linspace(0, num_frames - 1, min(num_frames, MAX_IMAGE_SAMPLES))).astype(int))
    stride = max(1, max(height, width) // IMAGE_TARGET_SIZE) if max(height, width) >= 2 * IMAGE_TARGET_SIZE else 1
    sampled = frames[picks, ::stride, ::stride]
    return sampled.reshape(-1, 3).astype(np.float64) / 255.0, len(picks)


def describe(rows: np.ndarray, count: int) -> dict[str, np.ndarray]:
    """Exact statistics of (M, C) rows; `count` is what the rows stand for (frames)."""
    stats = {
        "min": rows.min(axis=0),
        "max": rows.max(axis=0),
        "mean": rows.mean(axis=0),
        "std": rows.std(axis=0),
        "count": np.array([count]),
    }
    for key, value in zip(QUANTILE_KEYS, np.quantile(rows, QUANTILES, axis=0), strict=True):
        stats[key] = value
    return stats


def describe_values(values: np.ndarray, *, is_image: bool) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """One episode's rows (what the dataset's reservoir samples) and their exact statistics."""
    if is_image:
        rows, count = image_rows(values)
    else:
        rows = np.asarray(values, dtype=np.float64).reshape(values.shape[0], -1)
        count = values.shape[0]
    return rows, describe(rows, count)


class FeatureStats:
    """One feature's running statistics over the episodes fed to :meth:`add`."""

    def __init__(self, *, is_image: bool, seed: int = 0, capacity: int = RESERVOIR_ROWS) -> None:
        self.is_image = is_image
        self.capacity = capacity
        self._rng = np.random.default_rng(seed)
        self._reservoir: np.ndarray | None = None
        self._num_seen = 0  # rows offered to the reservoir so far
        self._merged: dict[str, np.ndarray] | None = None

    def add(
        self, values: np.ndarray, described: tuple[np.ndarray, dict[str, np.ndarray]] | None = None
    ) -> dict[str, np.ndarray]:
        """Fold one episode in; return that episode's statistics in LeRobot's shapes.

        `described`: `describe_values(values)` when the caller has it already (writers fed the same frames share
        `Episode.image_description` instead of each computing the image quantiles again).
        """
        rows, stats = described or describe_values(values, is_image=self.is_image)
        self._merge(stats)
        self._sample(rows)
        return self._shaped(stats)

    def result(self) -> dict[str, np.ndarray]:
        """The dataset's statistics: exact moments and extremes, quantiles from the reservoir."""
        assert self._merged is not None and self._reservoir is not None, "no episode was added"
        stats = dict(self._merged)
        for key, value in zip(QUANTILE_KEYS, np.quantile(self._reservoir, QUANTILES, axis=0), strict=True):
            stats[key] = value
        return self._shaped(stats)

    def _merge(self, stats: dict[str, np.ndarray]) -> None:
        if self._merged is None:
            self._merged = {k: stats[k] for k in ("min", "max", "mean", "std", "count")}
            return
        old, n_old, n_new = self._merged, float(self._merged["count"][0]), float(stats["count"][0])
        total = n_old + n_new
        mean = (old["mean"] * n_old + stats["mean"] * n_new) / total
        # Parallel variance: each part's variance plus its mean's squared distance to the merged mean.
        variance = (
            n_old * (old["std"] ** 2 + (old["mean"] - mean) ** 2)
            + n_new * (stats["std"] ** 2 + (stats["mean"] - mean) ** 2)
        ) / total
        self._merged = {
            "min": np.minimum(old["min"], stats["min"]),
            "max": np.maximum(old["max"], stats["max"]),
            "mean": mean,
            "std": np.sqrt(variance),
            "count": np.array([int(total)]),
        }

    def _sample(self, rows: np.ndarray) -> None:
        """Reservoir sampling (Algorithm R), vectorised: every row seen so far is kept with equal probability."""
        if self._reservoir is None:
            self._reservoir = np.empty((0, rows.shape[1]))
        num_fill = max(0, min(self.capacity - len(self._reservoir), len(rows)))
        self._reservoir = np.concatenate([self._reservoir, rows[:num_fill]])
        rest = rows[num_fill:]
        if len(rest):
            positions = self._num_seen + num_fill + np.arange(len(rest))
            slots = self._rng.integers(0, positions + 1)
            keep = slots < self.capacity
            self._reservoir[slots[keep]] = rest[keep]  # later rows overwrite earlier ones, as in the serial loop
        self._num_seen += len(rows)

    def _shaped(self, stats: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Images: per-channel (3, 1, 1); other features: (dim,); count: (1,)."""
        if not self.is_image:
            return stats
        return {k: v if k == "count" else np.asarray(v).reshape(3, 1, 1) for k, v in stats.items()}


def to_json(stats: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, list]]:
    """Statistics as nested lists, the form of meta/stats.json and the episodes' stats/ columns."""
    return {
        feature: {key: np.asarray(value).tolist() for key, value in values.items()} for feature, values in stats.items()
    }
