"""compose.yaml checked the way an engine would read it, without an engine."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from flctl.main import accepted_env_vars
from tests.support.signing import write_private_key

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
HOSPITALS = {"h0", "h1", "h2"}


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    result: dict[str, dict[str, Any]] = compose["services"]
    return result


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.partition("=")[::2] for item in env)
    return {str(k): str(v) for k, v in env.items()}


def _depends(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: "service_started" for name in deps}
    return {name: spec.get("condition", "service_started") for name, spec in deps.items()}


ROLE_IMAGE = "nightshift-fl:dev"


def _ours(service: dict[str, Any]) -> bool:
    """A role: runs the root Dockerfile's image (Kafka and Mosquitto have their own)."""
    return bool(service.get("image") == ROLE_IMAGE)


DOCKERFILES = ["Dockerfile", "compose/kafka/Dockerfile", "compose/mosquitto/Dockerfile"]


def test_compose_every_service_has_an_image_or_a_buildable_dockerfile(services: dict) -> None:
    for name, service in services.items():
        assert "image" in service or "build" in service, name
        if "build" in service:
            build = service["build"]
            context = ROOT / (build if isinstance(build, str) else build.get("context", "."))
            dockerfile = (
                "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            )
            assert (context / dockerfile).is_file(), f"{name}: no {context / dockerfile}"


def test_compose_dockerfile_copies_only_paths_that_exist() -> None:
    for dockerfile in DOCKERFILES:
        for line in (ROOT / dockerfile).read_text().splitlines():
            if line.startswith("COPY "):
                for source in line.split()[1:-1]:
                    assert (ROOT / source).exists(), f"{dockerfile} copies missing {source}"


def test_compose_every_image_builds_from_the_base_flctl_images_prepares(services: dict) -> None:
    """No image pulls from a registry: all build FROM the base an air-gapped host imports."""
    from flctl.images import BASE_IMAGE

    builds = {s["image"]: s["build"]["dockerfile"] for s in services.values() if "build" in s}
    assert sorted(builds.values()) == sorted(DOCKERFILES)
    assert builds[ROLE_IMAGE] == "Dockerfile"
    for name, service in services.items():  # built once, by one service, never pulled
        assert service["image"] in builds, f"{name} runs {service['image']}, which nothing builds"
    for dockerfile in DOCKERFILES:
        froms = [
            line.split()[1]
            for line in (ROOT / dockerfile).read_text().splitlines()
            if line.startswith("FROM ")
        ]
        assert froms and all(BASE_IMAGE.endswith("/" + name) for name in froms), dockerfile


def test_compose_brokers_mount_their_config_and_keep_data_in_volumes(services: dict) -> None:
    for name, config in (("kafka", "./compose/kafka/"), ("mosquitto", "./compose/mosquitto/")):
        volumes = [str(v) for v in services[name]["volumes"]]
        assert any(v.startswith(config) and v.endswith(":ro") for v in volumes), name
        assert any(not v.startswith((".", "/")) for v in volumes), f"{name} has no data volume"


def test_compose_depends_on_names_existing_services_with_healthchecks(services: dict) -> None:
    for name, service in services.items():
        for target, condition in _depends(service).items():
            assert target in services, f"{name} depends on unknown {target}"
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{target} has no healthcheck"


def test_compose_roles_read_only_settings_flctl_accepts(services: dict) -> None:
    accepted = accepted_env_vars()
    for name, service in services.items():
        if _ours(service):
            unknown = set(_env(service)) - accepted
            assert not unknown, f"{name} sets {sorted(unknown)}; flctl accepts {sorted(accepted)}"


def test_compose_roles_run_flctl_with_broker_addresses(services: dict) -> None:
    for name, service in services.items():
        if _ours(service):
            assert service["command"][0] == "flctl", name
            assert "FL_MQTT_URL" in _env(service) or "FL_KAFKA_BOOTSTRAP" in _env(service), name


def test_compose_has_one_aggregator_per_hospital(services: dict) -> None:
    hospitals = []
    for service in services.values():
        command = service.get("command") or []
        if command[:2] == ["flctl", "aggregator"]:
            hospitals.append(command[command.index("--hospital") + 1])
            assert (service.get("deploy") or {}).get("replicas", 1) == 1

    assert sorted(hospitals) == sorted(HOSPITALS)


def test_compose_published_ports_do_not_clash(services: dict) -> None:
    seen: dict[int, str] = {}
    for name, service in services.items():
        for port in service.get("ports") or []:
            match = re.match(r"^(?:[\d.]+:)?(\d+):\d+", _default(str(port)))
            assert match, f"{name}: publish an explicit host port, not {port!r}"
            host = int(match.group(1))
            assert (service.get("deploy") or {}).get("replicas", 1) == 1, (
                f"{name} publishes {host} with replicas > 1"
            )
            assert host not in seen, f"{name} and {seen.get(host)} both publish {host}"
            seen[host] = name


def test_compose_bind_mounted_files_exist(services: dict) -> None:
    mounts = [
        (name, str(volume).split(":")[0])
        for name, service in services.items()
        for volume in service.get("volumes") or []
        if str(volume).startswith((".", "/"))
    ]
    assert ("mosquitto", "./compose/mosquitto/mosquitto.conf") in mounts
    for name, source in mounts:
        assert (ROOT / source).exists(), f"{name} mounts missing {source}"


def _default(value: str) -> str:
    """Compose's ${VAR:-default} with nothing set in the shell: the default."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


def _resolved(env: dict[str, str]) -> dict[str, str]:
    return {k: _default(v) for k, v in env.items()}


def test_compose_roles_start_with_valid_settings(
    services: dict, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Each role's command and environment give a configuration its process accepts."""
    from flctl.main import build_parser
    from flctl.roles.aggregator import config_from_args as aggregator_config
    from flctl.roles.coordinator import config_from_args as coordinator_config
    from flctl.roles.selector import config_from_args as selector_config

    builders = {
        "aggregator": aggregator_config,
        "coordinator": coordinator_config,
        "selector": selector_config,
    }
    checked = set()
    for name, service in services.items():
        if not _ours(service):
            continue
        for key in [k for k in os.environ if k.startswith("FL_")]:
            monkeypatch.delenv(key)
        # The signing key pair is the deployment's own (flctl provision), never in the repo.
        monkeypatch.setenv("FL_SIGNING_KEY", str(write_private_key(tmp_path)))
        for key, value in _resolved(_env(service)).items():
            monkeypatch.setenv(key, value)
        command = service["command"]
        assert command[0] == "flctl", name
        args = build_parser().parse_args(command[1:])  # the flags and FL_* values parse
        role = command[1]
        if role in builders:
            builders[role](args)  # raises, naming the setting, if one is missing or bad
            checked.add(role)
    assert checked == set(builders)


def _entrypoint() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("fl_entrypoint", ROOT / "compose/entrypoint.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_compose_entrypoint_waits_for_what_each_role_reads(services: dict) -> None:
    """Start-up order without depends_on conditions (podman < 4.6): the role waits itself."""
    entrypoint = _entrypoint()
    waits = {}
    for service in services.values():
        if _ours(service):
            env = _resolved(_env(service))
            role = service["command"][1]
            waits[role] = {name.split()[0] for name in entrypoint.needs(service["command"], env)}
    assert waits == {
        "coordinator": {"kafka"},
        "selector": {"kafka", "topic", "mqtt"},
        "aggregator": {"kafka", "topic"},
        "devices": {"mqtt"},
    }


def test_compose_entrypoint_gives_up_waiting_after_its_deadline() -> None:
    assert _entrypoint().wait({"never": lambda: False}, deadline_s=0.0) is False
    assert _entrypoint().wait({"now": lambda: True}, deadline_s=0.0) is True
