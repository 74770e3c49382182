"""regenerate: new (image, prompt) pairs dropped in an inbox become new labelled episodes of the exports, once each.

    prefect deployment run regenerate/nightly --param inbox=/data/inbox

Meant for a schedule (prefect.yaml: `regenerate/nightly`, cron, inactive until switched on). It generates with the
run's adapter (default: the latest one the run trained, `<run_dir>/train/`), labels with the run's IDM, and rewrites
the exports from every episode so far. A ledger of content hashes (cosmos_synth.regenerate) keeps it idempotent:
the same inbox twice adds nothing the second time.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task

from cosmos_synth.config import LabelConfig
from cosmos_synth.models import trained_weights_file
from cosmos_synth.recipe import load_run_config
from cosmos_synth.regenerate import Batch, collect_new_pairs, combined_manifest, record_batch
from tasks.stages import export_task, generate_task, label_task


@task(name="collect-inbox")
def collect_task(inbox: Path, regen_dir: Path) -> Batch | None:
    return collect_new_pairs(inbox, regen_dir)


@flow(name="regenerate")
def regenerate(
    recipe: str = "demo", overrides: dict[str, Any] | None = None, inbox: str = "inbox", adapter: str | None = None
) -> dict[str, Any]:
    """Turn the inbox's new pairs into episodes of `recipe`'s run; return what was added."""
    logger = get_run_logger()
    cfg = load_run_config(recipe, overrides)
    regen_dir = cfg.run_dir / "regenerate"
    batch = collect_task(Path(inbox), regen_dir)
    if batch is None:
        logger.info("inbox %s holds no new pairs; the exports are unchanged", inbox)
        return {"new_episodes": 0, "batch": None}
    adapter_dir = Path(adapter) if adapter else cfg.trained_dir
    trained_weights_file(adapter_dir)  # a clear error when the run has not trained yet
    generated = generate_task(
        replace(cfg.generate_config(adapter_dir), pairs_dir=batch.pairs_dir, out_dir=batch.root / "generate")
    )
    manifest = generated.manifest
    if cfg.label:
        manifest = label_task(
            LabelConfig(manifest=manifest, idm=cfg.idm_dir, out_dir=batch.root / "label", device=cfg.device)
        ).manifest
    episodes = combined_manifest(regen_dir, cfg.export_config().manifest, manifest)
    exported = export_task(replace(cfg.export_config(), manifest=episodes))
    record_batch(regen_dir, batch)  # last: a run that dies before this is redone, not duplicated
    return {"new_episodes": len(batch.entries), "batch": batch.name, "episodes": exported.num_episodes}
