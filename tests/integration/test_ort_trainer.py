"""The ORT trainer against real ONNX Runtime Training: parity, learning, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from device_sdk.artifacts import InstalledModels
from device_sdk.errors import (
    ArtifactError,
    FeatureError,
    LabelError,
    TrainingDivergedError,
    UnknownModelError,
    WeightsError,
)
from device_sdk.sessions import SessionPool
from device_sdk.trainer import TrainConfig, Trainer
from flsim.datasets import model_dataset
from flsim.experiment import shuffled_split
from modelzoo import (
    ArtifactGenerationError,
    ParamManifest,
    flatten,
    generate_artifacts,
    get_spec,
    model_names,
    shuffled_batches,
    unflatten,
)
from modelzoo import reference as ref
from modelzoo.artifacts import CHECKPOINT, INFO_FILE, TRAINING_MODEL, sha256_of


@pytest.fixture(scope="module")
def artifact_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("artifacts")
    for name in model_names():
        generate_artifacts(name, root / name)
    return root


@pytest.fixture
def digits_dir(artifact_root: Path, tmp_path: Path) -> Path:
    """A private copy of the digits_mlp artifacts that a test may damage."""
    return Path(shutil.copytree(artifact_root / "digits_mlp", tmp_path / "digits_mlp"))


def _split(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    train, test = shuffled_split(model_dataset(get_spec(name)), 0.25, np.random.default_rng(0))
    return train.X, train.y, test.X, test.y


def test_ort_sgd_epoch_matches_numpy_reference(artifact_root: Path) -> None:
    # Prepare: same initial weights, same batches (same rng seed), same lr.
    trainer = Trainer(artifact_root / "digits_mlp")
    data = model_dataset(get_spec("digits_mlp"))
    start = unflatten(trainer.weights(), trainer.manifest)
    lr, batch = 0.1, 32
    # Execute
    result = trainer.train(
        data.X,
        data.y,
        TrainConfig(epochs=1, batch_size=batch, learning_rate=lr),
        np.random.default_rng(42),
    )
    batches = shuffled_batches(len(data.y), batch, np.random.default_rng(42))
    expected, losses = ref.train_epoch(start, data.X, data.y, batches, lr)
    # Assert: every parameter agrees to 1e-4 and training actually moved them.
    ort_params = unflatten(trainer.weights() + result.update, trainer.manifest)
    for name in trainer.manifest.names:
        np.testing.assert_allclose(ort_params[name], expected[name], atol=1e-4, err_msg=name)
    assert result.num_steps == len(batches) == 57
    assert float(np.abs(result.update).max()) > 1e-2
    sizes = np.array([len(b) for b in batches])
    assert result.mean_loss == pytest.approx(float(np.dot(losses, sizes) / sizes.sum()), abs=1e-4)


@pytest.mark.parametrize(
    ("name", "optimizer", "lr", "min_accuracy"),
    [
        ("digits_mlp", "adamw", 0.005, 0.9),
        ("digits_cnn", "sgd", 0.1, 0.85),
        ("breast_cancer", "sgd", 0.05, 0.9),
    ],
)
def test_ort_training_improves_held_out_accuracy(
    artifact_root: Path, name: str, optimizer: str, lr: float, min_accuracy: float
) -> None:
    x, y, xt, yt = _split(name)
    trainer = Trainer(artifact_root / name)
    before = trainer.evaluate(xt, yt)
    config = TrainConfig(epochs=5, batch_size=32, learning_rate=lr, optimizer=optimizer)
    result = trainer.train(x, y, config, np.random.default_rng(0))
    np.testing.assert_array_equal(trainer.weights(), Trainer(artifact_root / name).weights())
    trainer.load_weights(trainer.weights() + result.update, trainer.manifest)
    after = trainer.evaluate(xt, yt)
    assert after.accuracy >= min_accuracy > before.accuracy
    assert after.loss < before.loss
    assert result.num_examples == len(y)
    # predict() (plain InferenceSession) agrees with the eval model's accuracy.
    assert float((trainer.predict(xt) == yt).mean()) == pytest.approx(after.accuracy)
    probs = trainer.predict_proba(xt)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_ort_mnist_cnn_million_parameters_learns_in_a_few_dozen_steps(
    artifact_root: Path,
) -> None:
    # The large model: ~1M parameters (megabyte updates), trained by ORT on 28x28 MNIST.
    x, y, xt, yt = _split("mnist_cnn")
    trainer = Trainer(artifact_root / "mnist_cnn", threads=1)
    assert 900_000 <= trainer.manifest.total_size <= 1_100_000
    before = trainer.evaluate(xt[:500], yt[:500])
    config = TrainConfig(max_steps=40, batch_size=32, learning_rate=0.05)
    result = trainer.train(x, y, config, np.random.default_rng(0))
    trainer.load_weights(trainer.weights() + result.update, trainer.manifest)
    after = trainer.evaluate(xt[:500], yt[:500])
    assert after.accuracy >= 0.75 > before.accuracy


def test_ort_max_steps_and_clipping_bound_the_update(artifact_root: Path) -> None:
    x, y, _, _ = _split("digits_mlp")
    trainer = Trainer(artifact_root / "digits_mlp")
    config = TrainConfig(epochs=3, max_steps=5, batch_size=16, learning_rate=0.1, clip_norm=0.01)
    result = trainer.train(x, y, config, np.random.default_rng(0))
    assert result.num_steps == 5
    assert result.num_examples == 80
    assert result.clipped and result.update_norm > 0.01
    assert float(np.linalg.norm(result.update)) == pytest.approx(0.01, rel=1e-4)
    assert result.update.dtype == np.float32
    assert result.update.shape == (trainer.manifest.total_size,)


def test_ort_same_seed_gives_same_update(artifact_root: Path) -> None:
    x, y, _, _ = _split("breast_cancer")
    trainer = Trainer(artifact_root / "breast_cancer")
    config = TrainConfig(epochs=1, batch_size=8, learning_rate=0.05)
    a = trainer.train(x, y, config, np.random.default_rng(5)).update
    b = trainer.train(x, y, config, np.random.default_rng(5)).update
    c = trainer.train(x, y, config, np.random.default_rng(6)).update
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_ort_rounds_in_a_reused_session_equal_rounds_in_fresh_ones(
    artifact_root: Path, tmp_path: Path, optimizer: str
) -> None:
    # Two devices that installed the same bundle in their own folders, one process.
    x, y, _, _ = _split("digits_mlp")
    dirs = [shutil.copytree(artifact_root / "digits_mlp", tmp_path / d) for d in ("a", "b")]
    pool: SessionPool[Any] = SessionPool()
    devices = [Trainer(d, sessions=pool) for d in dirs]
    config = TrainConfig(max_steps=5, learning_rate=0.01, optimizer=optimizer)
    fresh = Trainer(dirs[0], sessions=SessionPool(max_idle=0))
    expected = fresh.train(x, y, config, np.random.default_rng(3)).update
    updates = [t.train(x, y, config, np.random.default_rng(3)).update for t in devices * 2]
    for update in updates:  # no optimizer state or weights leak from the previous round
        np.testing.assert_array_equal(update, expected)
    assert pool.built == (1 if optimizer == "sgd" else 4)


def test_ort_evaluate_first_scores_the_global_weights_not_the_trained_ones(
    artifact_root: Path,
) -> None:
    x, y, _, _ = _split("breast_cancer")
    trainer = Trainer(artifact_root / "breast_cancer")
    before = trainer.evaluate(x, y)
    config = TrainConfig(epochs=2, batch_size=8, learning_rate=0.05)
    result = trainer.train(x, y, config, np.random.default_rng(1), evaluate_first=True)
    assert result.base_eval is not None
    assert result.base_eval.num_examples == len(y)
    assert result.base_eval.accuracy == pytest.approx(before.accuracy)
    assert result.base_eval.loss == pytest.approx(before.loss, rel=1e-5)
    assert result.mean_loss < before.loss  # training moved on from what was scored
    assert trainer.train(x, y, config, np.random.default_rng(1)).base_eval is None


# --- bad input -------------------------------------------------------------------


def test_ort_corrupted_artifact_file_raises_artifact_error(digits_dir: Path) -> None:
    path = digits_dir / TRAINING_MODEL
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="corrupted"):
        Trainer(digits_dir)


def _rewrite_with_consistent_hash(directory: Path, name: str, content: bytes) -> None:
    """Damage a file *and* fix artifacts.json, so only ORT itself can notice."""
    (directory / name).write_bytes(content)
    info = json.loads((directory / INFO_FILE).read_text())
    info["sha256"][name] = sha256_of(directory / name)
    (directory / INFO_FILE).write_text(json.dumps(info))


def test_ort_garbage_checkpoint_raises_artifact_error(digits_dir: Path) -> None:
    _rewrite_with_consistent_hash(digits_dir, CHECKPOINT, b"not a checkpoint" * 64)
    with pytest.raises(ArtifactError, match="checkpoint"):
        Trainer(digits_dir)


def test_ort_truncated_training_model_raises_artifact_error(digits_dir: Path) -> None:
    content = (digits_dir / TRAINING_MODEL).read_bytes()
    _rewrite_with_consistent_hash(digits_dir, TRAINING_MODEL, content[: len(content) // 2])
    trainer = Trainer(digits_dir)  # the checkpoint is fine; the model is read when training
    x, y, _, _ = _split("digits_mlp")
    with pytest.raises(ArtifactError):
        trainer.train(x, y, TrainConfig(), np.random.default_rng(0))


def test_ort_missing_or_malformed_info_raises_artifact_error(digits_dir: Path) -> None:
    (digits_dir / INFO_FILE).write_text("{not json")
    with pytest.raises(ArtifactError, match="malformed"):
        Trainer(digits_dir)
    (digits_dir / INFO_FILE).unlink()
    with pytest.raises(ArtifactError, match="missing"):
        Trainer(digits_dir)


def test_ort_artifacts_of_another_model_do_not_fit_the_checkpoint(
    artifact_root: Path, digits_dir: Path
) -> None:
    shutil.copyfile(artifact_root / "breast_cancer" / CHECKPOINT, digits_dir / CHECKPOINT)
    _rewrite_with_consistent_hash(
        digits_dir, CHECKPOINT, (artifact_root / "breast_cancer" / CHECKPOINT).read_bytes()
    )
    with pytest.raises(ArtifactError, match="does not match"):
        Trainer(digits_dir)


@pytest.mark.parametrize("length_delta", [-1, 1])
def test_ort_weights_of_wrong_length_raise_weights_error(
    artifact_root: Path, length_delta: int
) -> None:
    trainer = Trainer(artifact_root / "digits_mlp")
    before = trainer.weights()
    with pytest.raises(WeightsError, match="shape"):
        trainer.load_weights(np.zeros(before.size + length_delta, np.float32))
    np.testing.assert_array_equal(trainer.weights(), before)


def test_ort_weights_with_wrong_manifest_shape_raise_weights_error(artifact_root: Path) -> None:
    trainer = Trainer(artifact_root / "digits_mlp")
    # Same total length, transposed first layer: only the manifest can tell.
    wrong = ParamManifest.of([(e.name, e.shape[::-1]) for e in trainer.manifest.entries])
    with pytest.raises(WeightsError, match="manifest"):
        trainer.load_weights(trainer.weights(), wrong)
    with pytest.raises(WeightsError, match="NaN"):
        trainer.load_weights(np.full(trainer.manifest.total_size, np.nan, np.float32))


@pytest.mark.parametrize("width", [63, 65])
def test_ort_features_of_wrong_width_raise_feature_error(artifact_root: Path, width: int) -> None:
    trainer = Trainer(artifact_root / "digits_mlp")
    x, y = np.zeros((4, width), np.float32), np.zeros(4, np.int64)
    with pytest.raises(FeatureError, match="64"):
        trainer.train(x, y, TrainConfig(), np.random.default_rng(0))
    with pytest.raises(FeatureError):
        trainer.predict(x)
    with pytest.raises(FeatureError):
        trainer.evaluate(x, y)


def test_ort_nan_features_and_bad_labels_are_rejected_before_training(artifact_root: Path) -> None:
    trainer = Trainer(artifact_root / "breast_cancer")
    x, y, _, _ = _split("breast_cancer")
    x_nan = x.copy()
    x_nan[3, 7] = np.nan
    with pytest.raises(FeatureError, match="NaN"):
        trainer.train(x_nan, y, TrainConfig(), np.random.default_rng(0))
    with pytest.raises(LabelError):
        trainer.train(x, np.full_like(y, 2), TrainConfig(), np.random.default_rng(0))


def test_ort_exploding_learning_rate_raises_diverged_and_keeps_global(
    artifact_root: Path,
) -> None:
    trainer = Trainer(artifact_root / "digits_mlp")
    before = trainer.weights()
    x, y, _, _ = _split("digits_mlp")
    with pytest.raises(TrainingDivergedError) as err:
        trainer.train(x, y, TrainConfig(learning_rate=1e20), np.random.default_rng(0))
    assert err.value.reason == "diverged"
    np.testing.assert_array_equal(trainer.weights(), before)


def test_ort_task_for_unknown_model_raises_unknown_model(artifact_root: Path) -> None:
    installed = InstalledModels(artifact_root)
    assert set(installed.names()) == set(model_names())
    assert Trainer(installed.path_for("breast_cancer")).info.classes == 2
    with pytest.raises(UnknownModelError):
        installed.path_for("lung_xray")
    with pytest.raises(UnknownModelError):
        installed.path_for("../digits_mlp")


def test_ort_task_asking_for_missing_optimizer_raises_artifact_error(tmp_path: Path) -> None:
    generate_artifacts("breast_cancer", tmp_path / "bc", optimizers=("sgd",))
    trainer = Trainer(tmp_path / "bc")
    x, y, _, _ = _split("breast_cancer")
    with pytest.raises(ArtifactError, match="adamw"):
        trainer.train(x, y, TrainConfig(optimizer="adamw"), np.random.default_rng(0))


def test_generate_artifacts_rejects_unloadable_ir_version(tmp_path: Path) -> None:
    model = get_spec("breast_cancer").build(0)
    model.ir_version = 11
    with pytest.raises(ArtifactGenerationError, match="IR version"):
        generate_artifacts(model, tmp_path / "x")


def test_generate_artifacts_accepts_a_custom_onnx_model(tmp_path: Path) -> None:
    model = get_spec("breast_cancer").build(seed=9)
    model.graph.name = "custom_bc"
    info = generate_artifacts(model, tmp_path / "custom")
    trainer = Trainer(tmp_path / "custom")
    assert (info.model_name, info.input_shape, info.classes) == ("custom_bc", (30,), 2)
    init = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    np.testing.assert_array_equal(trainer.weights(), flatten(init, info.manifest))
