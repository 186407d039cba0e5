"""Helpers of the HTTP parity suite: a small HTTP client, multipart encoding, database access
through `psql`, and the target runner. Standard library only."""

import datetime
import json
import re
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Optional

import pytest

# Python's datetime.isoformat() of a naive value: fraction omitted when it is zero
# (http-api.md 1.2).
NAIVE_ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?$")
ISO_SECONDS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$")
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")

# http-api.md 4.5: the keys of the run result JSON.
RESULT_KEYS = {
    "codebase", "campaign", "change_set", "log_id", "description", "code", "failure_details",
    "failure_stage", "duration", "finish_time", "start_time", "transient", "target",
    "logfilenames", "codemod", "value", "remotes", "branch_url", "resume", "branches", "tags",
    "revision", "main_branch_revision",
}
# models-backchannels-worker.md 1.3: ActiveRun.json().
ACTIVE_RUN_KEYS = {
    "queue_id", "id", "codebase", "change_set", "campaign", "command", "estimated_duration",
    "current_duration", "start_time", "worker", "worker_link", "vcs", "backchannel",
    "instigated_context", "resume_from",
}
# http-api.md 4.2: processing entries add these.
KEEPALIVE_KEYS = {"last-keepalive", "keepalive_age", "mia"}
# http-api.md 4.3.
ASSIGNMENT_KEYS = {
    "id", "description", "queue_id", "branch", "resume", "build", "command", "codebase",
    "codemod", "env", "campaign", "force-build", "skip-setup-validation", "target_repository",
}
BRANCH_KEYS = {"default-empty", "url", "subpath", "vcs_type", "cached_url",
               "additional_colocated_branches"}


def unique(prefix: str = "p") -> str:
    """A name valid as codebase/campaign name (lower-case letters, digits, '-')."""
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


class Response:
    def __init__(self, status: int, headers, body: bytes):
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "") or ""

    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self):
        return f"<Response {self.status} {self.content_type!r} {self.body[:500]!r}>"


def request(method: str, url: str, *, json_body: Any = None, data: Optional[bytes] = None,
            headers: Optional[dict] = None, timeout: float = 60) -> Response:
    headers = dict(headers or {})
    if json_body is not None:
        data = json.dumps(json_body).encode()
        headers.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return Response(r.status, r.headers, r.read())
    except urllib.error.HTTPError as e:
        return Response(e.code, e.headers, e.read())


def multipart(parts) -> tuple:
    """Encode `parts`, a list of (field name, filename or None, content type, bytes), as
    multipart/form-data (what janitor-worker sends, models-backchannels-worker.md §7.5)."""
    boundary = "parity-" + uuid.uuid4().hex
    out = bytearray()
    for field, filename, ctype, content in parts:
        out += f"--{boundary}\r\n".encode()
        disposition = f'form-data; name="{field}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out += f"Content-Disposition: {disposition}\r\n".encode()
        out += f"Content-Type: {ctype}\r\n\r\n".encode()
        out += content
        out += b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"


def basic_auth(login: str, password: str) -> dict:
    import base64
    token = base64.b64encode(f"{login}:{password}".encode("latin-1")).decode()
    return {"Authorization": f"Basic {token}"}


def naive_utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def parse_interval_seconds(value) -> Optional[datetime.timedelta]:
    """`extract(epoch from <interval>)::text` → timedelta (exact microseconds)."""
    if value is None:
        return None
    micro = (Decimal(str(value)) * 1000000).to_integral_value()
    return datetime.timedelta(microseconds=int(micro))


def python_cost_offset(duration: datetime.timedelta, candidate_value=None) -> float:
    """queue-and-scheduling.md 2.5 for a codebase with a NULL value (ncv 1.0) and no history
    (p 1.0): offset = cost / cv, computed with the same float operations as the Python."""
    cost = 20000.0 + (1000.0 * duration.total_seconds() + duration.microseconds / 1000.0)
    cv = 1.0 if candidate_value is None else candidate_value + 100.0
    return cost / ((1.0 * 1.0) * cv)


