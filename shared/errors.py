"""The project's exception tree. Adapters translate library errors into these at the
boundary (``raise ... from exc``); callers catch these, never a library's own."""


class EventpipeError(Exception):
    """Base of every error eventpipe raises on purpose."""


class InvalidInput(EventpipeError):
    """A client sent something we refuse; ``reason`` is a stable machine-readable code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class PayloadTooLarge(InvalidInput):
    """A body or event over its size limit (HTTP 413)."""


class ConfigurationError(EventpipeError):
    """A setting that cannot work on this installation (raised at start-up)."""


class PublishError(EventpipeError):
    """The broker did not confirm a record: its fate is unknown (HTTP 503)."""


class StorageError(EventpipeError):
    """The object store failed after bounded retries."""


class WarehouseError(EventpipeError):
    """The warehouse failed after bounded retries."""


class WarehouseRefused(EventpipeError):
    """The warehouse refused a statement (not a transient failure: retrying cannot help).
    ``data_error``: it refused the data of the batch being loaded (quarantine it, with
    ``reason``); otherwise a bug or a permissions problem that no batch is to blame for."""

    def __init__(self, detail: str, *, data_error: bool, reason: str | None = None) -> None:
        super().__init__(detail)
        self.detail, self.data_error, self.reason = detail, data_error, reason
