"""Type stubs for the compiled extension ``janitor_runner._native``."""

from datetime import datetime, timedelta
from typing import Any

__version__: str

def committer_env(committer: str | None) -> dict[str, str]:
    """Environment variables that make VCS tools commit as ``committer``; ``None`` gives ``{}``."""

def is_log_filename(name: str) -> bool:
    """Whether an uploaded file name is a log (``foo.log``, ``foo.log.1``)."""

def splitout_env(command: str) -> tuple[dict[str, str], str]:
    """Split leading ``VAR=value`` words off a shell command.

    Raises ValueError when the command is not valid shell syntax.
    """


class QueueItemAlreadyClaimed(Exception): ...
class RunExists(Exception): ...
class CandidateUnavailable(Exception): ...
class QueueEmpty(Exception): ...
class QueueRateLimiting(Exception): ...

class ModelError(ValueError):
    """JSON that does not have the shape a model needs; the message names the key."""

class ActiveRun:
    """A run in progress, as the active-run store keeps it."""

    @classmethod
    def from_json(cls, js: Any) -> ActiveRun:
        """Read the Python runner's JSON form (a dict, or its text)."""
    def json(self, now: datetime | None = None) -> dict[str, Any]:
        """The JSON form; durations measured up to ``now`` (default: the current UTC time)."""
    @property
    def log_id(self) -> str: ...
    @property
    def queue_id(self) -> int: ...
    @property
    def codebase(self) -> str | None: ...

class WorkerResult:
    """What a worker reported in ``result.json``."""

    @classmethod
    def from_json(cls, js: Any) -> WorkerResult: ...
    @property
    def code(self) -> str: ...

class JanitorResult:
    """The stored outcome of a run."""

    @classmethod
    def from_worker_result(
        cls,
        active_run: ActiveRun,
        worker_result: WorkerResult,
        logfilenames: list[str],
        now: datetime | None = None,
    ) -> JanitorResult: ...
    def json(self) -> dict[str, Any]: ...
    @property
    def code(self) -> str: ...

class ResumeInfo:
    """Where a run resumes from."""

    @classmethod
    def from_json(cls, js: Any) -> ResumeInfo: ...
    def json(self) -> dict[str, Any]: ...

class Pool:
    """A PostgreSQL connection pool; make one with ``await connect(dsn)``."""

    async def close(self) -> None: ...

async def connect(dsn: str, max_connections: int = 10) -> Pool: ...
async def do_schedule_regular(
    pool: Pool,
    *,
    codebase: str,
    campaign: str,
    command: str | None = None,
    candidate_value: int | None = None,
    success_chance: float | None = None,
    normalized_codebase_value: float | None = None,
    requester: str | None = None,
    default_offset: float = 0.0,
    context: str | None = None,
    change_set: str | None = None,
    dry_run: bool = False,
    refresh: bool = False,
    bucket: str | None = None,
) -> tuple[float, timedelta, int, str]:
    """Schedule one candidate as ``janitor.schedule.do_schedule_regular`` does.

    Returns ``(offset, estimated_duration, queue_id, bucket)``; raises CandidateUnavailable,
    ZeroDivisionError (every codebase value 0) or AssertionError (no positive offset).
    """
async def do_schedule(
    pool: Pool,
    campaign: str,
    codebase: str,
    bucket: str | None = None,
    *,
    change_set: str | None = None,
    offset: float | None = None,
    refresh: bool = False,
    requester: str | None = None,
    estimated_duration: timedelta | None = None,
    command: str | None = None,
) -> tuple[float, timedelta, int, str]: ...
async def do_schedule_control(
    pool: Pool,
    codebase: str,
    *,
    change_set: str | None = None,
    main_branch_revision: bytes | None = None,
    offset: float | None = None,
    refresh: bool = False,
    bucket: str | None = None,
    requester: str | None = None,
    estimated_duration: timedelta | None = None,
) -> tuple[float, timedelta, int, str]: ...

class Queue:
    """The queue, over a pool."""

    def __init__(self, pool: Pool) -> None: ...
    async def get_position(
        self, campaign: str, codebase: str
    ) -> tuple[int | None, timedelta | None]: ...
    async def add(
        self,
        *,
        codebase: str,
        command: str,
        campaign: str,
        change_set: str | None = None,
        offset: float = 0.0,
        bucket: str = "default",
        context: str | None = None,
        estimated_duration: timedelta | None = None,
        refresh: bool = False,
        requester: str | None = None,
    ) -> tuple[int, str]:
        """Insert, or overwrite the row for the same item unless it is in a more urgent bucket."""
    async def get_buckets(self) -> list[tuple[str, int]]: ...
