"""Type stubs for the compiled extension ``janitor_runner._native``."""

from datetime import datetime, timedelta
import io
import os
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any, Generic, TypeVar

_T = TypeVar("_T")

__version__: str

def committer_env(committer: str | None) -> dict[str, str]:
    """Environment variables that make VCS tools commit as ``committer``; ``None`` gives ``{}``."""

def dpkg_vendor() -> str:
    """``dpkg-vendor --query vendor`` of this host, asked once ("Debian" if it cannot be)."""
def is_log_filename(name: str) -> bool:
    """Whether an uploaded file name is a log (``foo.log``, ``foo.log.1``)."""

def splitout_env(command: str) -> tuple[dict[str, str], str]:
    """Split leading ``VAR=value`` words off a shell command.

    Raises ValueError when the command is not valid shell syntax.
    """


class RunnerError(Exception):
    """The base of the runner's own exceptions (not of ModelError, a ValueError)."""
class QueueItemAlreadyClaimed(RunnerError): ...
class RunExists(RunnerError): ...
class CandidateUnavailable(RunnerError): ...
class QueueEmpty(RunnerError): ...
class QueueRateLimiting(RunnerError): ...
class ZeroMaximumValue(RunnerError):
    """Every codebase value is 0, so none can be normalised."""

class ModelError(ValueError):
    """JSON that does not have the shape a model needs; the message names the key."""

class PingFailure(RunnerError):
    """Failure to ping the job; ``reason`` says why."""

    reason: str
    def __init__(self, reason: str) -> None: ...

class PingTimeout(PingFailure):
    """The worker could not be reached, answered an error, or not in time (retriable)."""

class PingFatalFailure(PingFailure):
    """The worker is not working on the run any more (not retriable)."""

class Backchannel:
    """A run's way back to its worker; this base class is "none": every call raises
    ``NotImplementedError``."""

    def __init__(self) -> None: ...
    async def ping(self, log_id: str) -> None:
        """Raises PingTimeout, PingFailure or PingFatalFailure unless the worker is on ``log_id``."""
    async def kill(self) -> None:
        """Ask the worker to stop; ConnectionError when it cannot be asked."""
    async def list_log_files(self) -> list[str]: ...
    async def get_log_file(self, name: str) -> io.BytesIO:
        """Raises FileNotFoundError when the worker has no such log."""
    def json(self) -> dict[str, Any]: ...

class PollingBackchannel(Backchannel):
    """A worker's diagnostics port polled over HTTP (``/log-id``, ``/logs``, ``/kill``)."""

    def __init__(self, my_url: str) -> None: ...
    @classmethod
    def from_json(cls, js: dict[str, Any]) -> PollingBackchannel: ...
    @property
    def my_url(self) -> str: ...

class JenkinsBackchannel(Backchannel):
    """A Jenkins build running the worker; ``kill`` is not supported."""

    def __init__(self, my_url: str, metadata: Any = None) -> None: ...
    @classmethod
    def from_json(cls, js: dict[str, Any]) -> JenkinsBackchannel: ...
    @property
    def my_url(self) -> str: ...

