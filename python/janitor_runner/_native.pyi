"""Type stubs for the compiled extension ``janitor_runner._native``."""

__version__: str

def committer_env(committer: str | None) -> dict[str, str]:
    """Environment variables that make VCS tools commit as ``committer``; ``None`` gives ``{}``."""

def is_log_filename(name: str) -> bool:
    """Whether an uploaded file name is a log (``foo.log``, ``foo.log.1``)."""

def splitout_env(command: str) -> tuple[dict[str, str], str]:
    """Split leading ``VAR=value`` words off a shell command.

    Raises ValueError when the command is not valid shell syntax.
    """
