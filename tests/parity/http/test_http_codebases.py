"""Codebase upload and download (http-api.md 5.9, 5.10; docs/differences.md "POST /codebases")."""

import pytest

from jr_http import unique

CODEBASE_KEYS = {"name", "branch_url", "url", "branch", "subpath", "vcs_type", "web_url",
                 "vcs_last_revision", "value"}


def db_codebase(target, name):
    return target.row(
        "SELECT name, branch_url, url, branch, subpath, vcs_type::text AS vcs_type, web_url,"
        " vcs_last_revision, value FROM codebase WHERE name = :'n'", n=name)


def downloaded(target, name):
    resp = target.get("/codebases")
    assert resp.status == 200, resp
    body = resp.json()
    assert isinstance(body, list)
    matches = [c for c in body if c["name"] == name]
    assert len(matches) <= 1
    return matches[0] if matches else None


def test_upload_then_download(target):
    name = unique("cb")
    entry = {"name": name, "branch_url": f"https://example.com/{name}.git", "vcs_type": "git",
             "subpath": "sub/dir", "web_url": f"https://example.com/{name}",
             "vcs_last_revision": "abc123", "value": 42}
    resp = target.post("/codebases", [entry])
    assert resp.status == 200, resp
    assert resp.json() == {}
    expected = dict(entry, url=f"https://example.com/{name}.git", branch=None)
    assert db_codebase(target, name) == expected
    got = downloaded(target, name)
    assert set(got) == CODEBASE_KEYS
    assert got == expected


def test_branch_url_segment_parameter_is_split(target):
    # 5.10: branch_url → url without the ",branch=" parameter, branch = its decoded value.
    name = unique("cb")
    resp = target.post("/codebases", [{
        "name": name, "branch_url": f"https://example.com/{name}.git,branch=debian%2Flatest",
        "vcs_type": "git"}])
    assert resp.status == 200, resp
    row = db_codebase(target, name)
    assert row["url"] == f"https://example.com/{name}.git"
    assert row["branch"] == "debian/latest"
    assert row["branch_url"] == f"https://example.com/{name}.git,branch=debian%2Flatest"
    assert downloaded(target, name)["branch"] == "debian/latest"


def test_url_and_branch_make_branch_url(target):
    # 5.10: branch given → branch_url = url + ",branch=<escaped>" ("/" stays unescaped).
    name = unique("cb")
    resp = target.post("/codebases", [{
        "name": name, "url": f"https://example.com/{name}", "branch": "debian/main"}])
    assert resp.status == 200, resp
    row = db_codebase(target, name)
    assert row["branch_url"] == f"https://example.com/{name},branch=debian/main"
    assert row["url"] == f"https://example.com/{name}"
    assert row["branch"] == "debian/main"


def test_url_alone_is_the_branch_url(target):
    name = unique("cb")
    assert target.post("/codebases", [{"name": name, "url": f"https://e.org/{name}"}]).status == 200
    row = db_codebase(target, name)
    assert row["branch_url"] == row["url"] == f"https://e.org/{name}"
    assert row["branch"] is None and row["vcs_type"] is None and row["value"] is None


def test_upload_overwrites_every_column(target):
    # 5.10: upsert keyed on name; every column except name is overwritten (NULLs too).
    name = unique("cb")
    assert target.post("/codebases", [{
        "name": name, "url": f"https://e.org/{name}", "vcs_type": "bzr", "value": 3,
        "web_url": "https://web"}]).status == 200
    assert target.post("/codebases", [{
        "name": name, "url": f"https://f.org/{name}", "vcs_type": "git"}]).status == 200
    row = db_codebase(target, name)
    assert row["url"] == f"https://f.org/{name}"
    assert row["vcs_type"] == "git"
    assert row["value"] is None
    assert row["web_url"] is None
    assert target.row("SELECT count(*) AS n FROM codebase WHERE name = :'n'", n=name)["n"] == 1


@pytest.mark.differs("Python writes only the last entry of the list")
def test_every_entry_is_written(target):
    names = [unique("cb") for _ in range(3)]
    resp = target.post("/codebases", [{"name": n, "url": f"https://e.org/{n}"} for n in names])
    assert resp.status == 200, resp
    for n in names:
        assert db_codebase(target, n) is not None, n


@pytest.mark.differs("Python crashes on an empty list")
def test_empty_list(target):
    resp = target.post("/codebases", [])
    assert resp.status == 200, resp
    assert resp.json() == {}


@pytest.mark.differs("Python crashes (500) on bad input; here a 400 and nothing is written")
def test_invalid_entry_rejects_whole_upload(target):
    good, bad = unique("cb"), "Not A Valid Name!"
    resp = target.post("/codebases", [{"name": good, "url": f"https://e.org/{good}"},
                                      {"name": bad, "url": "https://e.org/bad"}])
    target.expect_error(resp, 400)
    assert db_codebase(target, good) is None


@pytest.mark.differs("Python crashes (500) on an unknown vcs_type")
def test_unknown_vcs_type_is_400(target):
    name = unique("cb")
    resp = target.post("/codebases", [{"name": name, "url": "https://e.org/x",
                                       "vcs_type": "cvs-nope"}])
    target.expect_error(resp, 400)
    assert db_codebase(target, name) is None


@pytest.mark.differs("Python crashes (500) on malformed JSON")
@pytest.mark.parametrize("body", [b"", b"[{", b"not json", b'{"name": "x"}'])
def test_malformed_json_is_400(target, body):
    resp = target.post("/codebases", data=body, headers={"Content-Type": "application/json"})
    target.expect_error(resp, 400)
