"""Composition root of the coordinator: wire configuration, bus, store and evaluator."""

from __future__ import annotations

import hashlib
from concurrent.futures import Executor
from pathlib import Path

import numpy as np

from flbus.port import LogBus
from flproc.clock import Clock
from flproc.errors import SettingError
from flstore import ModelStore
from modelzoo import flatten, generate_artifacts, get_spec
from modelzoo.artifacts import INFO_FILE
from schemas import ArtifactBundle
from services.coordinator.config import CoordinatorConfig
from services.coordinator.coordinator import Coordinator, KafkaOutbox
from services.coordinator.evaluation import Evaluator
from services.coordinator.init_weights import initial_weights
from services.coordinator.model_rounds import ModelRounds
from services.coordinator.resume import resume_version


def artifact_bundle(model: str, artifacts_dir: Path, seed: int = 0) -> ArtifactBundle:
    """The model's ORT training artifacts, generated once per architecture, as one bundle."""
    folder = Path(artifacts_dir) / model
    if not (folder / INFO_FILE).is_file():
        generate_artifacts(model, folder, seed=seed)
    files = {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}
    digest = hashlib.sha256(files[INFO_FILE]).hexdigest()
    return ArtifactBundle.pack(model, digest, files)


def build(
    config: CoordinatorConfig,
    bus: LogBus,
    store: ModelStore,
    evaluator: Evaluator,
    clock: Clock,
    executor: Executor | None = None,
) -> Coordinator:
    """A ready-to-run coordinator; models resume from the latest stored version.

    ``executor`` runs each close's export, evaluation and store writes off the
    event loop (None: the loop's default executor).
    """
    if config.signing_key is None:  # devices would adopt nothing it publishes
        raise SettingError("signing_key", "is required: the key that signs plans and versions")
    outbox = KafkaOutbox(bus, clock, config.signing_key)
    models: dict[str, ModelRounds] = {}
    bundles: dict[str, ArtifactBundle] = {}
    for i, name in enumerate(config.models):
        manifest = get_spec(name).param_manifest()
        bundles[name] = artifact_bundle(name, config.artifacts_dir)
        record, weights, opt_state = resume_version(
            name,
            manifest,
            store,
            evaluator,
            lambda: flatten(initial_weights(name, config), manifest),  # noqa: B023 (called now)
            clock(),
        )
        models[name] = ModelRounds(
            model=name,
            hospitals=config.hospitals,
            settings=config.rounds,
            manifest=manifest,
            store=store,
            evaluator=evaluator,
            outbox=outbox,
            rng=np.random.default_rng([config.seed, i]),
            artifact_digest=bundles[name].digest,
            # announced at start, ahead of the first plan: artifacts and the current version
            broadcast_bytes=len(bundles[name].data) + 4 * manifest.total_size,
            population=config.population,
            executor=executor,
            version=record.version,
            weights=weights,
            opt_state=opt_state,
        )
    return Coordinator(bus, models, outbox, bundles, clock, config.tick_ms)
