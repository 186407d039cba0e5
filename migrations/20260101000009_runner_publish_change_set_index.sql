-- no-transaction
-- Every stored run that completes its change set's work (each successful run in a change set
-- of its own, as most are) has the `run` trigger ask whether the change set was published:
-- `publish` rows with the change set and a successful result. The schema does not index
-- `publish (change_set)`, so that question reads the whole of `publish`: 4.3 ms more per
-- stored run with 100,000 publish rows, growing with the table, and the publisher's own
-- trigger asks it too. Built concurrently so that adopting a production database does not
-- block the publisher's writes meanwhile.
CREATE INDEX CONCURRENTLY IF NOT EXISTS runner_publish_change_set_idx
    ON publish (change_set);
