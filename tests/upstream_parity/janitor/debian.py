"""``janitor.debian`` names, mapped onto ``janitor_runner``."""

from janitor_runner import dpkg_vendor

__all__ = ["dpkg_vendor"]
