-- The Janitor state schema, as the Python runner, site and publisher expect it.
--
-- A database that already holds this schema (an existing Janitor instance) is recognised at
-- start-up and this migration is recorded as applied without running it (see src/db/migrate.rs).
-- Constraint and sequence names are the ones PostgreSQL generates for the upstream schema, so
-- that both schemas can be compared catalog to catalog (tests/schema_compat.rs).

CREATE EXTENSION IF NOT EXISTS pgcrypto;

-- Enumerations: label order is sort order and is relied upon (queue buckets above all).
CREATE TYPE vcs_type AS ENUM ('bzr', 'git', 'svn', 'mtn', 'hg', 'arch', 'cvs', 'darcs');
CREATE TYPE merge_proposal_status AS ENUM (
    'open', 'closed', 'merged', 'applied', 'abandoned', 'rejected');
CREATE TYPE verdict AS ENUM ('approved', 'rejected', 'abstained');
CREATE TYPE change_set_state AS ENUM ('created', 'working', 'ready', 'publishing', 'done');
CREATE TYPE publish_status AS ENUM (
    'unknown', 'blocked', 'needs-manual-review', 'rejected', 'approved', 'ignored');
CREATE TYPE publish_mode AS ENUM (
    'push', 'attempt-push', 'propose', 'build-only', 'push-derived', 'skip', 'bts');
CREATE TYPE review_policy AS ENUM ('not-required', 'required');
CREATE TYPE queue_bucket AS ENUM (
    'update-existing-mp', 'manual', 'control', 'hook', 'reschedule', 'update-new-mp',
    'missing-deps', 'default');

-- Names of codebases, suites and campaigns share one shape.
CREATE DOMAIN codebase_name AS text
    CONSTRAINT codebase_name_check CHECK (VALUE SIMILAR TO '[a-z0-9][a-z0-9+-.]+');
CREATE DOMAIN suite_name AS text
    CONSTRAINT suite_name_check CHECK (VALUE SIMILAR TO '[a-z0-9][a-z0-9+-.]+');
CREATE DOMAIN campaign_name AS text
    CONSTRAINT campaign_name_check CHECK (VALUE SIMILAR TO '[a-z0-9][a-z0-9+-.]+');

CREATE TABLE codebase (
    name codebase_name,
    branch_url text,
    url text,
    branch text,
    subpath text,
    vcs_last_revision text,
    last_scanned timestamp,
    web_url text,
    vcs_type vcs_type,
    value integer,
    inactive boolean NOT NULL DEFAULT false,
    hostname text GENERATED ALWAYS AS (substring(branch_url, '.*://(?:[^/@]*@)?([^/]*)'::text)) STORED,
    CONSTRAINT codebase_branch_url_subpath_key UNIQUE (branch_url, subpath),
    CONSTRAINT codebase_name_key UNIQUE (name),
    CONSTRAINT codebase_check CHECK (name IS NOT NULL OR branch_url IS NOT NULL),
    CONSTRAINT codebase_check1 CHECK ((branch_url IS NULL) = (url IS NULL))
);
CREATE INDEX codebase_branch_url_idx ON codebase (branch_url);
CREATE INDEX codebase_name_idx ON codebase (name);
CREATE INDEX codebase_inactive_idx ON codebase (inactive);

CREATE TABLE merge_proposal (
    codebase text,
    url text NOT NULL,
    target_branch_url text,
    status merge_proposal_status DEFAULT NULL,
    revision text,
    merged_by text,
    merged_at timestamp,
    last_scanned timestamp,
    can_be_merged boolean,
    rate_limit_bucket text,
    CONSTRAINT merge_proposal_pkey PRIMARY KEY (url),
    CONSTRAINT merge_proposal_codebase_fkey FOREIGN KEY (codebase)
        REFERENCES codebase (name) ON DELETE SET NULL
);
CREATE INDEX merge_proposal_revision_idx ON merge_proposal (revision);
CREATE INDEX merge_proposal_url_idx ON merge_proposal (url);
CREATE INDEX merge_proposal_status_idx ON merge_proposal (status);
CREATE INDEX merge_proposal_status_rate_limit_bucket_idx ON merge_proposal (status, rate_limit_bucket);
CREATE INDEX merge_proposal_can_be_merged_idx ON merge_proposal (can_be_merged);

