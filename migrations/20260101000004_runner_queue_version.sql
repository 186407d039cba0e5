-- A version number for the queue, bumped by every statement that changes it, so the runner
-- can keep queue positions in memory and know, with one cheap read, whether they still hold.
-- A sequence rather than a counter row: nextval never blocks concurrent writers.
CREATE SEQUENCE IF NOT EXISTS runner_queue_version;

-- Writers also hold a shared advisory lock until they commit. A reader that takes the same
-- key exclusively (try-lock, never waits) therefore knows that no bumped change is still
-- uncommitted when it reads the version and the rows.
CREATE OR REPLACE FUNCTION runner_queue_changed()
RETURNS trigger
LANGUAGE plpgsql
AS $body$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(7598263571042161923);
    PERFORM nextval('runner_queue_version');
    RETURN NULL;
END;
$body$;

DO $do$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_trigger
                   WHERE tgname = 'runner_queue_changed' AND tgrelid = 'queue'::regclass) THEN
        CREATE TRIGGER runner_queue_changed
            AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON queue
            FOR EACH STATEMENT EXECUTE FUNCTION runner_queue_changed();
    END IF;
END;
$do$;
