-- An assignment reads its next queue row and claims it in two statements, each committed on
-- its own. The claim re-reads the row once it is in (see `insert_claim` in
-- src/state/postgres.rs), and when the row was stored and deleted since it was read, the
-- claim must not stay: the statement calls this function, whose error rolls it back.
CREATE OR REPLACE FUNCTION runner_refuse_claim(queue_id bigint)
RETURNS boolean
LANGUAGE plpgsql
AS $body$
BEGIN
    RAISE EXCEPTION 'queue item % is no longer queued', queue_id
        USING ERRCODE = 'JRQ01';
END;
$body$;