-- Row types: these tables are never filled, they name composite types used in arrays.
CREATE TABLE result_tag (
    actual_name text,
    revision text NOT NULL
);
CREATE INDEX result_tag_revision_idx ON result_tag (revision);

CREATE TABLE result_branch (
    role text NOT NULL,
    remote_name text NOT NULL,
    base_revision text NOT NULL,
    revision text NOT NULL
);

CREATE TABLE worker (
    name text NOT NULL,
    password text NOT NULL,
    link text,
    CONSTRAINT worker_name_key UNIQUE (name)
);

CREATE TABLE change_set (
    id text NOT NULL,
    campaign campaign_name NOT NULL,
    state change_set_state NOT NULL DEFAULT 'created',
    CONSTRAINT change_set_pkey PRIMARY KEY (id)
);

CREATE TABLE run (
    id text NOT NULL,
    command text,
    description text,
    start_time timestamp,
    finish_time timestamp,
    duration interval GENERATED ALWAYS AS (finish_time - start_time) STORED,
    result_code text NOT NULL,
    instigated_context text,
    context text,
    main_branch_revision text,
    revision text,
    result json,
    suite suite_name NOT NULL,
    vcs_type vcs_type,
    branch_url text,
    logfilenames text[] NOT NULL,
    publish_status publish_status NOT NULL DEFAULT 'unknown',
    value integer,
    worker text,
    worker_link text,
    result_tags result_tag[],
    subpath text,
    failure_stage text,
    failure_details json,
    target_branch_url text,
    failure_transient boolean,
    resume_from text,
    change_set text NOT NULL,
    codebase text NOT NULL,
    CONSTRAINT run_pkey PRIMARY KEY (id),
    CONSTRAINT run_worker_fkey FOREIGN KEY (worker) REFERENCES worker (name),
    CONSTRAINT run_resume_from_fkey FOREIGN KEY (resume_from) REFERENCES run (id) ON DELETE SET NULL,
    CONSTRAINT run_change_set_fkey FOREIGN KEY (change_set) REFERENCES change_set (id),
    CONSTRAINT run_codebase_fkey FOREIGN KEY (codebase) REFERENCES codebase (name),
    CONSTRAINT run_check CHECK (finish_time >= start_time),
    CONSTRAINT run_check1 CHECK (result_code <> 'nothing-new-to-do' OR resume_from IS NOT NULL),
    CONSTRAINT run_check2 CHECK (publish_status <> 'approved' OR revision IS NOT NULL)
);
CREATE INDEX run_codebase_suite_start_time_idx ON run (codebase, suite, start_time DESC);
CREATE INDEX run_start_time_idx ON run (start_time);
CREATE INDEX run_suite_start_time_idx ON run (suite, start_time);
CREATE INDEX run_codebase_suite_idx ON run (codebase, suite);
CREATE INDEX run_suite_idx ON run (suite);
CREATE INDEX run_result_code_idx ON run (result_code);
CREATE INDEX run_revision_idx ON run (revision);
CREATE INDEX run_main_branch_revision_idx ON run (main_branch_revision);
CREATE INDEX run_change_set_idx ON run (change_set);
CREATE INDEX run_publish_status_idx ON run (publish_status);
CREATE INDEX run_suite_revision_publish_status_idx ON run (suite, revision, publish_status);
CREATE INDEX run_codebase_suite_start_time_result_code_idx
    ON run (codebase, suite, start_time, result_code);

