"""The errors a user can cause or fix, and the one table that says how every front end reports them.

Every failure a user should see is a :class:`BackscoreError` subclass (or an engine's
:class:`~engines.base.EngineError`) whose message is one line fit for the user. :data:`ERROR_TABLE`
maps each kind to its CLI exit code, its HTTP status (body ``{"error": {"type", "message"}}``,
``type`` being :func:`error_kind`: the class name, or a ``kind`` it declares) and its gRPC status
code, so the CLI, HTTP, gRPC and WebRTC front ends agree; anything else is an internal error
(exit 70, HTTP 500, gRPC INTERNAL) whose details stay in the log. Errors worth retrying carry a
``Retry-After`` (seconds; :func:`retry_after_s`): the table's, or the exception's own when it knows
better (a :class:`QuotaError` knows when its quota refills).

=====================  =========  ====  ===================  ==========================================
exception              exit code  HTTP  gRPC                 meaning
=====================  =========  ====  ===================  ==========================================
InputError             2          400   INVALID_ARGUMENT     the input is missing, unreadable, not a video
OptionError            2          400   INVALID_ARGUMENT     an option has an invalid value
LibraryError           2          400   INVALID_ARGUMENT     no such library or track
DataError              2          400   INVALID_ARGUMENT     a data file (training, evaluation, API keys)
                                                             is malformed
LimitError             2          413   RESOURCE_EXHAUSTED   an input is over a documented limit
AuthError              77         401   UNAUTHENTICATED      no API key, or not one this server knows
ForbiddenError         77         403   PERMISSION_DENIED    not allowed from here (a browser origin)
QuotaError             75         429   RESOURCE_EXHAUSTED   an API key's quota is used up: retry later
BusyError              75         503   UNAVAILABLE          the server is at capacity: retry later
DeadlineError          124        504   DEADLINE_EXCEEDED    a job ran past its wall-time limit
JobCancelled           130        499   CANCELLED            the client went away (no answer is sent)
NotFoundError          2          404   NOT_FOUND            no such job (or not the caller's)
GoneError              2          410   NOT_FOUND            the job's results expired and were removed
ConflictError          2          409   FAILED_PRECONDITION  the job is not in a state for this (e.g. its
                                                             analysis is not ready to be reused yet)
OutputError            3          500   INTERNAL             an output cannot be written (CLI: the
                                                             user's path; a server: its own temp dir)
EngineUnavailable      4          503   UNAVAILABLE          an engine cannot run here (weights, backend)
EngineBusy             75         503   UNAVAILABLE          an engine has no free stream slot: retry
EngineError            4          500   INTERNAL             an engine failed
(anything else)        70         500   INTERNAL             a bug
=====================  =========  ====  ===================  ==========================================
"""

from __future__ import annotations

from dataclasses import dataclass

from engines.base import EngineBusy, EngineError, EngineUnavailable


class BackscoreError(Exception):
    """Base class for every error a user can cause or fix."""


class InputError(BackscoreError):
    """The input is missing, unreadable, not a video, empty or truncated."""


class OutputError(BackscoreError):
    """The output cannot be written where asked (same as input, unwritable, bad extension)."""


class OptionError(BackscoreError):
    """An option has an invalid value (unknown style, bad window length, ...)."""


class LibraryError(BackscoreError):
    """A music library (catalog or user SQLite index) is missing, empty or has no such track."""


class DataError(BackscoreError):
    """A training/evaluation file (pairs CSV, model file) is malformed; the message names the line."""


class LimitError(BackscoreError):
    """An input is over one of the documented limits (upload size, message size, ...)."""

    kind = "PayloadTooLarge"


class DeadlineError(BackscoreError):
    """A job ran longer than its wall-time limit (``BACKSCORE_REQUEST_TIMEOUT_S``) and was stopped."""

    kind = "DeadlineExceeded"


class JobCancelled(BackscoreError):
    """A job was stopped because its client went away (HTTP disconnect, gRPC cancel)."""

    kind = "Cancelled"


class AuthError(BackscoreError):
    """No API key, or a key this server does not know (HTTP 401 with ``WWW-Authenticate: Bearer``)."""

    kind = "Unauthorized"


class ForbiddenError(BackscoreError):
    """The request is not allowed from where it comes from (a browser origin not on the allow-list)."""

    kind = "Forbidden"


