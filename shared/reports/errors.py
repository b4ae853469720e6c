"""The reports' errors: what a user can fix (a name, an option), shown without a traceback."""

from __future__ import annotations

from eventpipe.errors import EventpipeError


class ReportError(EventpipeError):
    """A report cannot be produced as asked."""


class UnknownExperiment(ReportError):
    """No exposure and no assignment of this experiment is in the warehouse."""


class UnknownVariant(ReportError):
    """The control (or a weighted variant) is not a variant of the experiment."""