CREATE TABLE publish (
    id text NOT NULL,
    change_set text NOT NULL,
    source_branch_url text,
    source_branch_web_url text,
    target_branch_url text NOT NULL,
    target_branch_web_url text,
    subpath text,
    branch_name text,
    main_branch_revision text,
    revision text,
    role text,
    mode publish_mode NOT NULL,
    merge_proposal_url text,
    result_code text NOT NULL,
    description text,
    requester text,
    codebase text,
    "timestamp" timestamp DEFAULT now(),
    CONSTRAINT publish_change_set_fkey FOREIGN KEY (change_set) REFERENCES change_set (id),
    CONSTRAINT publish_merge_proposal_url_fkey FOREIGN KEY (merge_proposal_url)
        REFERENCES merge_proposal (url),
    CONSTRAINT publish_codebase_fkey FOREIGN KEY (codebase)
        REFERENCES codebase (name) ON DELETE SET NULL
);
CREATE INDEX publish_revision_idx ON publish (revision);
CREATE INDEX publish_merge_proposal_url_idx ON publish (merge_proposal_url);
CREATE INDEX publish_timestamp_idx ON publish ("timestamp");

-- The queue has no primary key upstream; ids are unique because they come from the sequence.
CREATE TABLE queue (
    id serial,
    bucket queue_bucket NOT NULL DEFAULT 'default',
    codebase text NOT NULL,
    branch_url text,
    suite suite_name NOT NULL,
    command text,
    priority bigint NOT NULL DEFAULT 0,
    context text,
    estimated_duration interval,
    refresh boolean DEFAULT false,
    requester text,
    change_set text,
    CONSTRAINT queue_codebase_fkey FOREIGN KEY (codebase) REFERENCES codebase (name) ON DELETE CASCADE,
    CONSTRAINT queue_change_set_fkey FOREIGN KEY (change_set)
        REFERENCES change_set (id) ON DELETE CASCADE,
    CONSTRAINT queue_command_check CHECK (command <> '')
);
CREATE UNIQUE INDEX queue_codebase_suite_set ON queue (codebase, suite, coalesce(change_set, ''));
CREATE INDEX queue_change_set_idx ON queue (change_set);
CREATE INDEX queue_priority_id_idx ON queue (priority, id);
CREATE INDEX queue_bucket_priority_id_idx ON queue (bucket, priority, id);
CREATE INDEX queue_bucket_idx ON queue (bucket);
CREATE INDEX queue_codebase_idx ON queue (codebase);
CREATE INDEX queue_suite_priority_id_idx ON queue (suite, priority, id);

CREATE TABLE branch_publish_policy (
    role text NOT NULL,
    mode publish_mode DEFAULT 'build-only',
    frequency_days integer,
    CONSTRAINT branch_publish_policy_role_key UNIQUE (role)
);

CREATE TABLE named_publish_policy (
    name text NOT NULL,
    per_branch_policy branch_publish_policy[],
    rate_limit_bucket text,
    CONSTRAINT named_publish_policy_pkey PRIMARY KEY (name)
);

CREATE TABLE candidate (
    suite suite_name NOT NULL,
    context text,
    value integer,
    success_chance double precision,
    command text NOT NULL,
    publish_policy text,
    change_set text,
    codebase text NOT NULL,
    id serial NOT NULL,
    CONSTRAINT candidate_pkey PRIMARY KEY (id),
    CONSTRAINT candidate_publish_policy_fkey FOREIGN KEY (publish_policy)
        REFERENCES named_publish_policy (name),
    CONSTRAINT candidate_change_set_fkey FOREIGN KEY (change_set)
        REFERENCES change_set (id) ON DELETE CASCADE,
    CONSTRAINT candidate_codebase_fkey FOREIGN KEY (codebase)
        REFERENCES codebase (name) ON DELETE CASCADE,
    CONSTRAINT candidate_command_check CHECK (command <> ''),
    CONSTRAINT candidate_value_check CHECK (value > 0)
);
CREATE UNIQUE INDEX candidate_codebase_suite_set
    ON candidate (codebase, suite, coalesce(change_set, ''));
CREATE INDEX candidate_suite_idx ON candidate (suite);
CREATE INDEX candidate_change_set_idx ON candidate (change_set);

