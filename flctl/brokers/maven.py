"""The Kafka jars: fetched once from Maven Central by the committed ``flctl/kafka/pom.xml``.

The cache holds one directory per Kafka version (``~/.cache/nightshift/kafka-<version>``
or ``$FL_KAFKA_CACHE``); a ``libs/.complete`` stamp marks a finished fetch, so an
interrupted one is redone rather than trusted.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from flctl.brokers.errors import BrokerError, ToolMissing
from flctl.brokers.supervise import Progress
from flctl.brokers.tools import find_tool

# The pom ships as package data of flctl (pyproject.toml: [tool.setuptools.package-data]).
KAFKA_POM = Path(__file__).parent.parent / "kafka" / "pom.xml"
DEFAULT_HOME = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "nightshift"


def kafka_version(pom: Path = KAFKA_POM) -> str:
    """Return the Kafka version the committed pom pins."""
    match = re.search(r"<kafka.version>([^<]+)</kafka.version>", pom.read_text())
    if not match:
        raise BrokerError(f"no <kafka.version> in {pom}")
    return match.group(1)


def default_kafka_cache() -> Path:
    """Return the jar cache directory: ``$FL_KAFKA_CACHE`` or one per Kafka version."""
    env = os.environ.get("FL_KAFKA_CACHE")
    return Path(env) if env else DEFAULT_HOME / f"kafka-{kafka_version()}"


def ensure_kafka_jars(
    cache: Path, *, progress: Progress = lambda _: None, search_path: str | None = None
) -> Path:
    """Fetch the Kafka jars into ``cache/libs`` with mvn unless already there; return libs."""
    libs = cache / "libs"
    done = libs / ".complete"
    if done.exists():
        return libs
    mvn = find_tool("mvn", search_path)
    if mvn is None:
        raise ToolMissing(
            "mvn", f"apt-get install maven (needed once to fetch the Kafka jars into {libs})"
        )
    progress(f"fetching Apache Kafka {kafka_version()} jars into {libs} with mvn (once) ...")
    libs.mkdir(parents=True, exist_ok=True)
    cmd = [
        mvn,
        "-B",
        "-ntp",
        "-Dstyle.color=never",
        "-f",
        str(KAFKA_POM),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={libs}",
        "-DincludeScope=runtime",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    tail: list[str] = []
    for line in proc.stdout:
        if "Copying " not in line:  # one line per jar is noise; the summary follows
            progress("  mvn: " + line.rstrip())
        tail = [*tail[-19:], line.rstrip()]
    if proc.wait() != 0:
        raise BrokerError(
            f"fetching the Kafka jars failed (mvn exit {proc.returncode}); "
            f"is Maven Central reachable? last output:\n" + "\n".join(tail)
        )
    done.write_text(kafka_version() + "\n")
    progress(f"Kafka jars ready in {libs}")
    return libs
