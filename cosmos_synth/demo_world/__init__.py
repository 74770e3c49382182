"""The demo world: a procedural tabletop simulator, its scripted expert, and a rule-based judge of its videos.

    world = DemoWorld(height=64, width=96, max_steps=16)
    episode = rollout_expert(world, "pick_place", seed=3)      # frames, state, action, success
    observation, done, info = world.step([0.05, 0.0, -1.0])

`cosmos_synth.sources.procedural` records expert rollouts as datasets; `cosmos_synth.evaluate` judges generated
videos with `judge`.
"""

from cosmos_synth.demo_world.expert import Episode, replay, rollout_expert
from cosmos_synth.demo_world.scene import FAMILIES, PRETRAINING_FAMILY, Scene, Task, parse_prompt
from cosmos_synth.demo_world.sim import ACTION_NAMES, STATE_NAMES, DemoWorld

__all__ = [
    "ACTION_NAMES",
    "FAMILIES",
    "PRETRAINING_FAMILY",
    "STATE_NAMES",
    "DemoWorld",
    "Episode",
    "Scene",
    "Task",
    "parse_prompt",
    "replay",
    "rollout_expert",
]
