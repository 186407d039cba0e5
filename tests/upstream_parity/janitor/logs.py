"""``janitor.logs.LogFileManager``: the tests subclass it for an in-memory manager, which
``janitor_runner`` is given as a log directory instead."""


class LogFileManager:
    pass
