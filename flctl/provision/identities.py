"""Who a deployment is made of: hospitals, their devices and the service instances.

Pure data and naming: no files. A :class:`Deployment` is what every writer
receives; :func:`common_env` gives each service instance the ids it serves.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from schemas.topics import check_id

COORDINATOR, SELECTOR = "coordinator", "selector"

EnvLines = dict[str, list[str]]
"""Service instance -> ``FL_NAME=value`` lines for ``services/<instance>.env``."""


@dataclass(frozen=True)
class Written:
    """What one writer produced: env lines per instance, and lines for the summary."""

    env: EnvLines
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Deployment:
    """Everything a writer needs to know; ``out`` is the directory being written.

    ``new_secret`` makes one fresh random secret (URL, CSV and env-file safe);
    it is passed in so tests can pin it. ``root`` is where the roles will find
    ``out`` (``/secrets`` when compose mounts it there): paths in env files
    name files under ``root``, files are written under ``out``.
    """

    out: Path
    root: Path
    hospitals: tuple[str, ...]
    devices: Mapping[str, tuple[str, ...]]  # hospital -> its device ids
    mqtt_url: str  # the broker as services and devices reach it, without credentials
    tls: bool
    new_secret: Callable[[], str] = field(repr=False)

    def at(self, *parts: str) -> str:
        """Where a role finds ``out/<parts>``: the path to put in an env file."""
        return str(self.root.joinpath(*parts))

    @property
    def instances(self) -> tuple[str, ...]:
        """Every service instance that gets a ``services/<instance>.env``."""
        return (
            COORDINATOR,
            SELECTOR,
            *(aggregator(h) for h in self.hospitals),
            *(simulator(h) for h in self.hospitals),
        )


def aggregator(hospital: str) -> str:
    """Instance name of ``hospital``'s aggregator."""
    return f"aggregator-{hospital}"


def simulator(hospital: str) -> str:
    """Instance name of the device simulator (``flctl devices``) of ``hospital``."""
    return f"devices-{hospital}"


def device_ids(hospital: str, count: int) -> tuple[str, ...]:
    """The ids ``flctl devices`` gives a hospital's devices (``h0-d0``...): the same split."""
    return tuple(f"{hospital}-d{i}" for i in range(count))


def device_username(hospital: str, device: str) -> str:
    """MQTT username of a device: ``<hospital>.<device>`` (ids never contain a dot)."""
    return f"{check_id(hospital, 'hospital')}.{check_id(device, 'device')}"


def common_env(d: Deployment) -> Written:
    """The ids each instance serves, and the admission token secret of selector and aggregators.

    Selectors sign admission tokens and aggregators check them, so they share
    one secret (``FL_TOKEN_SECRET``); the coordinator and devices never see it.
    """
    per = max((len(ids) for ids in d.devices.values()), default=0)
    everyone = f"FL_HOSPITALS={','.join(d.hospitals)}"
    env: EnvLines = {i: [everyone] for i in d.instances}
    env[COORDINATOR].append(f"FL_DEVICES_PER_HOSPITAL={per}")
    for h in d.hospitals:
        env[aggregator(h)].append(f"FL_HOSPITAL={h}")
        env[simulator(h)].append(f"FL_DEVICES_PER_HOSPITAL={per}")
    token = f"FL_TOKEN_SECRET={d.new_secret()}"
    for instance in (SELECTOR, *(aggregator(h) for h in d.hospitals)):
        env[instance].append(token)
    return Written(env)