class ActiveRun:
    """A run in progress, as the active-run store keeps it.

    ``backchannel`` may be a backchannel object, its JSON form (``{"my_url": ...}``), the
    assign request's form (``{"kind": "http", "url": ...}``) or None.
    """

    def __init__(
        self,
        *,
        campaign: str,
        codebase: str | None,
        change_set: str | None,
        command: str,
        instigated_context: Any,
        estimated_duration: timedelta | None,
        queue_id: int,
        log_id: str,
        start_time: datetime,
        vcs_info: dict[str, str],
        backchannel: Backchannel | dict[str, Any] | None,
        worker_name: str | None,
        worker_link: str | None = None,
        resume_from: str | None = None,
    ) -> None: ...
    @classmethod
    def from_json(cls, js: Any) -> ActiveRun:
        """Read the Python runner's JSON form (a dict, or its text)."""
    def json(self, now: datetime | None = None) -> dict[str, Any]:
        """The JSON form; durations measured up to ``now`` (default: the current UTC time)."""
    @classmethod
    def from_queue_item(
        cls,
        queue_item: QueueItem,
        vcs_info: dict[str, str],
        backchannel: Backchannel | dict[str, Any] | None,
        worker_name: str | None,
        worker_link: str | None = None,
    ) -> ActiveRun:
        """A new run of ``queue_item``: a fresh UUID log id, started now."""
    async def ping(self) -> bool:
        """Ping the worker through the backchannel; True, or the ping's exception."""
    def create_result(
        self,
        *,
        code: str,
        branch_url: str | None,
        description: str | None = None,
        vcs_type: str | None = None,
        subpath: str | None = None,
        logfilenames: list[str] = ...,
        transient: bool | None = None,
    ) -> JanitorResult:
        """A result without a worker report, finished now (as aborts make them)."""
    log_id: str
    campaign: str
    queue_id: int
    codebase: str | None
    change_set: str | None
    command: str
    instigated_context: Any
    estimated_duration: timedelta | None
    start_time: datetime
    vcs_info: dict[str, str]
    """A copy: assign a new dict to change it."""
    @property
    def backchannel(self) -> Backchannel: ...
    @backchannel.setter
    def backchannel(self, value: Backchannel | dict[str, Any] | None) -> None: ...
    worker_name: str | None
    worker_link: str | None
    resume_from: str | None
    @property
    def vcs_type(self) -> str | None: ...
    @property
    def main_branch_url(self) -> str | None: ...
    @property
    def subpath(self) -> str | None: ...
    @property
    def current_duration(self) -> timedelta: ...

class WorkerResult:
    """What a worker reported in ``result.json``."""

    def __init__(
        self,
        code: str | None,
        description: str | None,
        context: Any = None,
        codemod: Any | None = None,
        main_branch_revision: bytes | str | None = None,
        revision: bytes | str | None = None,
        value: int | None = None,
        branches: list[tuple[str, str | None, bytes | str | None, bytes | str | None]]
        | None = None,
        tags: list[tuple[str, bytes | str | None]] | None = None,
        remotes: dict[str, dict[str, Any]] | None = None,
        details: Any = None,
        stage: str | None = None,
        builder_result: dict[str, Any] | None = None,
        start_time: datetime | None = None,
        finish_time: datetime | None = None,
        queue_id: int | None = None,
        worker_name: str | None = None,
        refreshed: bool = False,
        target_branch_url: str | None = None,
        branch_url: str | None = None,
        vcs_type: str | None = None,
        subpath: str | None = None,
        transient: bool | None = None,
        codebase: str | None = None,
    ) -> None:
        """The Python dataclass's fields; ``builder_result`` in its JSON form
        (``{"name": ..., "details": ...}``). Checked as ``result.json`` is: ModelError."""
    @classmethod
    def from_json(cls, js: Any) -> WorkerResult: ...
    @property
    def code(self) -> str: ...
    @property
    def description(self) -> str | None: ...
    @property
    def context(self) -> str | None: ...
    @property
    def codemod(self) -> Any: ...
    @property
    def main_branch_revision(self) -> bytes | None: ...
    @property
    def revision(self) -> bytes | None: ...
    @property
    def value(self) -> int | None: ...
    @property
    def branches(self) -> list[tuple[str, str | None, bytes | None, bytes | None]] | None: ...
    @property
    def tags(self) -> list[tuple[str, bytes]] | None: ...
    @property
    def remotes(self) -> dict[str, dict[str, Any]] | None: ...
    @property
    def details(self) -> Any: ...
    @property
    def stage(self) -> str | None: ...
    @property
    def start_time(self) -> datetime | None: ...
    @property
    def finish_time(self) -> datetime | None: ...
    @property
    def queue_id(self) -> int | None: ...
    @property
    def worker_name(self) -> str | None: ...
    @property
    def refreshed(self) -> bool: ...
    @property
    def target_branch_url(self) -> str | None: ...
    @property
    def branch_url(self) -> str | None: ...
    @property
    def vcs_type(self) -> str | None: ...
    @property
    def subpath(self) -> str | None: ...
    @property
    def transient(self) -> bool | None: ...
    @property
    def codebase(self) -> str | None: ...

