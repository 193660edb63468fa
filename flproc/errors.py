"""Errors of the process plumbing.

A role's configuration raises :class:`SettingError` naming its own config
field; the command that read the setting knows its flag and ``FL_*`` variable
and renders ``--flag / FL_VAR: problem`` (``flproc.settings.explain``)::

    FlprocError
    └── SettingError   (also ValueError) a setting is missing or invalid;
                       ``.setting`` is the config field, ``.problem`` says why
"""

from __future__ import annotations


class FlprocError(Exception):
    """Base class of every error raised by flproc."""


class SettingError(FlprocError, ValueError):
    """A setting is missing or invalid; ``setting`` names the config field it fills."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"{setting}: {problem}")
        self.setting = setting
        self.problem = problem
