"""Errors of ``flctl provision``: a :class:`ProvisionError` names what is wrong.

ProvisionError   the output directory or the identities cannot be written
"""

from __future__ import annotations


class ProvisionError(Exception):
    """The secrets directory cannot be written as asked; the message says why."""
