"""janitor-runner: the Janitor runner in Rust, importable piece by piece.

Each name here has the behaviour and JSON form of the Python runner's name of the same
spelling, so ``from janitor_runner import committer_env`` can replace the Python original.
"""

from ._native import (
    ActiveRun,
    CandidateUnavailable,
    JanitorResult,
    ModelError,
    Pool,
    Queue,
    QueueEmpty,
    QueueItemAlreadyClaimed,
    QueueRateLimiting,
    ResumeInfo,
    RunExists,
    WorkerResult,
    __version__,
    committer_env,
    connect,
    do_schedule,
    do_schedule_control,
    do_schedule_regular,
    is_log_filename,
    splitout_env,
)

__all__ = [
    "ActiveRun",
    "CandidateUnavailable",
    "JanitorResult",
    "ModelError",
    "Pool",
    "Queue",
    "QueueEmpty",
    "QueueItemAlreadyClaimed",
    "QueueRateLimiting",
    "ResumeInfo",
    "RunExists",
    "WorkerResult",
    "__version__",
    "committer_env",
    "connect",
    "do_schedule",
    "do_schedule_control",
    "do_schedule_regular",
    "is_log_filename",
    "splitout_env",
]