class JanitorResult:
    """The stored outcome of a run."""

    def __init__(
        self,
        *,
        codebase: str,
        log_id: str,
        branch_url: str | None,
        code: str,
        description: str | None = None,
        worker_result: WorkerResult | None = None,
        logfilenames: list[str] | None = None,
        campaign: str | None = None,
        start_time: datetime | None = None,
        finish_time: datetime | None = None,
        worker_name: str | None = None,
        vcs_type: str | None = None,
        subpath: str | None = None,
        resume_from: str | None = None,
        change_set: str | None = None,
        transient: bool | None = None,
    ) -> None:
        """The Python class's keywords; the campaign and both times must be known (from
        ``worker_result`` or given), else ValueError."""
    @property
    def log_id(self) -> str: ...
    @property
    def codebase(self) -> str: ...
    @property
    def campaign(self) -> str: ...
    @property
    def change_set(self) -> str | None: ...
    @property
    def description(self) -> str | None: ...
    @property
    def branch_url(self) -> str | None: ...
    @property
    def vcs_type(self) -> str | None: ...
    @property
    def subpath(self) -> str | None: ...
    @property
    def transient(self) -> bool | None: ...
    @property
    def logfilenames(self) -> list[str]: ...
    @property
    def worker_name(self) -> str | None: ...
    @property
    def resume_from(self) -> str | None: ...
    @property
    def start_time(self) -> datetime: ...
    @property
    def finish_time(self) -> datetime: ...
    @property
    def duration(self) -> timedelta: ...

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
    ZeroMaximumValue (every codebase value 0) or AssertionError (no positive offset).
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

async def store_change_set(pool: Pool, name: str, campaign: str) -> None:
    """``janitor.runner.store_change_set`` on a pool: the row, unless it exists."""
async def store_run(
    pool: Pool,
    *,
    run_id: str,
    codebase: str,
    vcs_type: str | None,
    branch_url: str | None,
    start_time: datetime,
    finish_time: datetime,
    command: str,
    description: str | None,
    instigated_context: str | None,
    context: str | None,
    main_branch_revision: bytes | str | None,
    result_code: str,
    revision: bytes | str | None,
    codemod_result: Any | None,
    campaign: str,
    logfilenames: list[str],
    value: int | None,
    worker_name: str | None = None,
    subpath: str | None = "",
    result_branches: list[tuple[str, str | None, bytes | str | None, bytes | str | None]]
    | None = None,
    result_tags: list[tuple[str, bytes | str]] | None = None,
    resume_from: str | None = None,
    failure_details: Any | None = None,
    failure_stage: str | None = None,
    target_branch_url: str | None = None,
    change_set: str | None = None,
    failure_transient: bool | None = None,
) -> None:
    """``janitor.runner.store_run`` on a pool: the run and its result branches in one
    transaction. Without ``change_set``, the run id names a new change set (the column is
    NOT NULL, so the Python's ``None`` fails there). Duplicate roles: ``ValueError``."""
def calculate_offset(
    *,
    estimated_duration: timedelta,
    normalized_codebase_value: float | None,
    estimated_probability_of_success: float,
    candidate_value: float | None,
    total_previous_runs: int,
    success_chance: float | None = None,
) -> float:
    """``janitor.schedule.calculate_offset``; ``AssertionError`` where the Python asserts."""
async def bulk_schedule(
    pool: Pool,
    *,
    campaign: str | None = None,
    codebases: Sequence[str] | None = None,
    dry_run: bool = False,
) -> list[dict[str, Any]]:
    """The bulk scheduler (``python -m janitor.schedule``): the queue rows written, or with
    ``dry_run`` the rows that would be, in candidate order: dicts of ``codebase``,
    ``campaign``, ``bucket``, ``priority``, ``command``, ``context``, ``estimated_duration``
    (a timedelta) and ``requester``. Candidates the Python would crash on are skipped."""
