"""The error every bad input becomes: one line that names the problem and the fix."""

from __future__ import annotations


class SpecError(ValueError):
    """A spec that cannot run; the message is one line naming the problem and the fix."""


class DataUnavailable(SpecError):
    """A user's data is not on this machine (it may be on the cluster's): what needs it cannot
    be checked here."""
