"""Type stubs for the compiled extension ``janitor_runner._native``."""

from datetime import datetime
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