async def store_review(
    conn: Pool,
    session: object,
    runner_url: str,
    run_id: str,
    verdict: str,
    comment: str | None,
    reviewer: str | None,
    is_qa_reviewer: bool,
) -> None:
    """``janitor.review.store_review``: the verdict (approved, rejected, abstained,
    reschedule) stored per run and reviewer; ``reschedule`` is stored as ``rejected`` and
    schedules a fresh run; a QA reviewer's verdict is POSTed to ``runner_url`` as the run's
    publish status before the transaction commits. ``session`` is accepted and not used.
    ValueError for an unknown verdict, KeyError for an unknown run."""
async def estimate_duration(pool: Pool, codebase: str, campaign: str) -> timedelta:
    """Average duration of the pair's runs, else the codebase's, else the campaign's, else 15 s."""
async def estimate_success_probability_and_duration(
    pool: Pool, codebase: str, campaign: str, context: str | None = None
) -> tuple[float, timedelta, int]:
    """``(probability_of_success, estimated_duration, total_previous_runs)``."""

def vcs_info_json(js: Any) -> dict[str, str]:
    """A VcsInfo dict checked and reduced to ``branch_url``, ``subpath`` and ``vcs_type``."""

class QueueItem:
    """One queue row; equal, ordered and hashed by ``id``."""

    def __init__(
        self,
        *,
        id: int,
        context: str | None,
        command: str,
        estimated_duration: timedelta | None,
        campaign: str,
        refresh: bool | None,
        requester: str | None,
        change_set: str | None,
        codebase: str,
    ) -> None: ...
    @classmethod
    def from_json(cls, js: Any) -> QueueItem: ...
    def json(self) -> dict[str, Any]:
        """The fields; ``estimated_duration`` in seconds."""
    @property
    def id(self) -> int: ...
    @property
    def context(self) -> str | None: ...
    @property
    def command(self) -> str: ...
    @property
    def estimated_duration(self) -> timedelta | None: ...
    @property
    def campaign(self) -> str: ...
    @property
    def refresh(self) -> bool: ...
    @property
    def requester(self) -> str | None: ...
    @property
    def change_set(self) -> str | None: ...
    @property
    def codebase(self) -> str: ...
    def __lt__(self, other: QueueItem) -> bool: ...
    def __hash__(self) -> int: ...

class AsyncRows(Generic[_T]):
    """Rows fetched by one query on the first ``__anext__``."""

    def __aiter__(self) -> AsyncRows[_T]: ...
    async def __anext__(self) -> _T: ...

class Queue:
    """The queue, over a pool."""

    def __init__(self, pool: Pool) -> None: ...
    async def get_item(self, queue_id: int) -> QueueItem | None: ...
    async def next_item(
        self,
        codebase: str | None = None,
        campaign: str | None = None,
        exclude_hosts: set[str] | Sequence[str] | None = None,
        assigned_queue_items: set[int] | Sequence[int] | None = None,
    ) -> tuple[QueueItem | None, dict[str, str]]:
        """The first item in run order not assigned and not on an excluded host; no claim."""
    def iter_queue(
        self, limit: int | None = None, campaign: str | None = None
    ) -> AsyncIterator[QueueItem]: ...
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