CREATE TABLE last_run (
    codebase text NOT NULL,
    campaign campaign_name NOT NULL,
    last_run_id text,
    last_effective_run_id text,
    last_unabsorbed_run_id text,
    CONSTRAINT last_run_codebase_fkey FOREIGN KEY (codebase) REFERENCES codebase (name),
    CONSTRAINT last_run_last_run_id_fkey FOREIGN KEY (last_run_id) REFERENCES run (id),
    CONSTRAINT last_run_last_effective_run_id_fkey FOREIGN KEY (last_effective_run_id)
        REFERENCES run (id),
    CONSTRAINT last_run_last_unabsorbed_run_id_fkey FOREIGN KEY (last_unabsorbed_run_id)
        REFERENCES run (id),
    CONSTRAINT last_run_codebase_campaign_key UNIQUE (codebase, campaign)
);

CREATE TABLE new_result_branch (
    run_id text NOT NULL,
    role text NOT NULL,
    remote_name text,
    base_revision text,
    revision text,
    absorbed boolean DEFAULT false,
    CONSTRAINT new_result_branch_run_id_fkey FOREIGN KEY (run_id) REFERENCES run (id) ON DELETE CASCADE,
    CONSTRAINT new_result_branch_run_id_role_key UNIQUE (run_id, role)
);
CREATE INDEX new_result_branch_revision_idx ON new_result_branch (revision);
CREATE INDEX new_result_branch_absorbed_idx ON new_result_branch (absorbed);

CREATE TABLE review (
    run_id text NOT NULL,
    comment text,
    reviewer text,
    verdict verdict NOT NULL,
    reviewed_at timestamp NOT NULL DEFAULT now(),
    CONSTRAINT review_run_id_fkey FOREIGN KEY (run_id) REFERENCES run (id)
);
CREATE INDEX review_run_id_idx ON review (run_id);
CREATE UNIQUE INDEX review_run_id_reviewer_idx ON review (run_id, reviewer);

CREATE TABLE followup (
    origin text NOT NULL,
    candidate integer,
    CONSTRAINT followup_origin_fkey FOREIGN KEY (origin) REFERENCES run (id),
    CONSTRAINT followup_candidate_fkey FOREIGN KEY (candidate) REFERENCES candidate (id),
    CONSTRAINT followup_origin_candidate_key UNIQUE (origin, candidate)
);

CREATE TABLE site_session (
    id text NOT NULL,
    "timestamp" timestamp NOT NULL DEFAULT now(),
    userinfo json,
    CONSTRAINT site_session_pkey PRIMARY KEY (id)
);

CREATE TYPE result_branch_with_policy AS (
    role text,
    remote_name text,
    base_revision text,
    revision text,
    mode publish_mode,
    frequency_days integer
);

-- Views over the last run of each codebase/campaign pair (kept by triggers in last_run).
CREATE VIEW last_runs AS
    SELECT run.* FROM last_run JOIN run ON last_run.last_run_id = run.id;

CREATE VIEW last_effective_runs AS
    SELECT run.* FROM last_run JOIN run ON last_run.last_effective_run_id = run.id;

CREATE VIEW last_unabsorbed_runs AS
    SELECT run.* FROM last_run JOIN run ON last_run.last_unabsorbed_run_id = run.id;

CREATE VIEW change_set_todo AS
    SELECT * FROM candidate
    WHERE change_set IS NOT NULL
      AND NOT EXISTS (
          SELECT FROM last_effective_runs ler
          WHERE ler.change_set = candidate.change_set
            AND ler.codebase = candidate.codebase
            AND ler.suite = candidate.suite
            AND ler.result_code IN ('success', 'nothing-to-do'));

CREATE VIEW change_set_unpublished AS
    SELECT lur.change_set, lur.id, nrb.role
    FROM last_unabsorbed_runs lur
    JOIN new_result_branch nrb ON nrb.run_id = lur.id
    WHERE NOT coalesce(nrb.absorbed, false) AND lur.result_code = 'success';

CREATE VIEW campaigns AS SELECT DISTINCT suite AS name FROM run;

CREATE VIEW perpetual_candidates AS
    SELECT suite, codebase FROM candidate
    UNION
    SELECT suite, codebase FROM run;

CREATE VIEW first_run_time AS
    SELECT DISTINCT ON (run.codebase, run.suite) run.codebase, run.suite, run.start_time
    FROM run
    ORDER BY run.codebase, run.suite;

