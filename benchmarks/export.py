"""Export writers: episodes/s and peak memory for robomimic HDF5 + LeRobot v3.0 + GR00T (what export_episodes runs).

Episodes are made on the fly (no source mp4s: this measures the writers, not the decoder): a smooth textured
background and a square that moves every frame, with random actions (7) and states (5), `--frames` frames each.
Every episode goes through the three writers in turn, as export_episodes feeds them; the time spent in each
writer's add/finish/commit is summed per format. Memory: the process RSS sampled every 20 ms in a thread (psutil;
tracemalloc misses NumPy/C buffers), the RSS before the first episode (imports) and after 10/50/100 % of the
episodes, and the kernel's high-water mark (VmHWM).
`--scaling 100,300,1000` re-runs this script in a fresh process per count and tabulates its peak, to show memory
stays flat as the episode count grows. Not part of the test suite.

    python benchmarks/export.py --episodes 1000 --height 176 --width 320
    python benchmarks/export.py --episodes 50 --scaling 10,25      # full size, 432x768
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cosmos_synth.export import Episode  # noqa: E402
from cosmos_synth.export.groot import GrootWriter  # noqa: E402
from cosmos_synth.export.lerobot import LeRobotWriter  # noqa: E402
from cosmos_synth.export.robomimic import RobomimicWriter  # noqa: E402

MIB = 2**20
TASKS = ("The robot arm picks up the red cube.", "The robot arm opens the drawer.", "The robot arm wipes the table.")


class PeakRSS:
    """Samples this process's resident set size in a background thread."""

    def __init__(self, interval_s: float = 0.02) -> None:
        self.process, self.interval_s, self.peak = psutil.Process(), interval_s, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            self._stop.wait(self.interval_s)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def make_episode(index: int, *, frames: int, height: int, width: int) -> Episode:
    """A smooth background with fine texture (so the codecs have real work) and a square moving across it."""
    rng = np.random.default_rng(index)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([(x * 255 // width), (y * 255 // height), np.full_like(x, 60 + index % 128)], axis=-1)
    base = (base + rng.integers(0, 12, (height, width, 3))).astype(np.uint8)
    video = np.repeat(base[None], frames, axis=0)
    side = height // 4
    for k in range(frames):
        left = (k * width // frames) % (width - side)
        video[k, side : 2 * side, left : left + side] = (230, 80, 30)
    return Episode(
        sample_id=f"bench_{index:06d}",
        frames=video,
        task=TASKS[index % len(TASKS)],
        actions=rng.uniform(-1, 1, (frames, 7)),
        states=rng.normal(size=(frames, 5)),
    )


def run(args: argparse.Namespace) -> dict:
    out = Path(args.out_dir or tempfile.mkdtemp(prefix="export-bench-"))
    stack = ExitStack()  # a writer left without commit removes its temporary files
    makers = {
        "robomimic": lambda: RobomimicWriter(
            out / "robomimic/bench.hdf5", camera="front", env_name="bench", action_normalization="min_max"
        ),
        "lerobot": lambda: LeRobotWriter(
            out / "lerobot", repo_id="bench/export", fps=16, camera="front", robot_type="bench"
        ),
        "groot": lambda: GrootWriter(out / "groot", fps=16, camera="front", robot_type="bench"),
    }
    writers = {name: makers[name]() for name in args.formats.split(",")}
    for writer in writers.values():
        stack.enter_context(writer)
    seconds = dict.fromkeys(writers, 0.0)
    checkpoints = {max(1, round(args.episodes * f)): f"{round(f * 100)}%" for f in (0.1, 0.5, 1.0)}
    rss_at, generate_s = {"start": round(psutil.Process().memory_info().rss / MIB, 1)}, 0.0  # after imports
    started = time.perf_counter()
    with stack, PeakRSS() as peak:
        for i in range(args.episodes):
            t = time.perf_counter()
            episode = make_episode(i, frames=args.frames, height=args.height, width=args.width)
            generate_s += time.perf_counter() - t
            for name, writer in writers.items():
                t = time.perf_counter()
                writer.add(episode)
                seconds[name] += time.perf_counter() - t
            del episode
            if i + 1 in checkpoints:
                rss_at[checkpoints[i + 1]] = round(psutil.Process().memory_info().rss / MIB, 1)
        for name, writer in writers.items():
            t = time.perf_counter()
            writer.commit()  # finish (metadata + read-back verification) and rename
            seconds[name] += time.perf_counter() - t
    wall_s = time.perf_counter() - started
    sizes = {name: sum(p.stat().st_size for p in (out / name).rglob("*") if p.is_file()) / MIB for name in writers}
    if not args.keep:
        shutil.rmtree(out, ignore_errors=True)
    writers_s = sum(seconds.values())
    return {
        "episodes": args.episodes,
        "frames_per_episode": args.frames,
        "height": args.height,
        "width": args.width,
        "wall_s": round(wall_s, 1),
        "generate_s": round(generate_s, 1),
        "writers_s": round(writers_s, 1),
        "episodes_per_s": round(args.episodes / writers_s, 3),
        "formats": list(writers),
        "per_format_episodes_per_s": {name: round(args.episodes / s, 3) for name, s in seconds.items()},
        "per_format_s": {name: round(s, 1) for name, s in seconds.items()},
        "output_mib": {name: round(size, 1) for name, size in sizes.items()},
        "peak_rss_mib": round(peak.peak / MIB, 1),
        "rss_mib_at": rss_at,
        "maxrss_mib": round(high_water_rss() / MIB, 1),
    }


def high_water_rss() -> int:
    """This process's peak RSS in bytes: VmHWM, the high-water mark of its own address space. (getrusage's maxrss
    is not used: a child started with vfork + exec inherits the parent's peak into it.)"""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # not Linux: best available


def scaling(args: argparse.Namespace, counts: list[int]) -> list[dict]:
    """The same benchmark in a fresh process per episode count; each reports its own maxrss."""
    rows = []
    for count in counts:
        command = [
            sys.executable,
            __file__,
            "--episodes",
            str(count),
            "--frames",
            str(args.frames),
            "--height",
            str(args.height),
            "--width",
            str(args.width),
            "--formats",
            args.formats,
            "--json-only",
        ]
        result = subprocess.run(command, capture_output=True, text=True, check=True)
        rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
    return rows


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def table(rows: list[dict]) -> str:
    header = (
        "formats",
        "episodes",
        "frames",
        "size",
        "writers s",
        "episodes/s",
        "robomimic/s",
        "lerobot/s",
        "groot/s",
        "peak RSS MiB",
        "RSS start/10/50/100% MiB",
        "VmHWM MiB",
    )
    lines = [" | ".join(header), " | ".join("---" for _ in header)]
    for r in rows:
        per = r["per_format_episodes_per_s"]
        rss = "/".join(str(r["rss_mib_at"].get(k, "-")) for k in ("start", "10%", "50%", "100%"))
        lines.append(
            " | ".join(
                str(v)
                for v in (
                    "+".join(r["formats"]),
                    r["episodes"],
                    r["frames_per_episode"],
                    f"{r['height']}x{r['width']}",
                    r["writers_s"],
                    r["episodes_per_s"],
                    per.get("robomimic", "-"),
                    per.get("lerobot", "-"),
                    per.get("groot", "-"),
                    r["peak_rss_mib"],
                    rss,
                    r["maxrss_mib"],
                )
            )
        )
    return "\n".join(f"| {line} |" for line in lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=1000)
    parser.add_argument("--frames", type=int, default=93)
    parser.add_argument("--height", type=int, default=432)
    parser.add_argument("--width", type=int, default=768)
    parser.add_argument("--formats", default="robomimic,lerobot,groot", help="writers to run, comma-separated")
    parser.add_argument("--scaling", default="", help="comma-separated episode counts, each run in a fresh process")
    parser.add_argument("--out-dir", default=None, help="where to write the exports (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the exports instead of deleting them")
    parser.add_argument("--json", default="benchmarks/results/export-cpu.json", help="results file (appended)")
    parser.add_argument("--json-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.json_only:
        print(json.dumps(run(args)))
        return
    rows = [run(args)]
    rows += scaling(args, [int(c) for c in args.scaling.split(",") if c])
    record = {
        "card": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "command": "python benchmarks/export.py " + " ".join(sys.argv[1:]),
        "runs": rows,
    }
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(path.read_text()) if path.is_file() else []
    path.write_text(json.dumps(previous + [record], indent=2) + "\n")
    print(f"card: {record['card']} ({record['cores']} cores); results appended to {path}")
    print(table(rows))


if __name__ == "__main__":
    main()
