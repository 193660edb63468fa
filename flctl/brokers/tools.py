"""Finding the programs the brokers need: mosquitto, java (17+) and mvn."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

from flctl.brokers.errors import ToolMissing

# Where OS packages put daemons that an ordinary user's PATH often lacks.
_EXTRA_TOOL_DIRS = ("/usr/sbin", "/usr/local/sbin", "/opt/homebrew/sbin", "/opt/homebrew/bin")


def find_tool(name: str, search_path: str | None = None) -> str | None:
    """Find an executable on ``search_path`` (default: PATH plus the sbin dirs)."""
    if search_path is None:
        search_path = os.pathsep.join([os.environ.get("PATH", ""), *_EXTRA_TOOL_DIRS])
    return shutil.which(name, path=search_path)


def check_java(search_path: str | None) -> str:
    """The path of a Java 17+ runtime; ToolMissing naming the package otherwise."""
    java = find_tool("java", search_path)
    if java is None:
        raise ToolMissing(
            "java", "apt-get install openjdk-17-jre-headless (Kafka 4 needs Java 17+)"
        )
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    major = int(match.group(1)) if match else 0
    if major == 1 and match and match.group(2):
        major = int(match.group(2))
    if major < 17:
        raise ToolMissing(
            "java 17+",
            f"found {out.splitlines()[0] if out else java}; "
            "apt-get install openjdk-17-jre-headless",
        )
    return java