CREATE VIEW queue_positions AS
    SELECT
        id,
        codebase,
        suite,
        row_number() OVER w AS position,
        sum(estimated_duration) OVER w - coalesce(estimated_duration, interval '0') AS wait_time
    FROM queue
    WINDOW w AS (ORDER BY bucket, priority, id)
    ORDER BY bucket, priority, id;

CREATE VIEW publish_ready AS
WITH publishable AS (
    SELECT
        run.id AS id,
        run.command AS command,
        run.start_time AS start_time,
        run.finish_time AS finish_time,
        run.finish_time - run.start_time AS duration,
        run.description AS description,
        run.result_code AS result_code,
        run.main_branch_revision AS main_branch_revision,
        run.revision AS revision,
        run.context AS context,
        run.result AS result,
        run.suite AS suite,
        run.instigated_context AS instigated_context,
        run.vcs_type AS vcs_type,
        run.branch_url AS branch_url,
        run.logfilenames AS logfilenames,
        run.worker AS worker,
        ARRAY(
            SELECT ROW(nrb.role, nrb.remote_name, nrb.base_revision, nrb.revision)::result_branch
            FROM new_result_branch nrb
            WHERE nrb.run_id = run.id
        ) AS result_branches,
        run.result_tags AS result_tags,
        run.value AS value,
        candidate.command AS policy_command,
        named_publish_policy.name AS publish_policy_name,
        named_publish_policy.rate_limit_bucket AS rate_limit_bucket,
        run.publish_status AS publish_status,
        ARRAY(
            SELECT ROW(rb.role, rb.remote_name, rb.base_revision, rb.revision, pp.mode,
                       pp.frequency_days)::result_branch_with_policy
            FROM new_result_branch rb
            LEFT JOIN unnest(named_publish_policy.per_branch_policy) pp ON pp.role = rb.role
            WHERE rb.run_id = run.id AND NOT coalesce(rb.absorbed, false)
            ORDER BY rb.role <> 'main' DESC
        ) AS unpublished_branches,
        run.target_branch_url AS target_branch_url,
        run.change_set AS change_set,
        change_set.state AS change_set_state,
        run.failure_transient AS failure_transient,
        run.failure_stage AS failure_stage,
        run.codebase AS codebase
    FROM last_effective_runs run
    JOIN candidate ON candidate.codebase = run.codebase AND candidate.suite = run.suite
    JOIN named_publish_policy ON candidate.publish_policy = named_publish_policy.name
    JOIN change_set ON change_set.id = run.change_set
    WHERE run.result_code = 'success'
)
SELECT * FROM publishable WHERE array_length(unpublished_branches, 1) > 0;

CREATE VIEW absorbed_runs AS
    SELECT
        'propose' AS mode,
        run.change_set,
        run.codebase,
        merge_proposal.merged_at - run.finish_time AS delay,
        run.suite AS campaign,
        run.result::jsonb AS result,
        run.id,
        merge_proposal.merged_at AS absorbed_at,
        merge_proposal.merged_by,
        merge_proposal.url AS merge_proposal_url,
        run.revision
    FROM merge_proposal
    JOIN run ON merge_proposal.revision = run.revision
    WHERE run.result_code = 'success' AND run.suite NOT IN ('unchanged', 'control')
    UNION
    SELECT
        'push' AS mode,
        run.change_set,
        run.codebase,
        publish."timestamp" - run.finish_time AS delay,
        run.suite AS campaign,
        run.result::jsonb AS result,
        run.id,
        publish."timestamp" AS absorbed_at,
        NULL AS merged_by,
        NULL AS merge_proposal_url,
        run.revision
    FROM publish
    JOIN run ON publish.revision = run.revision
    WHERE publish.mode = 'push'
      AND run.result_code = 'success'
      AND publish.result_code = 'success'
      AND run.suite NOT IN ('unchanged', 'control');

-- Recompute last_run for one codebase/campaign pair.
CREATE FUNCTION refresh_last_run(_codebase text, _campaign text)
RETURNS void
LANGUAGE plpgsql
AS $body$
DECLARE
    latest record;
    effective record;
    effective_id text;
    effective_code text;
    unabsorbed_id text;
