-- no-transaction
-- The bulk scheduler reads every run's duration, result and contexts per (codebase, campaign),
-- newest first. With these columns in the index that read is an index-only scan in the order
-- it needs, instead of a million heap visits. Built concurrently so that a runner starting on
-- a large production database does not block the writers of `run` meanwhile.
CREATE INDEX CONCURRENTLY IF NOT EXISTS runner_run_history_idx
    ON run (codebase, suite, start_time DESC)
    INCLUDE (finish_time, result_code, failure_transient, context, instigated_context);
