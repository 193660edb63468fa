"""compose.yaml checked the way an engine would read it, without an engine."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from flctl.main import accepted_env_vars

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
HOSPITALS = {"h0", "h1", "h2"}
SECRETS_VAR = "${FL_SECRETS:-./secrets}"
#: What README tells a user to run before `docker compose up` (besides --out).
PROVISION = ["--root", "/secrets", "--mqtt-url", "mqtt://mosquitto:1883"]


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    result: dict[str, dict[str, Any]] = compose["services"]
    return result


@pytest.fixture(scope="module")
def provisioned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``flctl provision`` as README runs it for compose."""
    from flctl.main import main

    out = tmp_path_factory.mktemp("compose") / "secrets"
    env = {k: os.environ.pop(k) for k in [k for k in os.environ if k.startswith("FL_")]}
    try:
        assert main(["provision", "--out", str(out), *PROVISION]) == 0
    finally:
        os.environ.update(env)
    return out


def _env_file(service: dict[str, Any], secrets: Path) -> dict[str, str]:
    """The service's env_file lines, read from ``secrets`` (what FL_SECRETS points at)."""
    found: dict[str, str] = {}
    for name in service.get("env_file") or []:
        assert name.startswith(SECRETS_VAR + "/"), name
        text = (secrets / name.removeprefix(SECRETS_VAR + "/")).read_text()
        found.update(line.split("=", 1) for line in text.splitlines())
    return found


def _mount(volume: object) -> tuple[str, str]:
    """(source, target) of a short-syntax volume; the source may start with SECRETS_VAR."""
    text = str(volume)
    head = SECRETS_VAR if text.startswith(SECRETS_VAR) else ""
    source, target, *_ = text.removeprefix(head).split(":")
    return head + source, target


def _role(service: dict[str, Any]) -> bool:
    """A long-running role: our image running ``flctl <role>``."""
    return _ours(service) and service["command"][0] == "flctl"


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


def test_compose_roles_run_flctl_with_broker_addresses(services: dict, provisioned: Path) -> None:
    for name, service in services.items():
        if _ours(service):
            assert service["command"][0] in ("flctl", "kafka-acls"), name
            env = {**_env_file(service, provisioned), **_env(service)}
            assert "FL_MQTT_URL" in env or "FL_KAFKA_BOOTSTRAP" in env, name


def test_compose_holds_no_secret_and_every_role_reads_its_own_env_file(services: dict) -> None:
    """Credentials and the token secret come only from flctl provision's env files."""
    text = (ROOT / "compose.yaml").read_text()
    assert "FL_TOKEN_SECRET" not in text and "PASSWORD" not in text
    for name, service in services.items():
        if _role(service):
            assert service["env_file"] == [f"{SECRETS_VAR}/services/{name}.env"], name


def test_compose_brokers_refuse_anonymous_clients() -> None:
    conf = (ROOT / "compose/mosquitto/mosquitto.conf").read_text().splitlines()
    assert "allow_anonymous false" in conf and "allow_anonymous true" not in conf
    assert any(x.startswith("password_file ") for x in conf)
    assert any(x.startswith("acl_file ") for x in conf)
    props = dict(
        x.split("=", 1)
        for x in (ROOT / "compose/kafka/server.properties").read_text().splitlines()
        if x and not x.startswith("#")
    )
    protocols = dict(x.split(":") for x in props["listener.security.protocol.map"].split(","))
    listeners = {x.split("://")[0]: x.split("://")[1] for x in props["listeners"].split(",")}
    for listener, protocol in protocols.items():  # plaintext only on the container's loopback
        assert protocol == "SASL_PLAINTEXT" or listeners[listener].startswith(
            ("127.0.0.1:", "localhost:")
        ), listener
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert "StandardAuthorizer" in props["authorizer.class.name"]


def test_compose_mounts_each_role_exactly_the_files_its_env_names(
    services: dict, provisioned: Path
) -> None:
    """Env files name /secrets/...; the entrypoint copies them from /secrets-mounted/..."""
    for name, service in services.items():
        if not _ours(service):
            continue
        named = {
            v.removeprefix("/secrets/")
            for v in _env_file(service, provisioned).values()
            if v.startswith("/secrets/")
        }
        mounted = {
            _mount(v)[1].removeprefix("/secrets-mounted/")
            for v in service.get("volumes") or []
            if str(v).startswith(SECRETS_VAR)
        }
        if name == "kafka-acls":
            named = {"kafka"}
        assert mounted == named, f"{name}: env names {named}, compose mounts {mounted}"
        for target in mounted:
            assert (provisioned / target).exists(), f"{name}: provision wrote no {target}"


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


def test_compose_bind_mounted_files_exist(services: dict, provisioned: Path) -> None:
    mounts = [
        (name, _mount(volume)[0])
        for name, service in services.items()
        for volume in service.get("volumes") or []
        if str(volume).startswith((".", "/", "$"))
    ]
    assert ("mosquitto", "./compose/mosquitto/mosquitto.conf") in mounts
    assert ("mosquitto", f"{SECRETS_VAR}/mosquitto") in mounts
    assert ("kafka", f"{SECRETS_VAR}/kafka") in mounts
    for name, source in mounts:
        if source.startswith(SECRETS_VAR):
            assert (provisioned / source.removeprefix(SECRETS_VAR + "/")).exists(), source
        else:
            assert (ROOT / source).exists(), f"{name} mounts missing {source}"
        assert all(str(v).endswith(":ro") for v in services[name].get("volumes") or []
                   if str(v).startswith(SECRETS_VAR)), name  # fmt: skip