class QuotaError(BackscoreError):
    """An API key used up one of its quotas (requests a minute, jobs in flight, live minutes a day).

    ``retry_after_s``: when a retry may succeed (HTTP ``Retry-After``); its message says it too, since
    gRPC has no such header.
    """

    kind = "TooManyRequests"

    def __init__(self, message: str, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    def __reduce__(self) -> tuple[type[QuotaError], tuple[str, int | None]]:  # Ray pickles errors across processes
        return type(self), (str(self), self.retry_after_s)


class BusyError(BackscoreError):
    """The server has no room for this request now (job queue, live sessions); retry later."""

    kind = "Busy"


class NotFoundError(BackscoreError):
    """No such thing here: an unknown async job id, or a job another API key made."""

    kind = "NotFound"


class GoneError(NotFoundError):
    """It was here but is no longer: an async job whose results expired and were removed."""

    kind = "Gone"


class ConflictError(BackscoreError):
    """The request does not fit the current state of what it names (a job not ready for it yet)."""

    kind = "Conflict"


@dataclass(frozen=True)
class ErrorStatus:
    """How one kind of error is reported: CLI exit code, HTTP status, gRPC status code name."""

    exit_code: int
    http_status: int
    #: A name of ``grpc.StatusCode`` (this module does not import grpc).
    grpc_code: str
    #: Seconds for an HTTP ``Retry-After`` header (errors worth retrying).
    retry_after_s: int | None = None

    @property
    def user_error(self) -> bool:
        """The client's request is at fault (4xx): its message is shown as it is."""
        return 400 <= self.http_status < 500


INTERNAL = ErrorStatus(70, 500, "INTERNAL")

#: See the module doc. Looked up along the exception's class hierarchy, most specific first.
ERROR_TABLE: dict[type[BaseException], ErrorStatus] = {
    InputError: ErrorStatus(2, 400, "INVALID_ARGUMENT"),
    OptionError: ErrorStatus(2, 400, "INVALID_ARGUMENT"),
    LibraryError: ErrorStatus(2, 400, "INVALID_ARGUMENT"),
    DataError: ErrorStatus(2, 400, "INVALID_ARGUMENT"),
    LimitError: ErrorStatus(2, 413, "RESOURCE_EXHAUSTED"),
    AuthError: ErrorStatus(77, 401, "UNAUTHENTICATED"),
    ForbiddenError: ErrorStatus(77, 403, "PERMISSION_DENIED"),
    QuotaError: ErrorStatus(75, 429, "RESOURCE_EXHAUSTED", retry_after_s=60),
    BusyError: ErrorStatus(75, 503, "UNAVAILABLE", retry_after_s=5),
    DeadlineError: ErrorStatus(124, 504, "DEADLINE_EXCEEDED"),
    JobCancelled: ErrorStatus(130, 499, "CANCELLED"),
    NotFoundError: ErrorStatus(2, 404, "NOT_FOUND"),
    GoneError: ErrorStatus(2, 410, "NOT_FOUND"),
    ConflictError: ErrorStatus(2, 409, "FAILED_PRECONDITION"),
    OutputError: ErrorStatus(3, 500, "INTERNAL"),
    BackscoreError: ErrorStatus(1, 400, "INVALID_ARGUMENT"),
    EngineUnavailable: ErrorStatus(4, 503, "UNAVAILABLE", retry_after_s=60),
    EngineBusy: ErrorStatus(75, 503, "UNAVAILABLE", retry_after_s=5),
    EngineError: ErrorStatus(4, 500, "INTERNAL"),
}


def error_status(exc: BaseException) -> ErrorStatus:
    """The :data:`ERROR_TABLE` row of ``exc`` (:data:`INTERNAL` for anything not in it)."""
    for cls in type(exc).__mro__:
        status = ERROR_TABLE.get(cls)
        if status is not None:
            return status
    return INTERNAL


def retry_after_s(exc: BaseException) -> int | None:
    """Seconds after which retrying ``exc``'s request may succeed: its own ``retry_after_s``, else the table's."""
    own = getattr(exc, "retry_after_s", None)
    return int(own) if isinstance(own, int | float) and not isinstance(own, bool) else error_status(exc).retry_after_s


def error_kind(exc: BaseException) -> str:
    """The ``type`` of the error in API answers: the class name, or its ``kind`` when it has one."""
    return str(getattr(type(exc), "kind", type(exc).__name__))


def is_reported(exc: BaseException) -> bool:
    """Whether ``exc`` is one of the errors of the table (its message is meant for the user)."""
    return isinstance(exc, BackscoreError | EngineError)
