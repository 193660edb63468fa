"""The coordinator's configuration, typed and checked at start-up."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from flcore.errors import InvalidParameter
from flcore.server_opt import ServerOptimizer, make_server_optimizer
from modelzoo import model_names
from services.coordinator.errors import ConfigError


@dataclass(frozen=True)
class RoundSettings:
    """Hyper-parameters and timing of every round of one model."""

    rounds: int = 0  # 0: keep opening rounds forever
    local_epochs: int = 1
    max_steps: int = 0  # 0: no limit besides the epochs
    batch_size: int = 32
    learning_rate: float = 0.1
    clip_norm: float = 0.0  # 0: no clipping (and no norm bound at the aggregators)
    noise_multiplier: float = 0.0  # central Gaussian noise, in units of clip_norm
    fraction: float = 1.0  # devices per round, as a fraction of those expected
    over_selection: float = 1.3
    min_hospital_fraction: float = 0.5
    min_update_fraction: float = 0.5
    selection_window_ms: int = 2_000
    round_timeout_ms: int = 30_000
    close_grace_ms: int = 1_000
    server_optimizer: str = "fedavg"
    server_lr: float | None = None  # None: the optimizer's default

    def __post_init__(self) -> None:
        checks = {
            "rounds": self.rounds >= 0,
            "local_epochs": self.local_epochs >= 1,
            "max_steps": self.max_steps >= 0,
            "batch_size": self.batch_size >= 1,
            "learning_rate": math.isfinite(self.learning_rate) and self.learning_rate > 0,
            "clip_norm": self.clip_norm >= 0,
            "noise_multiplier": self.noise_multiplier >= 0,
            "fraction": 0 < self.fraction <= 1,
            "over_selection": self.over_selection >= 1,
            "min_hospital_fraction": 0 <= self.min_hospital_fraction <= 1,
            "min_update_fraction": 0 <= self.min_update_fraction <= 1,
            "selection_window_ms": 0 < self.selection_window_ms <= self.round_timeout_ms,
            "round_timeout_ms": self.round_timeout_ms > 0,
            "close_grace_ms": self.close_grace_ms >= 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ConfigError(f"{name}={getattr(self, name)!r} is out of range")
        if self.noise_multiplier > 0 and self.clip_norm == 0:
            raise ConfigError("noise_multiplier > 0 needs clip_norm > 0 (noise is scaled by it)")
        self.make_optimizer()  # fails now, naming the setting, rather than after round 1

    def make_optimizer(self) -> ServerOptimizer:
        """The server optimizer these settings name."""
        hparams = {} if self.server_lr is None else {"eta": self.server_lr}
        try:
            return make_server_optimizer(self.server_optimizer, **hparams)
        except InvalidParameter as e:
            raise ConfigError(f"server_optimizer: {e}") from None


@dataclass(frozen=True)
class CoordinatorConfig:
    """What the coordinator trains, where, and how rounds run."""

    models: tuple[str, ...]
    hospitals: tuple[str, ...]
    rounds: RoundSettings = field(default_factory=RoundSettings)
    population: Mapping[str, int] = field(default_factory=dict)  # devices per hospital, if known
    artifacts_dir: Path = Path(".fl/artifacts")
    init_weights: Mapping[str, Path] = field(default_factory=dict)  # model -> .npz by name
    seed: int = 0
    tick_ms: int = 50

    def __post_init__(self) -> None:
        if not self.models:
            raise ConfigError("models: name at least one model")
        unknown = [m for m in self.models if m not in model_names()]
        if unknown:
            raise ConfigError(f"models: unknown {unknown}; the zoo has {list(model_names())}")
        if not self.hospitals or len(set(self.hospitals)) != len(self.hospitals):
            raise ConfigError(f"hospitals: need distinct hospital ids, got {self.hospitals}")
        for hospital, count in self.population.items():
            if hospital not in self.hospitals or count < 0:
                raise ConfigError(f"population: bad entry {hospital}={count}")
        for model in self.init_weights:
            if model not in self.models:
                raise ConfigError(f"init_weights: {model!r} is not one of the models")
        if self.tick_ms <= 0:
            raise ConfigError(f"tick_ms must be > 0, got {self.tick_ms}")
