"""The Kafka ACL table, its copy in docs/security.md, the provisioned users and their settings."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from flctl.brokers.kafka_secure import read_users
from flctl.kafka_acls import acls, markdown
from flctl.provision import provision
from flproc.errors import SettingError
from schemas import topics
from services.common.settings import kafka_credentials

pytestmark = pytest.mark.unit

DOC = Path(__file__).resolve().parents[2] / "docs" / "security.md"


def _writers(topic: str) -> set[str]:
    return {a.user for a in acls(("h0", "h1")) if a.name == topic and a.operation == "write"}


def test_security_doc_shows_the_acl_table_as_created() -> None:
    text = DOC.read_text()
    shown = text.split("<!-- acl-table -->\n", 1)[1].split("<!-- /acl-table -->", 1)[0]
    assert shown == markdown(), "paste flctl.kafka_acls.markdown() into docs/security.md"


def test_only_the_coordinator_writes_plans_versions_and_artifacts() -> None:
    for topic in (topics.KAFKA_ROUND_PLANS, topics.KAFKA_MODEL_VERSIONS, topics.KAFKA_ARTIFACTS):
        assert _writers(topic) == {"coordinator"}


def test_each_aggregator_alone_writes_its_partials_and_reads_its_updates() -> None:
    assert _writers(topics.partials_topic("h0")) == {"aggregator-h0"}
    assert _writers(topics.partials_topic("h1")) == {"aggregator-h1"}
    assert _writers(topics.updates_topic("h1")) == {"selector"}
    h0 = {a.name for a in acls(("h0", "h1")) if a.user == "aggregator-h0"}
    assert not {n for n in h0 if n.endswith(".h1")}


def test_provision_gives_each_role_instance_its_own_kafka_user(tmp_path: Path) -> None:
    out = provision(tmp_path / "secrets", ("h0", "h1"), 1).out
    users = out / "kafka" / "users.json"
    env = {
        p.stem: dict(x.split("=", 1) for x in p.read_text().splitlines())
        for p in (out / "services").iterdir()
    }

    assert stat.S_IMODE(users.stat().st_mode) == 0o600
    assert stat.S_IMODE(users.parent.stat().st_mode) == 0o700
    named = {i: e["FL_KAFKA_USERNAME"] for i, e in env.items() if "FL_KAFKA_USERNAME" in e}
    assert named == {i: i for i in ("coordinator", "selector", "aggregator-h0", "aggregator-h1")}
    hospitals, passwords = read_users(out / "kafka")
    assert hospitals == ("h0", "h1")
    assert {i: env[i]["FL_KAFKA_PASSWORD"] for i in named} == {u: passwords[u] for u in named}
    assert len(set(passwords.values())) == 5 and "admin" in passwords  # admin: no role's env


def test_kafka_credentials_need_user_and_password_together() -> None:
    assert kafka_credentials({"kafka_username": "", "kafka_password": None}) is None
    creds = kafka_credentials({"kafka_username": "selector", "kafka_password": "pw"})
    assert creds is not None and creds.username == "selector" and "pw" not in repr(creds)
    with pytest.raises(SettingError, match="kafka_password"):
        kafka_credentials({"kafka_username": "selector", "kafka_password": None})
    with pytest.raises(SettingError, match="kafka_username"):
        kafka_credentials({"kafka_username": "", "kafka_password": "pw"})