class QueueProcessor:
    """The run registry of the Python runner's ``QueueProcessor``, with its parameters.

    Where the Python takes objects, this takes what identifies them: ``database`` is the
    ``Pool`` of ``await connect(dsn)`` (or None: the registry, rate limits and status then work
    on Redis alone), ``redis`` the Redis URL (or None: active runs live in the database),
    ``logfile_manager``/``artifact_manager`` a location as janitor.conf's ``logs_location``
    gives it (a directory, ``s3://``/``gs://`` URL; None: the config's), ``public_vcs_managers``
    the location ``get_vcs_managers`` was given (a base URL or directory, or a dict of VCS name
    to location), the backup managers ``<backup_directory>/logs`` and ``.../artifacts``.
    ``config`` is a janitor.conf path (an app created with ``create_app`` brings its own).
    ``use_cached_only`` is accepted and, as in the Python, has no effect.
    """

    def __init__(
        self,
        database: Pool | None,
        redis: str | None = None,
        run_timeout: int = 60,
        logfile_manager: str | os.PathLike[str] | None = None,
        artifact_manager: str | os.PathLike[str] | None = None,
        public_vcs_managers: str | os.PathLike[str] | Mapping[str, str] | None = None,
        use_cached_only: bool = False,
        committer: str | None = None,
        backup_artifact_manager: str | os.PathLike[str] | None = None,
        backup_logfile_manager: str | os.PathLike[str] | None = None,
        avoid_hosts: Iterable[str] | None = None,
        dep_server_url: str | None = None,
        apt_archive_url: str | None = None,
        *,
        config: str | os.PathLike[str] | None = None,
        redis_prefix: str = "",
    ) -> None: ...
    async def register_run(self, active_run: ActiveRun) -> None:
        """Raises QueueItemAlreadyClaimed when another run holds the queue item."""
    async def update_run(self, active_run: ActiveRun) -> None: ...
    async def get_run(self, log_id: str) -> ActiveRun | None: ...
    async def unclaim_run(self, log_id: str) -> None: ...
    async def abort_run(
        self,
        run: ActiveRun,
        code: str,
        description: str,
        transient: bool | None = None,
    ) -> None: ...
    async def finish_run(self, active_run: ActiveRun, result: JanitorResult) -> None:
        """Raises RunExists when a run with this id is already stored."""
    async def rate_limited(
        self, host: str, retry_after: datetime | timedelta | int | None = None
    ) -> None: ...
    def rate_limited_hosts(self) -> AsyncIterator[tuple[str, datetime]]: ...
    async def status_json(self) -> dict[str, Any]: ...
    async def active_run_count(self) -> int: ...
    async def estimate_wait(
        self, codebase: str, campaign: str
    ) -> tuple[int | None, timedelta | None, timedelta | None]: ...
    async def next_queue_item(
        self,
        conn: Pool | None = None,
        codebase: str | None = None,
        campaign: str | None = None,
    ) -> tuple[QueueItem | None, dict[str, str]]:
        """``conn`` (the Python's connection: a pool here) is read from when given, else the
        processor's database."""
    def start_watchdog(self) -> None:
        """Start pinging and reaping active runs every 10 s; RuntimeError if it already runs."""
    def stop_watchdog(self) -> None: ...
    @property
    def _watch_dog(self) -> WatchdogTask | None: ...
    async def stop(self) -> None:
        """Stop the watchdog and wait for it."""
    async def check_active_runs(self) -> dict[str, Any]:
        """One watchdog pass now; what it did (``due``, ``alive``, ``unreachable``,
        ``aborted``: [{"id", "code"}], ``already_finished``, ``leased_elsewhere``, ``errors``)."""

class WatchdogTask:
    """The running watchdog of a QueueProcessor."""

    def done(self) -> bool: ...
    def cancel(self) -> None: ...

class Server:
    """A runner serving inside this process; dropping the handle stops it."""

    @property
    def internal_url(self) -> str: ...
    @property
    def public_url(self) -> str | None: ...
    async def stop(self) -> None: ...
    async def wait(self) -> None: ...

async def create_app(
    queue_processor: QueueProcessor | None = None,
    config: str | os.PathLike[str] | None = None,
    database: Pool | None = None,
    tracer: object = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
) -> Server:
    """The internal app (the Python ``create_app``'s routes), serving on ``host:port`` over the
    queue processor's state: an aiohttp Application there, a running ``Server`` here (point a
    client at ``internal_url``). ``config`` is a janitor.conf path, used by the processor from
    then on too; ``tracer`` is accepted and not used. Without a database, ``/health``,
    ``/ready``, ``/metrics``, ``/status`` and the active runs answer; the rest answer 503."""
async def migrate(pool: Pool) -> None:
    """Brings the database to the runner's schema, adopting the Python runner's
    (``janitor-runner migrate``)."""
async def serve(args: Sequence[str] = ()) -> None:
    """Run the runner with the binary's options until cancelled."""
async def start_server(args: Sequence[str] = ()) -> Server:
    """Start the runner with the binary's options; returns once both apps listen."""
