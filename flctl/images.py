"""``flctl images prepare``: the build context for images that build without PyPI or Maven.

The Dockerfiles (``Dockerfile``, ``compose/kafka/Dockerfile``,
``compose/mosquitto/Dockerfile``) start from ``debian:bookworm-slim`` and install
Debian packages; everything else comes from ``compose/context``:

- ``wheels/``: every Python dependency of ``nightshift-fl[services,sim]`` (and
  setuptools), built or downloaded on this host with pip; the project itself is
  built from the copied sources inside the image, so an edit never meets a
  stale wheel;
- ``kafka-libs/``: the Kafka jars of ``flctl brokers fetch``.

With ``--base`` (default ``auto``: only when the engine lacks the image) it also
makes ``debian:bookworm-slim`` with ``debootstrap --variant=minbase bookworm``
and imports it into podman or docker, for engines that reach no image registry.
Downloads are cached under ``~/.cache/nightshift`` (wheels, the rootfs tarball).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from flctl.brokers.errors import BrokerError
from flctl.brokers.maven import DEFAULT_HOME, default_kafka_cache, ensure_kafka_jars
from flproc.settings import Subparsers

ROOT = Path(__file__).resolve().parent.parent
BASE_IMAGE = "docker.io/library/debian:bookworm-slim"
SUITE = "bookworm"
EXTRAS = "services,sim"


class PrepareFailed(Exception):
    """A step of ``flctl images prepare`` failed; the message says which and why."""


def _say(line: str) -> None:
    print(f"flctl images: {line}", file=sys.stderr, flush=True)


def _run(step: str, cmd: list[str]) -> None:
    _say(f"{step}: {' '.join(cmd)}")
    if subprocess.run(cmd).returncode != 0:
        raise PrepareFailed(f"{step} failed: {' '.join(cmd)}")


def _sync(files: list[Path], dest: Path) -> None:
    """Make ``dest`` hold exactly ``files`` (hard links where possible, else copies)."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for src in files:
        try:
            os.link(src, dest / src.name)
        except OSError:
            shutil.copy2(src, dest / src.name)


def prepare_wheels(context: Path, cache: Path, root: Path = ROOT) -> int:
    """Wheels of the project's dependencies into ``context/wheels``; return how many."""
    if not (root / "pyproject.toml").is_file():
        raise PrepareFailed(f"no pyproject.toml in {root}: run from a clone of the project")
    cache.mkdir(parents=True, exist_ok=True)
    _run(
        "wheels",
        [sys.executable, "-m", "pip", "wheel", "-q", "--wheel-dir", str(cache),
         "--find-links", str(cache), f"{root}[{EXTRAS}]", "setuptools>=70.1"],
    )  # fmt: skip
    # The cache may hold older versions too: pip --no-index picks what pyproject asks for.
    wheels = sorted(p for p in cache.glob("*.whl") if not p.name.startswith("nightshift_fl-"))
    _sync(wheels, context / "wheels")
    return len(wheels)


def prepare_kafka(context: Path, cache: Path | None = None) -> int:
    """The Kafka jars (fetched once by Maven) into ``context/kafka-libs``; return how many."""
    try:
        libs = ensure_kafka_jars(cache or default_kafka_cache(), progress=_say)
    except BrokerError as exc:
        raise PrepareFailed(f"kafka jars: {exc}") from exc
    jars = sorted(libs.glob("*.jar"))
    _sync([*jars, libs / ".complete"], context / "kafka-libs")
    return len(jars)


def find_engine(wanted: str) -> str | None:
    """The container engine to import the base image into: podman or docker, if any."""
    names = ["podman", "docker"] if wanted == "auto" else [wanted]
    return next((name for name in names if shutil.which(name)), None)


def has_image(engine: str, image: str = BASE_IMAGE) -> bool:
    """Whether ``engine`` already holds ``image``."""
    cmd = [engine, "image", "inspect", image]
    return subprocess.run(cmd, capture_output=True).returncode == 0


