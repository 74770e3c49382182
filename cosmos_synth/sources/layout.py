"""The on-disk dataset layout every source writes and ingest reads, written once (GR1-100 style).

```
<root>/
  metadata.csv                  <video path relative to root>,<caption>   (one line per video)
  videos/<stem>.mp4             the training videos (GR1-100 itself keeps them under gr1/; any path inside root works)
  trajectories/<stem>.npz       optional: arrays `state` (T, D) and `action` (T, A), float32, one row per video frame
  test/<id>.png + test/<id>.txt optional: (first frame, prompt) pairs to generate from, like EVAL-175's gr1_object
  heldout/                      optional: the real episodes behind test/'s pairs, in this same layout (evaluation)
  episodes.jsonl                optional (simulated sources): per episode, its task and scene seed (replayable)
```
metadata.csv is split on the FIRST comma of each line (captions may hold commas); surrounding double quotes are
stripped from the caption; a first line whose first field does not end in `.mp4` is a header and is skipped.
"""

METADATA_CSV = "metadata.csv"  # <video path relative to root>,<caption> per line; no header needed
VIDEOS_DIR = "videos"  # where sources write videos: videos/<stem>.mp4
TRAJECTORIES_DIR = "trajectories"  # <stem>.npz next to each video stem: state (T, D), action (T, A) float32
TEST_DIR = "test"  # (image, prompt) pairs: <id>.png + <id>.txt
VIDEO_SUFFIX = ".mp4"  # a first metadata field without it marks a header line
TRAJECTORY_SUFFIX = ".npz"  # trajectories/<stem>.npz, read with np.load(..., allow_pickle=False)
HELDOUT_DIR = "heldout"  # the held-out real episodes whose first frames are test/'s pairs (same layout)
EPISODES_JSONL = "episodes.jsonl"  # simulated sources: {"name", "seed", "prompt", "success", "task"} per episode
