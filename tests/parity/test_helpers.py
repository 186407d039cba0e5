"""Unit parity of the small helpers: the Python runner's inputs, the outputs the spec gives."""

import pytest

import janitor_runner as jr


def test_version():
    assert jr.__version__.count(".") == 2


@pytest.mark.parametrize(
    "committer, expected",
    [
        (
            "Joe Example <joe@example.com>",
            {
                "DEBFULLNAME": "Joe Example",
                "GIT_COMMITTER_NAME": "Joe Example",
                "GIT_AUTHOR_NAME": "Joe Example",
                "DEBEMAIL": "joe@example.com",
                "GIT_COMMITTER_EMAIL": "joe@example.com",
                "GIT_AUTHOR_EMAIL": "joe@example.com",
                "EMAIL": "joe@example.com",
                "COMMITTER": "Joe Example <joe@example.com>",
                "BRZ_EMAIL": "Joe Example <joe@example.com>",
            },
        ),
        (
            "John Doe",
            {
                "DEBFULLNAME": "John Doe",
                "GIT_COMMITTER_NAME": "John Doe",
                "GIT_AUTHOR_NAME": "John Doe",
                "COMMITTER": "John Doe",
                "BRZ_EMAIL": "John Doe",
            },
        ),
        (
            "joe@example.com",
            {
                "DEBEMAIL": "joe@example.com",
                "GIT_COMMITTER_EMAIL": "joe@example.com",
                "GIT_AUTHOR_EMAIL": "joe@example.com",
                "EMAIL": "joe@example.com",
                "COMMITTER": "joe@example.com",
                "BRZ_EMAIL": "joe@example.com",
            },
        ),
        ("", {"COMMITTER": "", "BRZ_EMAIL": ""}),
        (None, {}),
    ],
)
def test_committer_env(committer, expected):
    assert jr.committer_env(committer) == expected


def test_committer_env_ignores_trailing_text():
    env = jr.committer_env("Joe <joe@example.com> extra")
    assert (env["DEBFULLNAME"], env["EMAIL"]) == ("Joe", "joe@example.com")


@pytest.mark.parametrize(
    "name",
    ["foo.log", "foo.log.1", "foo.1.log", "worker.log.2024", "log", ".log", "foo..log", "foo.log.", "foo.log.½"],
)
def test_is_log_filename_true(name):
    assert jr.is_log_filename(name)


@pytest.mark.parametrize(
    "name",
    ["foo.1", "foo.deb", "foo.1.log.1", "a.b.log.1", "foo.1.notlog", "foo.log.notlog", "build.log.gz", "log.1", "foo.LOG"],
)
def test_is_log_filename_false(name):
    assert not jr.is_log_filename(name)


def test_splitout_env():
    env, command = jr.splitout_env("FOO=bar BAZ='a b' lintian-brush --fix 'x y'")
    assert env == {"FOO": "bar", "BAZ": "a b"}
    assert command == "lintian-brush --fix 'x y'"
    assert jr.splitout_env("run A=b") == ({}, "run A=b")


def test_splitout_env_bad_syntax():
    with pytest.raises(ValueError):
        jr.splitout_env("echo 'unterminated")


def test_runner_exceptions_share_a_base():
    for name in ["QueueItemAlreadyClaimed", "RunExists", "CandidateUnavailable", "QueueEmpty",
                 "QueueRateLimiting", "ZeroMaximumValue", "PingFailure", "PingTimeout",
                 "PingFatalFailure"]:
        assert issubclass(getattr(jr, name), jr.RunnerError), name
    assert issubclass(jr.ModelError, ValueError)
    assert not issubclass(jr.ModelError, jr.RunnerError)


def test_dpkg_vendor():
    import shutil
    import subprocess
    vendor = jr.dpkg_vendor()
    if shutil.which("dpkg-vendor"):
        expected = subprocess.check_output(["dpkg-vendor", "--query", "vendor"]).strip().decode()
        assert vendor == expected
    else:
        assert vendor == "Debian"
    assert jr.dpkg_vendor() is not None
