-- Additive changes janitor-runner makes to every database, fresh or adopted.

-- Queue ids are handed out by a sequence but upstream never declared them unique; the runner
-- addresses queue rows by id (claims, deletes), so make that a guarantee.
CREATE UNIQUE INDEX IF NOT EXISTS runner_queue_id_key ON queue (id);

-- Fix in place: upstream reads OLD on INSERT (NULL there), which makes inserting an already
-- absorbed result branch fail with "query returned no rows".
CREATE OR REPLACE FUNCTION new_result_branch_trigger_refresh_change_set_state()
RETURNS trigger
LANGUAGE plpgsql
AS $body$
DECLARE
    cs text;
BEGIN
    IF TG_OP = 'INSERT' AND NEW.absorbed THEN
        SELECT change_set INTO STRICT cs FROM run WHERE id = NEW.run_id;
        PERFORM refresh_change_set_state(cs);
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.absorbed <> OLD.absorbed THEN
        SELECT change_set INTO STRICT cs FROM run WHERE id = OLD.run_id;
        PERFORM refresh_change_set_state(cs);
        IF OLD.run_id <> NEW.run_id THEN
            SELECT change_set INTO STRICT cs FROM run WHERE id = NEW.run_id;
            PERFORM refresh_change_set_state(cs);
        END IF;
    END IF;
    RETURN NEW;
END;
$body$;

-- The PostgreSQL implementation of the active-run store (src/state/postgres.rs). The Redis
-- implementation keeps the same facts in the hashes the Python runner uses.
CREATE TABLE IF NOT EXISTS runner_active_run (
    id text PRIMARY KEY,
    -- One active run per queue item: this constraint is what makes a claim atomic.
    queue_id bigint NOT NULL UNIQUE,
    worker text,
    -- The ActiveRun JSON exactly as last written (json keeps key order and text).
    data json NOT NULL,
    last_keepalive timestamp
);

CREATE TABLE IF NOT EXISTS runner_rate_limited_host (
    host text PRIMARY KEY,
    until timestamp NOT NULL
);
