"""Writing the secrets directory: modes, refusal to overwrite, merged env files.

Every directory is 0700 and every file holding a secret 0600, set when the
file is created (``os.open`` with the mode), never widened afterwards. A
directory is only replaced when it carries :data:`MARKER`, the file this
module leaves in every directory it writes: ``--force`` must never delete a
directory some other tool (or the user) owns.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from flctl.provision.errors import ProvisionError
from flctl.provision.identities import EnvLines

MARKER = ".flctl-provision"
SECRET, PUBLIC = 0o600, 0o644


def prepare(out: Path, force: bool) -> None:
    """Create ``out`` (0700); refuse if it exists, unless ``force`` and it is ours."""
    if out.exists() or out.is_symlink():
        if not force:
            raise ProvisionError(f"{out} exists; pass --force to replace it")
        if out.is_symlink() or not out.is_dir():
            raise ProvisionError(f"{out} is not a directory; refusing to replace it")
        if any(out.iterdir()) and not (out / MARKER).is_file():
            raise ProvisionError(
                f"{out} was not written by flctl provision (no {MARKER}); "
                "refusing to delete it even with --force"
            )
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.mkdir(mode=0o700)
    os.chmod(out, 0o700)  # mkdir's mode is filtered by the umask
    write(out / MARKER, "written by flctl provision; --force may replace this directory\n")


def write(path: Path, text: str | bytes, mode: int = SECRET) -> Path:
    """Create ``path`` (and its directories, 0700) with ``mode``; never overwrite."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(text.encode() if isinstance(text, str) else text)
    os.chmod(path, mode)  # os.open's mode is filtered by the umask too
    return path


def merge_env(instances: Iterable[str], parts: Iterable[EnvLines]) -> EnvLines:
    """One list of lines per instance; two writers setting one variable is a bug."""
    merged: EnvLines = {i: [] for i in instances}
    seen: dict[tuple[str, str], str] = {}
    for part in parts:
        for instance, lines in part.items():
            if instance not in merged:
                raise ProvisionError(f"env lines for unknown service instance {instance!r}")
            for line in lines:
                name, eq, value = line.partition("=")
                if not eq or not name.startswith("FL_"):
                    raise ProvisionError(f"{instance}: not an FL_NAME=value line: {name!r}")
                if not value or any(c.isspace() or c in "'\"$#\\" for c in value):
                    raise ProvisionError(
                        f"{instance}: {name} would need quoting in an env file "
                        "(a path with blanks or quotes?)"
                    )
                if (instance, name) in seen:
                    raise ProvisionError(f"{instance}: {name} is set twice")
                seen[instance, name] = line
                merged[instance].append(line)
    return merged


def write_env_files(out: Path, env: EnvLines) -> list[Path]:
    """``services/<instance>.env`` for every instance (0600: they hold credentials).

    Only ``FL_NAME=value`` lines, no comment and no quoting (values never hold
    blanks), so the file works as compose's ``env_file`` and as ``env $(cat FILE)``.
    """
    return [
        write(out / "services" / f"{instance}.env", "".join(f"{x}\n" for x in lines))
        for instance, lines in env.items()
    ]