def base_tarball(cache: Path, mirror: str) -> Path:
    """A minbase Debian root filesystem as a tarball, made once with debootstrap."""
    tarball = cache / f"debian-{SUITE}-minbase.tar"
    if tarball.is_file():
        return tarball
    debootstrap = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
    if not Path(debootstrap).exists():
        raise PrepareFailed("base image: debootstrap missing (apt-get install debootstrap)")
    if os.geteuid() != 0:
        raise PrepareFailed("base image: debootstrap needs root (run with sudo)")
    rootfs = cache / f"debian-{SUITE}-rootfs"
    shutil.rmtree(rootfs, ignore_errors=True)
    _run("base image", [debootstrap, "--variant=minbase", SUITE, str(rootfs), mirror])
    # Package lists are stale by the time an image builds; every Dockerfile runs apt-get update.
    for stale in ("var/lib/apt/lists", "var/cache/apt"):
        shutil.rmtree(rootfs / stale, ignore_errors=True)
        (rootfs / stale / "partial").mkdir(parents=True)
    partial = tarball.with_suffix(".part")
    with tarfile.open(partial, "w") as tar:
        tar.add(rootfs, arcname=".")
    partial.rename(tarball)
    shutil.rmtree(rootfs)
    return tarball


def prepare_base(engine: str, cache: Path, mirror: str) -> None:
    """Import the debootstrap root filesystem into ``engine`` as :data:`BASE_IMAGE`."""
    tarball = base_tarball(cache, mirror)
    _run("base image", [engine, "import", str(tarball), BASE_IMAGE])


def prepare(args: argparse.Namespace) -> int:
    context, cache = Path(args.context), Path(args.cache)
    try:
        wheels = prepare_wheels(context, cache / "wheels")
        _say(f"{wheels} wheels in {context / 'wheels'}")
        jars = prepare_kafka(context)
        _say(f"{jars} Kafka jars in {context / 'kafka-libs'}")
        if args.base != "never":
            engine = find_engine(args.engine)
            if engine is None:
                raise PrepareFailed(f"base image: no container engine ({args.engine}) found")
            if args.base == "always" or not has_image(engine):
                prepare_base(engine, cache, args.mirror)
                _say(f"{BASE_IMAGE} imported into {engine}")
            else:
                _say(f"{engine} already has {BASE_IMAGE}")
    except PrepareFailed as exc:
        print(f"flctl images prepare: {exc}", file=sys.stderr)
        return 1
    _say("ready: docker compose up --build (or podman-compose up --build)")
    return 0


def register(subparsers: Subparsers) -> None:
    """Add ``flctl images prepare``."""
    images = subparsers.add_parser(
        "images",
        help="prepare what the container images build from (air-gapped builds)",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    actions = images.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = actions.add_parser(
        "prepare",
        help="wheels, Kafka jars and (if missing) the Debian base image",
        description="Fill compose/context with the wheels and the Kafka jars, and import "
        "debian:bookworm-slim made by debootstrap when the engine lacks it. Exit codes: "
        "0 ready, 1 a step failed (named on stderr).",
    )
    p.add_argument(
        "--context",
        default=str(ROOT / "compose" / "context"),
        help="the folder the Dockerfiles copy from (default: %(default)s)",
    )
    p.add_argument(
        "--cache",
        default=str(DEFAULT_HOME),
        help="downloads kept between runs (default: %(default)s)",
    )
    p.add_argument(
        "--base",
        choices=("auto", "always", "never"),
        default="auto",
        help="import debian:bookworm-slim from debootstrap: auto = when the engine "
        "lacks it (default: %(default)s)",
    )
    p.add_argument(
        "--engine",
        choices=("auto", "podman", "docker"),
        default="auto",
        help="where the base image goes (default: podman, else docker)",
    )
    p.add_argument(
        "--mirror",
        default="http://deb.debian.org/debian",
        help="Debian mirror for debootstrap; images' apt uses it too (default: %(default)s)",
    )
    p.set_defaults(handler=prepare)