@dataclass
class Target:
    """The runner under test: its two apps and its database."""

    url: str
    public_url: Optional[str]
    dsn: str
    campaign: str
    local: bool
    flavour: str
    logs_dir: Optional[str]
    vcs_base: Optional[str]
    # Only in the local mode, where the suite writes the configuration.
    empty_campaign: Optional[str] = None
    committer: Optional[str] = None

    @property
    def rust(self) -> bool:
        return self.flavour == "rust"

    # -- HTTP --------------------------------------------------------------------------------
    def get(self, path: str, **kw) -> Response:
        return request("GET", self.url + path, **kw)

    def post(self, path: str, body: Any = None, **kw) -> Response:
        return request("POST", self.url + path, json_body=body, **kw)

    def delete(self, path: str, **kw) -> Response:
        return request("DELETE", self.url + path, **kw)

    def public(self, method: str, path: str, **kw) -> Response:
        if not self.public_url:
            pytest.skip("no public app (pass --public-url)")
        return request(method, self.public_url + path, **kw)

    # -- database ----------------------------------------------------------------------------
    def _psql(self, script: str, params: dict) -> str:
        args = ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"]
        for key, value in params.items():
            args += ["-v", f"{key}={value}"]
        args.append(self.dsn)
        proc = subprocess.run(args, input=script, capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise AssertionError(f"psql failed: {proc.stderr}\n{script}")
        return proc.stdout

    def rows(self, query: str, **params) -> list:
        """Rows of a SELECT as dicts (JSON-decoded by PostgreSQL's json_agg). Parameters are
        psql variables: write :'name' in the query."""
        out = self._psql(
            f"SELECT coalesce(json_agg(t), '[]'::json) FROM ({query}) t;\n", params)
        return json.loads(out)

    def row(self, query: str, **params) -> Optional[dict]:
        rows = self.rows(query, **params)
        assert len(rows) <= 1, rows
        return rows[0] if rows else None

    def execute(self, statement: str, **params) -> None:
        self._psql(statement.rstrip().rstrip(";") + ";\n", params)

    # -- building blocks ---------------------------------------------------------------------
    def new_codebase(self, name: Optional[str] = None, **fields) -> str:
        """Upload one codebase with a git branch URL on a host where nothing listens, so the
        runner's upstream probe fails at once and the item is handed out with the stored
        vcs_type (http-api.md 6 E3)."""
        name = name or unique("cb")
        entry = {"name": name, "branch_url": f"http://127.0.0.1:9/git/{name}",
                 "vcs_type": "git", "subpath": ""}
        entry.update(fields)
        resp = self.post("/codebases", [entry])
        assert resp.status == 200, resp
        return name

    def upload_candidate(self, codebase: str, **fields) -> dict:
        candidate = {"codebase": codebase, "campaign": self.campaign}
        candidate.update(fields)
        resp = self.post("/candidates", [candidate])
        assert resp.status == 200, resp
        body = resp.json()
        assert len(body["success"]) == 1, body
        return body["success"][0]

    def queue_rows(self, codebase: str) -> list:
        return self.rows(
            "SELECT id, bucket::text AS bucket, codebase, suite, command, priority, context,"
            " extract(epoch FROM estimated_duration)::text AS estimated_duration,"
            " refresh, requester, change_set FROM queue WHERE codebase = :'c' ORDER BY id",
            c=codebase)

    def run_row(self, run_id: str) -> Optional[dict]:
        return self.row(
            "SELECT id, command, description, start_time, finish_time, result_code,"
            " instigated_context, context, main_branch_revision, revision, result,"
            " suite, vcs_type::text AS vcs_type, branch_url, logfilenames,"
            " publish_status::text AS publish_status, value, worker, worker_link,"
            " (SELECT array_agg(array[(t).actual_name, (t).revision]) FROM"
            "   unnest(result_tags) t) AS result_tags,"
            " subpath, failure_stage, failure_details, target_branch_url, failure_transient,"
            " resume_from, change_set, codebase FROM run WHERE id = :'id'", id=run_id)

    def campaign_duration(self, codebase: str, campaign: str) -> datetime.timedelta:
        """The duration do_schedule_regular estimates without history of codebase+campaign:
        the SQL average over the codebase, else over the campaign, else 15 s (queue-and-scheduling.md §2.4)."""
        row = self.row(
            "SELECT extract(epoch FROM coalesce("
            " (SELECT avg(finish_time - start_time) FROM run WHERE failure_transient IS NOT TRUE"
            "  AND codebase = :'c'),"
            " (SELECT avg(finish_time - start_time) FROM run WHERE failure_transient IS NOT TRUE"
            "  AND suite = :'k'),"
            " interval '15 seconds'))::text AS d", c=codebase, k=campaign)
        return parse_interval_seconds(row["d"])

    def schedule_duration(self, codebase: str, campaign: str) -> datetime.timedelta:
        """estimate_duration (queue-and-scheduling.md §2.4): codebase+campaign, codebase, campaign, 15 s."""
        row = self.row(
            "SELECT extract(epoch FROM coalesce("
            " (SELECT avg(finish_time - start_time) FROM run WHERE failure_transient IS NOT TRUE"
            "  AND codebase = :'c' AND suite = :'k'),"
            " (SELECT avg(finish_time - start_time) FROM run WHERE failure_transient IS NOT TRUE"
            "  AND codebase = :'c'),"
            " (SELECT avg(finish_time - start_time) FROM run WHERE failure_transient IS NOT TRUE"
            "  AND suite = :'k'),"
            " interval '15 seconds'))::text AS d", c=codebase, k=campaign)
        return parse_interval_seconds(row["d"])

    def min_priority(self) -> int:
        return self.row("SELECT coalesce(min(priority), 0) AS m FROM queue")["m"]

    def assign(self, codebase: str, **body) -> Response:
        body.setdefault("codebase", codebase)
        return self.post("/active-runs", body)

    def finish(self, run_id: str, result: Optional[dict], files=(), *, public_auth=None,
               result_name: str = "result.json") -> Response:
        parts = []
        if result is not None:
            parts.append(("metadata", result_name, "application/json",
                          json.dumps(result).encode()))
        for name, content in files:
            parts.append(("file", name, "application/octet-stream", content))
        body, ctype = multipart(parts)
        headers = {"Content-Type": ctype}
        if public_auth is not None:
            headers.update(public_auth)
            return self.public("POST", f"/runner/active-runs/{run_id}/finish", data=body,
                               headers=headers)
        return request("POST", f"{self.url}/active-runs/{run_id}/finish", data=body,
                       headers=headers)

    def wait_for(self, predicate, timeout: float = 20, what: str = "condition"):
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.2)

    # -- errors ------------------------------------------------------------------------------
    def expect_finish_of_stored_run(self, resp: Response, run_id: str) -> None:
        """A finish for a run that is no longer active but stored: 409 {"id", "reason"} so a
        retrying worker can stop (DECISIONS.md, durability); the Python answers 404."""
        if self.rust:
            assert resp.status == 409, resp
            assert resp.json() == {"id": run_id, "reason": run_id}, resp
        else:
            self.expect_error(resp, 404, f"no such run {run_id}")

    def expect_error(self, resp: Response, status: int, reason: Optional[str] = None, *,
                     prefix: bool = False, plain_in_python: bool = False) -> str:
        """`resp` is an error with `status` and the message `reason` (or one starting with it).
        The runner under test answers every error as JSON {"reason": ...}
        (docs/differences.md "Errors"); with --flavour python, errors the spec lists as
        'plain' are read as plain text (http-api.md 1.3)."""
        assert resp.status == status, resp
        if plain_in_python and not self.rust:
            message = resp.text
        else:
            assert resp.content_type.startswith("application/json"), resp
            body = resp.json()
            assert isinstance(body, dict) and isinstance(body.get("reason"), str), body
            message = body["reason"]
        if reason is not None:
            if prefix:
                assert message.startswith(reason), (message, reason)
            else:
                assert message == reason, (message, reason)
        return message
