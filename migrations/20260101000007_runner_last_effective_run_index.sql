-- no-transaction
-- A change set's state advances from `working` only when `change_set_todo` is empty for it:
-- its candidates without a successful last effective run in the change set. That view joins
-- `last_run` to `run` on `last_effective_run_id`, which the schema does not index, so every
-- such check (the `run` trigger's, on each finish in a change set with candidates; the
-- site's) reads the whole of `last_run`: 1.8 ms and 210 buffer hits per finish with 20,000
-- codebase/campaign pairs, growing with them. With this index the check starts from the change
-- set's runs and looks each up. Built concurrently so that adopting a production database
-- does not block the triggers that write `last_run`.
CREATE INDEX CONCURRENTLY IF NOT EXISTS runner_last_run_last_effective_run_id_idx
    ON last_run (last_effective_run_id);
