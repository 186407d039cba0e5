"""store_run and store_change_set through the Python face, with janitor.runner's keyword
parameters, on a real database (the worked example's codebases)."""

import asyncio
from datetime import datetime

import pytest

import janitor_runner as jr
from _database import database, query  # noqa: F401  (the fixture)


def test_store_run_writes_the_row_and_its_branches(database):
    async def main():
        pool = await jr.connect(database)
        await jr.store_change_set(pool, "cs-1", "lintian-fixes")
        await jr.store_change_set(pool, "cs-1", "lintian-fixes")  # exists: nothing happens
        await jr.store_run(
            pool, run_id="run-1", codebase="alpha", vcs_type="git",
            branch_url="https://example.org/alpha", start_time=datetime(2026, 1, 1, 12, 0),
            finish_time=datetime(2026, 1, 1, 12, 5), command="lintian-brush",
            description="Fixed 2 issues", instigated_context=None, context="ctx",
            main_branch_revision=b"git-v1:aaa", result_code="success", revision=b"git-v1:bbb",
            codemod_result={"fixed": 2}, campaign="lintian-fixes",
            logfilenames=["worker.log"], value=20, change_set="cs-1",
            result_branches=[("main", None, b"git-v1:aaa", b"git-v1:bbb")],
            result_tags=[("v1", b"git-v1:ccc")])
        # Without a change set the run id names a new one; empty results are stored as NULL.
        await jr.store_run(
            pool, run_id="run-2", codebase="beta", vcs_type=None, branch_url=None,
            start_time=datetime(2026, 1, 1), finish_time=datetime(2026, 1, 1, 0, 1),
            command="x", description=None, instigated_context=None, context=None,
            main_branch_revision=None, result_code="nothing-to-do", revision=None,
            codemod_result={}, campaign="lintian-fixes", logfilenames=[], value=None)
        with pytest.raises(ValueError, match="Duplicate result branches"):
            await jr.store_run(
                pool, run_id="run-3", codebase="beta", vcs_type=None, branch_url=None,
                start_time=datetime(2026, 1, 1), finish_time=datetime(2026, 1, 1),
                command="x", description=None, instigated_context=None, context=None,
                main_branch_revision=None, result_code="x", revision=None,
                codemod_result=None, campaign="lintian-fixes", logfilenames=[], value=None,
                result_branches=[("main", None, None, None), ("main", None, None, None)])
        await pool.close()

    asyncio.run(main())
    rows = query(database, "SELECT id, main_branch_revision, revision, result->>'fixed', change_set,"
                           " subpath, value, array_to_string(logfilenames, ','),"
                           " (SELECT string_agg(role || '=' || revision, ',')"
                           "  FROM new_result_branch b WHERE b.run_id = run.id),"
                           " result_tags::text"
                           " FROM run WHERE id LIKE 'run-%' ORDER BY id")
    assert rows == [
        ["run-1", "git-v1:aaa", "git-v1:bbb", "2", "cs-1", "", "20", "worker.log",
         "main=git-v1:bbb", '{"(v1,git-v1:ccc)"}'],
        ["run-2", None, None, None, "run-2", "", None, "", None, None],
    ]
