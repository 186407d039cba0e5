"""A fresh database per test, migrated by the runner binary, optionally holding the worked
example of the queue-and-scheduling.md § (section 6). Shared by the parity tests of the Python face."""

import os
import subprocess
import uuid

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# queue-and-scheduling.md §6, shared with tests/it/scheduling.rs.
WORKED_EXAMPLE = open(os.path.join(ROOT, "tests", "fixtures", "worked_example.sql")).read()


def psql(url, *args):
    subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", url, *args], check=True,
                   stdout=subprocess.DEVNULL)


def query(url, sql):
    """Rows of ``sql`` as lists of text fields (NULL as None)."""
    out = subprocess.run(
        ["psql", "-X", "-q", "-A", "-t", "-F", "\x1f", "-P", "null=<NULL>", "-v",
         "ON_ERROR_STOP=1", url, "-c", sql],
        check=True, capture_output=True, text=True).stdout
    return [[None if field == "<NULL>" else field for field in line.split("\x1f")]
            for line in out.splitlines() if line]


def create(tmp_path, worked_example=True):
    """``(admin_url, url)`` of a new migrated database; drop it with ``drop``."""
    admin = os.environ["DATABASE_URL"]
    name = "jrpy_" + uuid.uuid4().hex
    psql(admin, "-c", f"CREATE DATABASE {name}")
    base, _, params = admin.partition("?")
    url = base.rsplit("/", 1)[0] + "/" + name + ("?" + params if params else "")
    # An empty configuration: every setting at its default, the database given here.
    config = tmp_path / "empty.conf"
    config.write_text("")
    subprocess.run(
        ["cargo", "run", "--quiet", "--bin", "janitor-runner", "--", "migrate",
         "--config", str(config), "--database-url", url],
        check=True, cwd=ROOT, stdout=subprocess.DEVNULL,
    )
    if worked_example:
        psql(url, "-c", WORKED_EXAMPLE)
    return admin, url


def drop(admin, url):
    name = url.partition("?")[0].rsplit("/", 1)[1]
    psql(admin, "-c", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def database(tmp_path):
    """A migrated database with the worked example; import this fixture into a test module."""
    if not os.environ.get("DATABASE_URL"):
        pytest.skip("DATABASE_URL is not set")
    admin, url = create(tmp_path)
    yield url
    drop(admin, url)