BEGIN
    SELECT id, result_code, failure_transient, resume_from INTO latest
    FROM run WHERE run.codebase = _codebase AND run.suite = _campaign
    ORDER BY start_time DESC LIMIT 1;
    IF NOT FOUND THEN
        DELETE FROM last_run WHERE codebase = _codebase AND campaign = _campaign;
        RETURN;
    END IF;

    IF latest.result_code = 'nothing-new-to-do' THEN
        -- Nothing changed since the run it resumed from: that one is still in effect.
        effective_id := latest.resume_from;
        effective_code := 'success';
    ELSIF latest.failure_transient IS TRUE THEN
        SELECT id, result_code INTO effective
        FROM run
        WHERE run.codebase = _codebase AND run.suite = _campaign
          AND result_code <> 'nothing-new-to-do' AND NOT coalesce(failure_transient, false)
        ORDER BY start_time DESC LIMIT 1;
        IF FOUND THEN
            effective_id := effective.id;
            effective_code := effective.result_code;
        ELSE
            effective_id := NULL;
            effective_code := NULL;
        END IF;
    ELSE
        effective_id := latest.id;
        effective_code := latest.result_code;
    END IF;

    IF effective_code = 'nothing-to-do' THEN
        unabsorbed_id := NULL;
    ELSIF effective_code <> 'success' THEN
        unabsorbed_id := effective_id;
    ELSIF EXISTS (SELECT FROM new_result_branch WHERE run_id = effective_id AND NOT absorbed) THEN
        unabsorbed_id := effective_id;
    ELSE
        unabsorbed_id := NULL;
    END IF;

    INSERT INTO last_run (codebase, campaign, last_run_id, last_effective_run_id, last_unabsorbed_run_id)
    VALUES (_codebase, _campaign, latest.id, effective_id, unabsorbed_id)
    ON CONFLICT (codebase, campaign) DO UPDATE SET
        last_run_id = EXCLUDED.last_run_id,
        last_effective_run_id = EXCLUDED.last_effective_run_id,
        last_unabsorbed_run_id = EXCLUDED.last_unabsorbed_run_id;
END;
$body$;

CREATE FUNCTION refresh_last_run(run_id text)
RETURNS void
LANGUAGE plpgsql
AS $body$
DECLARE
    pair record;
BEGIN
    SELECT codebase, suite INTO pair FROM run WHERE id = run_id;
    IF FOUND THEN
        PERFORM refresh_last_run(pair.codebase, pair.suite::text);
    END IF;
END;
$body$;

-- Advance a change set through created → working → ready → publishing → done.
CREATE FUNCTION refresh_change_set_state(change_set_id text)
RETURNS text
LANGUAGE plpgsql
AS $body$
DECLARE
    old_state change_set_state;
    new_state change_set_state;
BEGIN
    SELECT state INTO STRICT old_state FROM change_set WHERE id = change_set_id;
    new_state := old_state;
    IF new_state = 'created' AND EXISTS (SELECT FROM run WHERE change_set = change_set_id) THEN
        new_state := 'working';
    END IF;
    IF new_state = 'working'
       AND EXISTS (SELECT FROM run WHERE change_set = change_set_id AND result_code = 'success')
       AND NOT EXISTS (SELECT FROM change_set_todo WHERE change_set = change_set_id) THEN
        new_state := 'ready';
    END IF;
    IF new_state = 'ready'
       AND EXISTS (SELECT FROM publish WHERE result_code = 'success' AND change_set = change_set_id) THEN
        new_state := 'publishing';
    END IF;
    IF new_state = 'publishing'
       AND NOT EXISTS (SELECT FROM change_set_unpublished WHERE change_set = change_set_id) THEN
        new_state := 'done';
    END IF;
    IF new_state <> old_state THEN
        UPDATE change_set SET state = new_state WHERE id = change_set_id;
    END IF;
    RETURN new_state;
END;
$body$;