def _default(value: str) -> str:
    """Compose's ${VAR:-default} with nothing set in the shell: the default."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


def _resolved(env: dict[str, str]) -> dict[str, str]:
    return {k: _default(v) for k, v in env.items()}


def test_compose_roles_start_with_valid_settings(
    services: dict, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Each role's command, environment and provisioned env file give a configuration its
    process accepts (provisioned here with --root at the directory itself, so the key files
    the settings read exist on this host)."""
    from flctl.main import build_parser, main
    from flctl.roles.aggregator import config_from_args as aggregator_config
    from flctl.roles.coordinator import config_from_args as coordinator_config
    from flctl.roles.selector import config_from_args as selector_config

    for key in [k for k in os.environ if k.startswith("FL_")]:
        monkeypatch.delenv(key)
    secrets = tmp_path / "secrets"
    assert main(["provision", "--out", str(secrets), "--mqtt-url", "mqtt://mosquitto:1883"]) == 0
    builders = {
        "aggregator": aggregator_config,
        "coordinator": coordinator_config,
        "selector": selector_config,
    }
    checked = set()
    for service in services.values():
        if not _role(service):
            continue
        for key in [k for k in os.environ if k.startswith("FL_")]:
            monkeypatch.delenv(key)
        env = {**_env_file(service, secrets), **_resolved(_env(service))}
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        command = service["command"]
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


def test_compose_entrypoint_waits_for_what_each_role_reads(
    services: dict, provisioned: Path
) -> None:
    """Start-up order without depends_on conditions (podman < 4.6): the role waits itself."""
    entrypoint = _entrypoint()
    waits = {}
    for service in services.values():
        if _role(service):
            env = {**_env_file(service, provisioned), **_resolved(_env(service))}
            role = service["command"][1]
            waits[role] = {name.split()[0] for name in entrypoint.needs(service["command"], env)}
    assert waits == {
        "coordinator": {"kafka", "acls"},  # logged in: until its ACLs are in place
        "selector": {"kafka", "topic", "mqtt"},
        "aggregator": {"kafka", "topic"},
        "devices": {"mqtt"},
    }


def test_compose_entrypoint_refuses_missing_secrets_naming_provision(
    services: dict, provisioned: Path, tmp_path: Path
) -> None:
    entrypoint = _entrypoint()
    selector = _env_file(services["selector"], provisioned)
    assert entrypoint.problems(["flctl", "selector"], selector) == []
    without = {k: v for k, v in selector.items() if k != "FL_TOKEN_SECRET"}
    assert entrypoint.problems(["flctl", "selector"], without) == ["FL_TOKEN_SECRET is not set"]
    devices = _env_file(services["devices-h1"], provisioned)
    found = entrypoint.problems(["flctl", "devices"], devices)  # /secrets: not on this host
    assert found == [
        "FL_COORDINATOR_KEY=/secrets/signing/coordinator.pub does not exist",
        "FL_DEVICE_CREDENTIALS=/secrets/devices/h1.csv does not exist",
    ]
    assert "flctl provision --out secrets --root /secrets" in entrypoint.PROVISION


def test_compose_entrypoint_hands_secrets_over_keeping_their_modes(tmp_path: Path) -> None:
    import getpass

    mounted, target = tmp_path / "mounted", tmp_path / "secrets"
    (mounted / "signing").mkdir(parents=True)
    (mounted / "signing" / "coordinator.key").write_text("k")
    (mounted / "signing" / "coordinator.key").chmod(0o600)
    (mounted / "signing" / "coordinator.pub").write_text("p")
    (mounted / "signing" / "coordinator.pub").chmod(0o644)
    _entrypoint().take_secrets(mounted, target, getpass.getuser())
    assert (target / "signing" / "coordinator.key").stat().st_mode & 0o777 == 0o600
    assert (target / "signing" / "coordinator.pub").stat().st_mode & 0o777 == 0o644
    assert (target / "signing").stat().st_mode & 0o777 == 0o700


def test_compose_entrypoint_gives_up_waiting_after_its_deadline() -> None:
    assert _entrypoint().wait({"never": lambda: False}, deadline_s=0.0) is False
    assert _entrypoint().wait({"now": lambda: True}, deadline_s=0.0) is True


def test_compose_entrypoint_takes_a_refused_login_as_the_locked_broker_answering() -> None:
    """Mosquitto refuses the anonymous probe; devices and selectors must not wait forever."""
    import socket
    import threading

    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def refuse() -> None:
        for _ in range(2):
            conn, _ = server.accept()
            with conn:
                conn.recv(1024)
                conn.sendall(bytes([0x20, 0x03, 0x00, 0x87, 0x00]))  # v5 CONNACK: not authorized

    threading.Thread(target=refuse, daemon=True).start()
    try:
        env = {"FL_MQTT_URL": f"mqtt://127.0.0.1:{port}"}
        checks = _entrypoint().needs(["flctl", "devices"], env)
        assert [check() for check in checks.values()] == [True]
    finally:
        server.close()
