"""Start-up of a role's process: logging first, then its settings, refused in one place."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from typing import TypeVar

from flproc.errors import SettingError
from flproc.logs import configure_logging, prepare_process
from flproc.settings import LOGGING, Setting, refuse, resolve

T = TypeVar("T")


def start(
    name: str,
    args: argparse.Namespace,
    settings: Iterable[Setting],
    build: Callable[[], T],
    *,
    logging: tuple[Setting, ...] = LOGGING,
    prog: str | None = None,
) -> T | None:
    """Set up logging from ``logging``'s settings, then return ``build()``.

    ``build`` reads the role's settings from ``args`` (``flproc.settings.resolve``)
    and makes its config. A bad setting, in logging or in ``build``, is
    reported once (``flproc.settings.refuse``: a line on stderr naming the flag
    and variable, and ``<name>.config_invalid``) and None is returned: the
    command then exits with ``EXIT_BAD_SETTING``.
    """
    named = (*settings, *logging)
    try:
        log = resolve(args, logging)
    except SettingError as exc:
        configure_logging()  # defaults, so the refusal itself is logged the usual way
        refuse(name, exc, named, prog=prog)
        return None
    prepare_process(**log)
    try:
        return build()
    except SettingError as exc:
        refuse(name, exc, named, prog=prog)
        return None
