"""The coordinator's configuration, typed and checked at start-up, and how a user spells it.

Errors are :class:`flproc.errors.SettingError` naming the config field; the
command renders them with the flag and variable of :data:`SETTINGS` and
:data:`ROUND_SETTINGS`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from flcore.errors import InvalidParameter
from flcore.robust import MAX_TRIM_FRACTION, RULES, check_rule
from flcore.server_opt import SERVER_OPTIMIZERS, ServerOptimizer, make_server_optimizer
from flcore.signing import Signer
from flproc.errors import SettingError
from flproc.keys import signing_key_file
from flproc.parsers import Range, names, path, seconds_as_ms
from flproc.settings import Setting
from modelzoo import get_spec, model_names
from modelzoo.errors import UnknownModelError
from services.common.settings import HOSPITALS  # shared with the selector

_WHOLE_AT_LEAST_0, _WHOLE_AT_LEAST_1 = Range(0, integer=True), Range(1, integer=True)
_WHOLE_ABOVE_0, _ABOVE_0 = Range(0, low_open=True, integer=True), Range(0, low_open=True)
_AT_LEAST_0, _SHARE = Range(0), Range(0, 1)
RANGES: dict[str, Range] = {
    "rounds": _WHOLE_AT_LEAST_0,
    "local_epochs": _WHOLE_AT_LEAST_1,
    "max_steps": _WHOLE_AT_LEAST_0,
    "batch_size": _WHOLE_AT_LEAST_1,
    "learning_rate": _ABOVE_0,
    "clip_norm": _AT_LEAST_0,
    "noise_multiplier": _AT_LEAST_0,
    "fraction": Range(0, 1, low_open=True),
    "over_selection": Range(1),
    "min_hospital_fraction": _SHARE,
    "min_update_fraction": _SHARE,
    "round_timeout_ms": _WHOLE_ABOVE_0,
    "selection_window_ms": _WHOLE_ABOVE_0,
    "close_grace_ms": _WHOLE_AT_LEAST_0,
    "server_lr": _ABOVE_0,  # when given
    "seed": _WHOLE_AT_LEAST_0,
    "tick_ms": _WHOLE_ABOVE_0,
    "max_examples_per_update": _WHOLE_AT_LEAST_1,
    "goal_growth": Range(1),
    "max_devices_per_hospital": _WHOLE_AT_LEAST_1,
    "trim_fraction": Range(0, MAX_TRIM_FRACTION),
}
"""The numbers each numeric field accepts (the config's check and its setting's parser)."""


_ROUND_NUMBERS = (
    "rounds", "local_epochs", "max_steps", "batch_size", "learning_rate", "clip_norm",
    "noise_multiplier", "fraction", "over_selection", "min_hospital_fraction",
    "min_update_fraction", "round_timeout_ms", "selection_window_ms", "close_grace_ms",
    "max_examples_per_update", "goal_growth", "max_devices_per_hospital", "trim_fraction",
)  # fmt: skip

DEFAULT_CLIP_NORM = 10.0
"""Default L2 bound on a device update. Honest updates of the zoo's demo models stay far
below it (at most 0.79 for digits_mlp and 1.13 for breast_cancer over a 30-round demo),
so they are never clipped; one scaled update can no longer set the global model."""


@dataclass(frozen=True)
class RoundSettings:
    """Hyper-parameters and timing of every round of one model."""

    rounds: int = 0  # 0: keep opening rounds forever
    local_epochs: int = 1
    max_steps: int = 0  # 0: no limit besides the epochs
    batch_size: int = 32
    learning_rate: float = 0.1
    clip_norm: float = DEFAULT_CLIP_NORM  # 0: no clipping (and no norm bound at the aggregators)
    noise_multiplier: float = 0.0  # central Gaussian noise, in units of clip_norm
    fraction: float = 1.0  # devices per round, as a fraction of those expected
    over_selection: float = 1.3
    min_hospital_fraction: float = 0.5
    min_update_fraction: float = 0.5
    selection_window_ms: int = 2_000
    round_timeout_ms: int = 30_000
    close_grace_ms: int = 1_000
    server_optimizer: str = "fedavg"  # the commands default to fedadam (ROUND_SETTINGS)
    server_lr: float | None = None  # None: the optimizer's default
    max_examples_per_update: int = 100_000  # a partial claiming more per update is refused
    goal_growth: float = 2.0  # a hospital's goal grows at most this much from round to round
    max_devices_per_hospital: int = 10_000  # devices counted from check-ins at most
    aggregation: str = "fedavg"  # or median / trimmed_mean, at hospitals and across them
    trim_fraction: float = 0.3  # share trimmed_mean drops from each side (3 of 10)

    def __post_init__(self) -> None:
        for name in _ROUND_NUMBERS:
            RANGES[name].check(name, getattr(self, name))
        if self.selection_window_ms > self.round_timeout_ms:
            raise SettingError(
                "selection_window_ms",
                f"must be at most the round timeout ({self.round_timeout_ms} ms), "
                f"got {self.selection_window_ms} ms",
            )
        if self.noise_multiplier > 0 and self.clip_norm == 0:
            raise SettingError(
                "noise_multiplier", "needs clip_norm > 0 (the noise is scaled by the clip norm)"
            )
        if self.server_lr is not None:
            RANGES["server_lr"].check("server_lr", self.server_lr)
        try:
            check_rule(self.aggregation, self.trim_fraction)
        except InvalidParameter as e:
            raise SettingError("aggregation", str(e)) from None
        self.make_optimizer()  # fails now, naming the setting, rather than after round 1

    @classmethod
    def from_settings(cls, values: Mapping[str, Any]) -> RoundSettings:
        """The round settings among ``values`` (:func:`flproc.settings.resolve` output)."""
        return cls(**{k: v for k, v in values.items() if k in _ROUND_FIELDS})

    def make_optimizer(self) -> ServerOptimizer:
        """The server optimizer these settings name."""
        hparams = {} if self.server_lr is None else {"eta": self.server_lr}
        try:
            return make_server_optimizer(self.server_optimizer, **hparams)
        except InvalidParameter as e:
            raise SettingError("server_optimizer", str(e)) from None


_ROUND_FIELDS = frozenset(f.name for f in fields(RoundSettings))


def _unknown_models(models: tuple[str, ...]) -> str | None:
    for name in models:
        try:
            get_spec(name)
        except UnknownModelError as e:
            return str(e.args[0])
    return None


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
    # Signs every plan, version and artifact bundle; required to build a coordinator
    # (None only for a config that is read, never run).
    signing_key: Signer | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not self.models:
            raise SettingError("models", f"name at least one model of {list(model_names())}")
        unknown = _unknown_models(self.models)
        if unknown:
            raise SettingError("models", unknown)
        if not self.hospitals or len(set(self.hospitals)) != len(self.hospitals):
            raise SettingError("hospitals", f"need distinct hospital ids, got {self.hospitals}")
        for hospital, count in self.population.items():
            if hospital not in self.hospitals or count < 0:
                raise SettingError(
                    "population", f"bad entry {hospital}={count} (hospitals: {self.hospitals})"
                )
        for model in self.init_weights:
            if model not in self.models:
                raise SettingError("init_weights", f"{model!r} is not one of the models")
        for name in ("seed", "tick_ms"):
            RANGES[name].check(name, getattr(self, name))

    @classmethod
    def from_settings(cls, values: Mapping[str, Any]) -> CoordinatorConfig:
        """The config from :func:`flproc.settings.resolve` over SETTINGS + ROUND_SETTINGS."""
        rest = {k: v for k, v in values.items() if k not in _ROUND_FIELDS}
        return cls(rounds=RoundSettings.from_settings(values), **rest)


def _models(raw: str) -> tuple[str, ...]:
    models = names(raw)
    problem = _unknown_models(models) if models else "name at least one model"
    if problem:
        raise ValueError(problem)
    return models


def _population(raw: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in names(raw):
        hospital, _, count = item.partition("=")
        if not hospital or not count.strip().isdigit():
            raise ValueError(f"must be hospital=count[,hospital=count...], got {raw!r}")
        out[hospital.strip()] = int(count)
    return out


MODELS = Setting("models", "--models", "FL_MODELS", "zoo models to train, comma separated",
                 _models, "digits_mlp,breast_cancer")  # fmt: skip
SEED = Setting("seed", "--seed", "FL_SEED", "seed of initial weights and splits",
               RANGES["seed"].parse, "0")  # fmt: skip

SETTINGS: tuple[Setting, ...] = (
    MODELS,
    HOSPITALS,
    Setting("population", "--population", "FL_POPULATION",
            "expected devices per hospital, e.g. h0=10,h1=10 (empty: learnt from check-ins)",
            _population, ""),
    Setting("artifacts_dir", "--artifacts-dir", "FL_ARTIFACTS_DIR",
            "where ORT training artifacts are generated", path, ".fl/artifacts"),
    SEED,
    Setting("signing_key", "--signing-key", "FL_SIGNING_KEY",
            "the Ed25519 private key (PKCS8 PEM file, mode 600) that signs every plan, model "
            "version and artifact bundle (flctl provision writes one)",
            signing_key_file, required=True),
)  # fmt: skip
"""The settings of :class:`CoordinatorConfig` besides its rounds."""


def _seconds(field: str) -> Callable[[str], int]:
    return seconds_as_ms(RANGES[field])  # the bounds are 0: the same in seconds and ms


def _rng(field: str) -> Callable[[str], Any]:
    return RANGES[field].parse


ROUND_SETTINGS: tuple[Setting, ...] = (
    Setting("rounds", "--rounds", "FL_ROUNDS", "rounds per model (0: forever)", _rng("rounds"),
            "30"),
    Setting("local_epochs", "--local-epochs", "FL_LOCAL_EPOCHS",
            "local epochs per device per round", _rng("local_epochs"), "1"),
    Setting("max_steps", "--max-steps", "FL_MAX_STEPS",
            "cap on local SGD steps per round (0: no cap)", _rng("max_steps"), "0"),
    Setting("batch_size", "--batch-size", "FL_BATCH_SIZE", "local batch size",
            _rng("batch_size"), "32"),
    Setting("learning_rate", "--lr", "FL_LR", "device SGD learning rate",
            _rng("learning_rate"), "0.1"),
    Setting("fraction", "--fraction", "FL_FRACTION",
            "devices per round as a fraction of the eligible ones", _rng("fraction"), "1.0"),
    Setting("over_selection", "--over-selection", "FL_OVER_SELECTION",
            "admit this many times the goal, to absorb dropouts", _rng("over_selection"), "1.3"),
    Setting("server_optimizer", "--server-optimizer", "FL_SERVER_OPTIMIZER",
            "how the server applies each round's mean update; fedadam (the demo's published "
            "figures) needs about a third of fedavg's rounds on the non-IID split",
            default="fedadam", choices=SERVER_OPTIMIZERS),
    Setting("server_lr", "--server-lr", "FL_SERVER_LR",
            "server learning rate (default: the optimizer's)", _rng("server_lr")),
    Setting("clip_norm", "--clip-norm", "FL_CLIP_NORM",
            "L2 bound on each device update (0: off)", _rng("clip_norm"),
            str(DEFAULT_CLIP_NORM)),
    Setting("noise_multiplier", "--noise-multiplier", "FL_NOISE_MULTIPLIER",
            "central Gaussian noise in units of --clip-norm (0: off)",
            _rng("noise_multiplier"), "0"),
    Setting("round_timeout_ms", "--round-timeout", "FL_ROUND_TIMEOUT",
            "seconds before a round closes on the hospitals that reported",
            _seconds("round_timeout_ms"), "30"),
    Setting("selection_window_ms", "--selection-window", "FL_SELECTION_WINDOW",
            "seconds a round admits devices (at most --round-timeout)",
            _seconds("selection_window_ms"), "5"),
    Setting("close_grace_ms", "--close-grace", "FL_CLOSE_GRACE",
            "seconds past the deadline to wait for partials", _seconds("close_grace_ms"), "1"),
    Setting("min_hospital_fraction", "--min-fraction", "FL_MIN_FRACTION",
            "share of the goal (updates and hospitals) a round needs to close",
            _rng("min_hospital_fraction"), "0.5", also=("min_update_fraction",)),
    Setting("max_examples_per_update", "--max-examples-per-update",
            "FL_MAX_EXAMPLES_PER_UPDATE",
            "examples one device update may claim; a partial claiming more is refused",
            _rng("max_examples_per_update"), "100000"),
    Setting("goal_growth", "--goal-growth", "FL_GOAL_GROWTH",
            "a hospital's goal grows at most this factor per round (bounds check-in floods)",
            _rng("goal_growth"), "2"),
    Setting("max_devices_per_hospital", "--max-devices-per-hospital",
            "FL_MAX_DEVICES_PER_HOSPITAL",
            "devices of one hospital counted from check-ins at most",
            _rng("max_devices_per_hospital"), "10000"),
    Setting("aggregation", "--aggregation", "FL_AGGREGATION",
            "how updates are combined, over each hospital's devices and across hospitals: "
            "fedavg (weighted mean), or median / trimmed_mean (robust to a poisoned minority; "
            "aggregators keep the round's updates: devices x params x 4 bytes)",
            default="fedavg", choices=RULES),
    Setting("trim_fraction", "--trim-fraction", "FL_TRIM_FRACTION",
            "share of the values trimmed_mean drops from each side, per coordinate",
            _rng("trim_fraction"), "0.3"),
)  # fmt: skip
"""The settings of :class:`RoundSettings`, shared by ``flctl coordinator`` and ``flctl demo``."""
