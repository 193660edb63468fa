"""Composition root of the coordinator: wire configuration, bus, store and evaluator."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from onnx import numpy_helper

from flbus.port import LogBus
from flcore.server_opt import ServerOptState
from flproc.clock import Clock
from flproc.errors import SettingError
from modelzoo import flatten, generate_artifacts, get_spec
from modelzoo.artifacts import INFO_FILE
from schemas import ArtifactBundle
from services.coordinator.config import CoordinatorConfig
from services.coordinator.coordinator import Coordinator, KafkaOutbox, load_init_weights
from services.coordinator.evaluation import Evaluator, onnx_model_bytes
from services.coordinator.model_rounds import ModelRounds
from services.coordinator.store import ModelStore, VersionRecord


def artifact_bundle(model: str, artifacts_dir: Path, seed: int = 0) -> ArtifactBundle:
    """The model's ORT training artifacts, generated once per architecture, as one bundle."""
    folder = Path(artifacts_dir) / model
    if not (folder / INFO_FILE).is_file():
        generate_artifacts(model, folder, seed=seed)
    files = {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}
    digest = hashlib.sha256(files[INFO_FILE]).hexdigest()
    return ArtifactBundle.pack(model, digest, files)


def initial_weights(model: str, config: CoordinatorConfig) -> dict[str, np.ndarray]:
    """Version 0: ``--init-weights`` if given, else the zoo's seeded initialisation."""
    spec = get_spec(model)
    manifest = spec.param_manifest()
    if model in config.init_weights:
        weights = load_init_weights(config.init_weights[model])
        missing = [e.name for e in manifest.entries if e.name not in weights]
        if missing:
            raise SettingError("init_weights", f"{model}: missing parameters {missing}")
        for e in manifest.entries:
            if tuple(weights[e.name].shape) != tuple(e.shape):
                raise SettingError(
                    "init_weights",
                    f"{model}: {e.name} has shape {weights[e.name].shape}, "
                    f"the model needs {tuple(e.shape)}",
                )
        return {e.name: weights[e.name] for e in manifest.entries}
    graph = spec.build(config.seed)
    return {
        i.name: numpy_helper.to_array(i)
        for i in graph.graph.initializer
        if i.name in manifest.names
    }


def build(
    config: CoordinatorConfig,
    bus: LogBus,
    store: ModelStore,
    evaluator: Evaluator,
    clock: Clock,
) -> Coordinator:
    """A ready-to-run coordinator; models resume from the latest stored version."""
    outbox = KafkaOutbox(bus, clock)
    models: dict[str, ModelRounds] = {}
    bundles: dict[str, ArtifactBundle] = {}
    for i, name in enumerate(config.models):
        manifest = get_spec(name).param_manifest()
        bundles[name] = artifact_bundle(name, config.artifacts_dir)
        record = store.latest(name)
        if record is None:
            weights = initial_weights(name, config)
            onnx_model = onnx_model_bytes(name, weights)
            metrics = evaluator.evaluate(name, onnx_model)
            record = VersionRecord(name, 0, -1, 0, clock(), metrics, note="initial")
            store.put(record, weights, onnx_model)
        _, weights = store.get(name, record.version)
        saved = store.server_state(name, record.version)
        opt_state = ServerOptState.from_arrays(saved) if saved is not None else ServerOptState()
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
            population=config.population,
            version=record.version,
            weights=flatten(weights, manifest),
            opt_state=opt_state,
        )
    return Coordinator(bus, models, outbox, bundles, clock, config.tick_ms)
