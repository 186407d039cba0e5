"""Adapter package: the module names the upstream runner tests import, mapped onto
``janitor_runner`` (call shapes only; see ../README.md)."""
