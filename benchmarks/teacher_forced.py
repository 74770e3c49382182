"""Long demo videos: is the drift the chain's, or the model's? Each chunk again, continued from the real frames.

For held-out episodes of a long-episode demo run (README, "Seams and drift, measured"), every chunk after the first
is generated from the real episode's last `chunk_overlap_frames` frames before it instead of the model's own, with
the seed the chained video uses (`chain.chunk_seed`). Its new frames are tracked by the judge against the ground
truth, the rest of the video being the real episode's, so the error is the chunk's alone; chunk 1 is the chained
video's own first chunk. If the teacher-forced error grows from chunk to chunk like the chained one, the model, not
the chaining, is what drifts. Last: the judge's success on the real episode with only its last chunk generated.

    python benchmarks/teacher_forced.py RUN_DIR [--adapter DIR] [--episodes 16] [-p key=value ...]

RUN_DIR holds the run's data (`cosmos-synth ingest` with the run's overrides, e.g. `demo.num_frames=41`); pass the
same overrides with -p. CPU is enough: the demo world model's videos are 64x96.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cosmos_synth.chain import chunk_seed, chunk_starts, sample_chunk  # noqa: E402
from cosmos_synth.demo_world import parse_prompt  # noqa: E402
from cosmos_synth.demo_world.judge import judge, track_error  # noqa: E402
from cosmos_synth.generate import prepare_pipeline  # noqa: E402
from cosmos_synth.recipe import load_run_config, parse_override  # noqa: E402
from cosmos_synth.sources.layout import EPISODES_JSONL, HELDOUT_DIR, TRAJECTORIES_DIR  # noqa: E402
from cosmos_synth.video import read_video  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--adapter", type=Path, default=None, help="the LoRA's folder (default: the base model)")
    parser.add_argument("--episodes", type=int, default=16, help="the first N held-out episodes")
    parser.add_argument("-p", "--param", action="append", default=[], help="the run's recipe overrides, key=value")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    overrides = {**dict(map(parse_override, args.param)), "run_dir": str(args.run_dir), "device": args.device}
    cfg = load_run_config("demo", overrides).generate_config(args.adapter)
    cfg = dataclasses.replace(cfg, device=args.device, stream_text_encoder=False)
    starts = chunk_starts(cfg.num_frames, cfg.chunk_frames, cfg.chunk_overlap_frames)
    if len(starts) < 2:
        raise SystemExit(f"generate.num_frames={cfg.num_frames} is one chunk of {cfg.chunk_frames}: nothing chains")
    heldout = args.run_dir / "data" / HELDOUT_DIR
    episodes = [json.loads(line) for line in (heldout / EPISODES_JSONL).read_text().splitlines()][: args.episodes]
    pipe = prepare_pipeline(cfg)
    overlap, errors, last_only = cfg.chunk_overlap_frames, [[] for _ in starts], []
    for index, episode in enumerate(episodes):
        frames, _ = read_video(heldout / "videos" / f"{episode['name']}.mp4")
        state = np.load(heldout / TRAJECTORIES_DIR / f"{episode['name']}.npz")["state"]
        if len(frames) < cfg.num_frames:
            name, wanted = episode["name"], cfg.num_frames
            raise SystemExit(f"{name}: {len(frames)} frames, fewer than generate.num_frames={wanted}; rerun ingest")
        task, text, seed = parse_prompt(episode["prompt"]), {"prompt": episode["prompt"]}, cfg.seed + index
        for k, start in enumerate(starts):
            if k == 0:
                new = sample_chunk(pipe, cfg, seed=seed, text=text, image=Image.fromarray(frames[0]))
            else:
                context = frames[start - overlap : start]
                new = sample_chunk(pipe, cfg, seed=chunk_seed(seed, k), text=text, context=context)[overlap:]
            end = min(start + len(new), cfg.num_frames)
            video = frames[: cfg.num_frames].copy()
            video[start:end] = new[: end - start]
            verdict = judge(video, task)
            part = dataclasses.replace(verdict, state=verdict.state[start:end])
            errors[k].append(track_error(part, state[start:end]))
            if k == len(starts) - 1:
                last_only.append(verdict.success)
        print(f"{episode['name']}: " + ", ".join(f"{e[-1]:.3f}" for e in errors), flush=True)
    model = str(args.adapter) if args.adapter else "base"
    print(f"\n{model}, {len(episodes)} episodes, chunks of {cfg.chunk_frames} frames with overlap {overlap}")
    print("| chunk | first new frame | teacher-forced track error (mean) | median |")
    print("| --- | --- | --- | --- |")
    for k, start in enumerate(starts):
        print(f"| {k + 1} | {start} | {np.mean(errors[k]):.3f} | {np.median(errors[k]):.3f} |")
    print(f"judge success, real frames with only the last chunk generated: {sum(last_only)}/{len(last_only)}")


if __name__ == "__main__":
    main()
