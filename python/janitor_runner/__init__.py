"""janitor-runner: the Janitor runner in Rust, importable piece by piece.

Each name here has the behaviour and JSON form of the Python runner's name of the same
spelling, so ``from janitor_runner import committer_env`` can replace the Python original.
"""

from typing import Any

from . import _native
from ._native import (
    ActiveRun,
    Backchannel,
    CandidateUnavailable,
    JanitorResult,
    JenkinsBackchannel,
    ModelError,
    PingFailure,
    PingFatalFailure,
    PingTimeout,
    PollingBackchannel,
    Pool,
    Queue,
    QueueEmpty,
    QueueItem,
    QueueItemAlreadyClaimed,
    QueueProcessor,
    QueueRateLimiting,
    ResumeInfo,
    RunExists,
    RunnerError,
    Server,
    WatchdogTask,
    WorkerResult,
    ZeroMaximumValue,
    __version__,
    bulk_schedule,
    calculate_offset,
    committer_env,
    connect,
    create_app,
    do_schedule,
    do_schedule_control,
    do_schedule_regular,
    dpkg_vendor,
    estimate_duration,
    estimate_success_probability_and_duration,
    is_log_filename,
    migrate,
    serve,
    splitout_env,
    start_server,
    store_change_set,
    store_review,
    store_run,
)


class VcsInfo(dict[str, str]):
    """What is known of a codebase's branch: ``branch_url``, ``subpath``, ``vcs_type``.

    The Python runner's ``VcsInfo`` is a TypedDict; this is a dict too (so ``info["branch_url"]``
    and ``info.get("subpath")`` keep working), checked by the Rust model, with ``from_json`` and
    ``json()`` like the other models.
    """

    @classmethod
    def from_json(cls, js: Any) -> "VcsInfo":
        """Check a VcsInfo dict (or its JSON text); unknown keys are dropped."""
        return cls(_native.vcs_info_json(js))

    def json(self) -> dict[str, str]:
        """The JSON form: only the keys that are known."""
        return _native.vcs_info_json(dict(self))


__all__ = [
    "ActiveRun",
    "Backchannel",
    "CandidateUnavailable",
    "JanitorResult",
    "JenkinsBackchannel",
    "ModelError",
    "PingFailure",
    "PingFatalFailure",
    "PingTimeout",
    "PollingBackchannel",
    "Pool",
    "Queue",
    "QueueEmpty",
    "QueueItem",
    "QueueItemAlreadyClaimed",
    "QueueProcessor",
    "QueueRateLimiting",
    "ResumeInfo",
    "RunExists",
    "RunnerError",
    "Server",
    "VcsInfo",
    "WatchdogTask",
    "WorkerResult",
    "ZeroMaximumValue",
    "__version__",
    "bulk_schedule",
    "calculate_offset",
    "committer_env",
    "connect",
    "create_app",
    "do_schedule",
    "do_schedule_control",
    "do_schedule_regular",
    "dpkg_vendor",
    "estimate_duration",
    "estimate_success_probability_and_duration",
    "is_log_filename",
    "migrate",
    "serve",
    "splitout_env",
    "start_server",
    "store_change_set",
    "store_review",
    "store_run",
]
