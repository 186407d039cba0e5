-- The two row triggers on `run` keep `change_set.state` and `last_run` current. Upstream's
-- bodies call `refresh_change_set_state` and `refresh_last_run`, which re-derive everything
-- from the tables: on every stored run about a dozen statements, each with its executor
-- start-up, where an insert needs three. These bodies give an INSERT a shorter path that
-- writes the same rows, using what the inserted row already says (it exists, and its result
-- code); UPDATE and DELETE still call the shared functions, which stay as upstream wrote them.
-- The order of the two triggers (change set first, then `last_run`) is upstream's and is kept
-- by their names, so the change set's `change_set_todo` check still reads `last_run` as it was
-- before this run.

CREATE OR REPLACE FUNCTION run_trigger_refresh_change_set_state()
RETURNS trigger
LANGUAGE plpgsql
AS $body$
DECLARE
    old_state change_set_state;
    new_state change_set_state;
BEGIN
    IF TG_OP = 'INSERT' THEN
        -- refresh_change_set_state's steps in one statement: the CASE stops at the first step
        -- that does not advance, so each EXISTS runs only where refresh_change_set_state would
        -- run it. On an insert the change set has a run (this one), so `created` advances;
        -- a successful insert is the successful run the `working` step looks for.
        SELECT state,
               CASE
                   WHEN state IN ('created', 'working')
                        AND NOT ((NEW.result_code = 'success'
                                  OR EXISTS (SELECT FROM run
                                             WHERE change_set = NEW.change_set
                                               AND result_code = 'success'))
                                 AND NOT EXISTS (SELECT FROM change_set_todo
                                                 WHERE change_set = NEW.change_set))
                       THEN 'working'
                   WHEN state IN ('created', 'working', 'ready')
                        AND NOT EXISTS (SELECT FROM publish
                                        WHERE result_code = 'success'
                                          AND change_set = NEW.change_set)
                       THEN 'ready'
                   WHEN state <> 'done'
                        AND EXISTS (SELECT FROM change_set_unpublished
                                    WHERE change_set = NEW.change_set)
                       THEN 'publishing'
                   ELSE 'done'
               END::change_set_state
        INTO STRICT old_state, new_state
        FROM change_set WHERE id = NEW.change_set;
        IF new_state <> old_state THEN
            UPDATE change_set SET state = new_state WHERE id = NEW.change_set;
        END IF;
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM refresh_change_set_state(OLD.change_set);
    ELSE
        PERFORM refresh_change_set_state(OLD.change_set);
        IF OLD.change_set <> NEW.change_set THEN
            PERFORM refresh_change_set_state(NEW.change_set);
        END IF;
    END IF;
    RETURN NEW;
END;
$body$;

CREATE OR REPLACE FUNCTION run_trigger_refresh_last_run()
RETURNS trigger
LANGUAGE plpgsql
AS $body$
BEGIN
    IF TG_OP = 'INSERT' THEN
        -- refresh_last_run's reads and its upsert in one statement. The pair has a latest run
        -- (at least this one), so the branch that deletes the pair's row cannot be taken.
        INSERT INTO last_run (codebase, campaign, last_run_id, last_effective_run_id,
                              last_unabsorbed_run_id)
        SELECT NEW.codebase, NEW.suite::text, effective.latest_id, effective.id,
               CASE
                   WHEN effective.result_code = 'nothing-to-do' THEN NULL
                   WHEN effective.result_code <> 'success' THEN effective.id
                   WHEN EXISTS (SELECT FROM new_result_branch
                                WHERE run_id = effective.id AND NOT absorbed)
                       THEN effective.id
               END
        FROM (
            SELECT latest.id AS latest_id,
                   CASE
                       WHEN latest.result_code = 'nothing-new-to-do' THEN latest.resume_from
                       WHEN latest.failure_transient IS TRUE THEN settled.id
                       ELSE latest.id
                   END AS id,
                   CASE
                       WHEN latest.result_code = 'nothing-new-to-do' THEN 'success'
                       WHEN latest.failure_transient IS TRUE THEN settled.result_code
                       ELSE latest.result_code
                   END AS result_code
            FROM (
                SELECT id, result_code, failure_transient, resume_from
                FROM run
                WHERE codebase = NEW.codebase AND suite = NEW.suite::text
                ORDER BY start_time DESC
                LIMIT 1
            ) latest
            -- After a transient failure, the last run that settled something stands.
            LEFT JOIN LATERAL (
                SELECT id, result_code
                FROM run
                WHERE latest.failure_transient IS TRUE
                  AND latest.result_code <> 'nothing-new-to-do'
                  AND codebase = NEW.codebase AND suite = NEW.suite::text
                  AND result_code <> 'nothing-new-to-do'
                  AND NOT coalesce(failure_transient, false)
                ORDER BY start_time DESC
                LIMIT 1
            ) settled ON true
        ) effective
        ON CONFLICT (codebase, campaign) DO UPDATE SET
            last_run_id = EXCLUDED.last_run_id,
            last_effective_run_id = EXCLUDED.last_effective_run_id,
            last_unabsorbed_run_id = EXCLUDED.last_unabsorbed_run_id;
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM refresh_last_run(OLD.codebase, OLD.suite::text);
    ELSE
        PERFORM refresh_last_run(NEW.codebase, NEW.suite::text);
    END IF;
    RETURN NEW;
END;
$body$;