CREATE FUNCTION run_trigger_refresh_last_run()
RETURNS trigger
LANGUAGE plpgsql
AS $body$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM refresh_last_run(OLD.codebase, OLD.suite::text);
    ELSE
        PERFORM refresh_last_run(NEW.codebase, NEW.suite::text);
    END IF;
    RETURN NEW;
END;
$body$;

CREATE TRIGGER run_refresh_last_run
    AFTER INSERT OR UPDATE OR DELETE ON run
    FOR EACH ROW EXECUTE FUNCTION run_trigger_refresh_last_run();

CREATE FUNCTION run_trigger_refresh_change_set_state()
RETURNS trigger
LANGUAGE plpgsql
AS $body$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM refresh_change_set_state(OLD.change_set);
    ELSIF TG_OP = 'UPDATE' THEN
        PERFORM refresh_change_set_state(OLD.change_set);
        IF OLD.change_set <> NEW.change_set THEN
            PERFORM refresh_change_set_state(NEW.change_set);
        END IF;
    ELSE
        PERFORM refresh_change_set_state(NEW.change_set);
    END IF;
    RETURN NEW;
END;
$body$;

CREATE TRIGGER run_refresh_change_set_state
    AFTER INSERT OR UPDATE OR DELETE ON run
    FOR EACH ROW EXECUTE FUNCTION run_trigger_refresh_change_set_state();

-- Upstream reads OLD.run_id on INSERT, where OLD is NULL, so inserting an absorbed branch
-- fails. This body reads NEW; migration 20260101000003 installs it on adopted databases too.
CREATE FUNCTION new_result_branch_trigger_refresh_change_set_state()
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

CREATE TRIGGER new_result_branch_refresh_change_set_state
    AFTER INSERT OR UPDATE OR DELETE ON new_result_branch
    FOR EACH ROW EXECUTE FUNCTION new_result_branch_trigger_refresh_change_set_state();

CREATE FUNCTION new_result_branch_trigger_refresh_last_run()
RETURNS trigger
LANGUAGE plpgsql
AS $body$
BEGIN
    IF TG_OP = 'INSERT' AND NEW.absorbed THEN
        PERFORM refresh_last_run(NEW.run_id);
    ELSIF TG_OP = 'UPDATE' AND NEW.absorbed AND NOT OLD.absorbed THEN
        PERFORM refresh_last_run(NEW.run_id);
    ELSIF TG_OP = 'DELETE' AND OLD.absorbed THEN
        PERFORM refresh_last_run(OLD.run_id);
    END IF;
    RETURN NEW;
END;
$body$;

CREATE TRIGGER new_result_branch_refresh_last_run
    AFTER INSERT OR UPDATE OR DELETE ON new_result_branch
    FOR EACH ROW EXECUTE FUNCTION new_result_branch_trigger_refresh_last_run();

CREATE FUNCTION publish_trigger_refresh_change_set_state()
RETURNS trigger
LANGUAGE plpgsql
AS $body$
BEGIN
    IF OLD.result_code = 'success' AND OLD.change_set IS NOT NULL THEN
        PERFORM refresh_change_set_state(NEW.change_set);
        IF NEW.result_code = 'success' AND NEW.change_set IS NOT NULL THEN
            PERFORM refresh_change_set_state(NEW.change_set);
        END IF;
    ELSIF NEW.result_code = 'success' AND NEW.change_set IS NOT NULL THEN
        PERFORM refresh_change_set_state(NEW.change_set);
    END IF;
    RETURN NEW;
END;
$body$;

CREATE TRIGGER publish_refresh_change_set_state
    AFTER INSERT OR UPDATE ON publish
    FOR EACH ROW EXECUTE FUNCTION publish_trigger_refresh_change_set_state();

CREATE FUNCTION expire_site_session_delete_old_rows()
RETURNS trigger
LANGUAGE plpgsql
AS $body$
BEGIN
    DELETE FROM site_session WHERE "timestamp" < now() - interval '1 week';
    RETURN NEW;
END;
$body$;

CREATE TRIGGER expire_site_session_delete_old_rows_trigger
    AFTER INSERT ON site_session
    EXECUTE FUNCTION expire_site_session_delete_old_rows();
