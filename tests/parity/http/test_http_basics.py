"""Health, status and framework-level behaviour (http-api.md 1.4, 4.2, 5.1-5.4, 9.1)."""

import pytest

from jr_http import request


def test_health_and_ready(target):
    for path in ("/health", "/ready"):
        resp = target.get(path)
        assert resp.status == 200, resp
        assert resp.text == "ok"


def test_health_answers_head(target):
    # 1.4: every GET route also answers HEAD.
    resp = request("HEAD", target.url + "/health")
    assert resp.status == 200, resp
    assert resp.body == b""


def test_status_shape(target):
    resp = target.get("/status")
    assert resp.status == 200, resp
    assert resp.content_type.startswith("application/json")
    body = resp.json()
    assert set(body) == {"processing", "avoid_hosts", "rate_limit_hosts"}
    assert isinstance(body["processing"], list)
    assert isinstance(body["avoid_hosts"], list)
    assert isinstance(body["rate_limit_hosts"], dict)
    if target.local:
        # No --avoid-host was given and nothing was rate-limited.
        assert body["avoid_hosts"] == []
        assert body["rate_limit_hosts"] == {}


def test_unknown_path_is_404(target):
    resp = target.get("/no-such-route")
    if target.rust:
        target.expect_error(resp, 404)
    else:
        assert resp.status == 404 and resp.text == "404: Not Found"


def test_trailing_slash_is_not_normalised(target):
    # 1.4: no trailing-slash normalisation (/status/ is a 404).
    assert target.get("/status/").status == 404


def test_wrong_method_is_405_with_allow(target):
    resp = request("DELETE", target.url + "/status")
    assert resp.status == 405, resp
    allow = {m.strip() for m in resp.headers.get("Allow", "").split(",")}
    assert "GET" in allow, resp.headers
    if target.rust:
        target.expect_error(resp, 405)


def test_public_root(target):
    resp = target.public("GET", "/")
    assert resp.status == 200, resp
    assert resp.body == b""


def test_public_app_has_no_health(target):
    # 9.1: there is no /metrics, /health or any other route on the public app.
    assert target.public("GET", "/health").status == 404
    assert target.public("GET", "/status").status == 404


@pytest.mark.parametrize("path", ["/metrics"])
def test_metrics_are_prometheus_text(target, path):
    resp = target.get(path)
    assert resp.status == 200, resp
    assert resp.content_type.startswith("text/plain")
    assert "# TYPE" in resp.text


@pytest.mark.differs("JSON bodies up to --max-json-body (32 MiB) are accepted (Python: 1 MiB)")
def test_json_body_over_one_mib_is_accepted(target):
    body = b"[" + b" " * (2 * 1024 * 1024) + b"]"
    resp = target.post("/candidates", data=body, headers={"Content-Type": "application/json"})
    assert resp.status == 200, resp
    assert resp.json()["success"] == []


@pytest.mark.local_only("the limit is the runner's --max-json-body, 32 MiB by default")
@pytest.mark.differs("every error is JSON {reason}, a 413 too (Python: aiohttp's plain text)")
def test_json_body_over_the_limit_is_413(target):
    body = b"[" + b" " * (33 * 1024 * 1024) + b"]"
    resp = target.post("/candidates", data=body, headers={"Content-Type": "application/json"})
    target.expect_error(resp, 413)


QUEUE_CRASH = "Python crashes (500) on GET /queue: it awaits an async generator"


@pytest.mark.parametrize("path", [
    "/status",
    pytest.param("/queue", marks=pytest.mark.differs(QUEUE_CRASH)),
    "/active-runs",
    "/codebases",
])
def test_get_routes_answer_head(target, path):
    resp = request("HEAD", target.url + path)
    assert resp.status == 200, resp
    assert resp.body == b""
