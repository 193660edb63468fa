"""What a demo run depends on, checked before anything starts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from flsim.attack import ATTACKS, Attack
from services.coordinator.config import RoundSettings


@dataclass(frozen=True)
class DemoOptions:
    """Everything a demo run depends on."""

    models: tuple[str, ...] = ("digits_mlp", "breast_cancer")
    hospitals: int = 3
    devices: int = 10  # per hospital
    rounds: RoundSettings = field(default_factory=RoundSettings)
    alpha: float = 0.5
    seed: int = 0
    partition: Path | None = None
    init_weights: Path | None = None
    dropout: float = 0.0
    availability: str = "always"
    week_seconds: float = 60.0
    selectors: int = 2
    brokers: str = "memory"  # memory | local | external
    mqtt_url: str | None = None
    kafka_bootstrap: str | None = None
    out: Path | None = None
    # Where the roles keep files (artifacts, device state, local brokers' data).
    # None: ``out/work`` with --out, else a temporary directory removed after the run.
    work_dir: Path | None = None
    stop_hospitals: tuple[str, ...] = ()  # aggregators not started (fault drill)
    attackers: float = 0.0  # share of devices sending poisoned updates (poisoning drill)
    attack: str = "sign_flip"  # flsim.attack.ATTACKS
    # Real brokers: device worker processes (0: one per core, more if the devices need it).
    device_workers: int = 0
    synthetic: bool = False  # devices upload random updates instead of training (benchmarks)
    # Run first in each device worker process (a benchmark registers its models there).
    device_setup: Callable[[], None] | None = None

    def __post_init__(self) -> None:
        if self.brokers not in ("memory", "local", "external"):
            raise ValueError(f"brokers must be memory, local or external, got {self.brokers!r}")
        if self.brokers == "external" and not (self.mqtt_url and self.kafka_bootstrap):
            raise ValueError("external brokers need both --mqtt and --kafka")
        if self.rounds.rounds < 1:
            raise ValueError("a demo needs --rounds >= 1")
        if self.out is not None and any((self.out / "models").glob("*/v*.json")):
            raise ValueError(
                f"{self.out / 'models'} already holds a model registry from an earlier run; "
                "choose another --out or remove it"
            )
        if self.hospitals < 1 or self.devices < 1 or self.selectors < 1:
            raise ValueError("hospitals, devices and selectors must be >= 1")
        if self.attackers:  # raises ValueError naming the problem
            Attack(self.attackers, self.attack, norm_bound=self.rounds.clip_norm)
        elif self.attack not in ATTACKS:
            raise ValueError(f"attack must be one of {sorted(ATTACKS)}, got {self.attack!r}")
        if self.device_workers < 0:
            raise ValueError(f"device workers must be >= 0, got {self.device_workers}")
        if not 0 <= self.dropout <= 1:
            raise ValueError(f"dropout must be in [0, 1], got {self.dropout}")
