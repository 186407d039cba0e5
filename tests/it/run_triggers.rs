//! The `run` triggers' insert path (migration 20260101000008) writes the rows upstream's
//! bodies write. Two databases take the same pseudo-random history of runs, result branches,
//! publishes and change-set states: one with the runner's bodies, one with upstream's (which
//! hand every row to `refresh_change_set_state` and `refresh_last_run`). After every step
//! `last_run` and the change sets' states must agree.

use crate::common;

use sqlx::PgPool;

/// The schema's own migration, whose trigger bodies are upstream's.
const SCHEMA: &str = include_str!("../../migrations/20260101000001_janitor_state.sql");

/// Upstream's body of the trigger function `name` (each row re-derived by the shared
/// functions), as migration 1 creates it, to put back over migration 8's.
fn upstream_body(name: &str) -> String {
    let start = SCHEMA
        .find(&format!("CREATE FUNCTION {name}()"))
        .unwrap_or_else(|| panic!("migration 1 creates {name}"));
    let length = SCHEMA[start..]
        .find("$body$;")
        .expect("the function's body ends")
        + "$body$;".len();
    SCHEMA[start..start + length].replacen("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)
}

const SEED: &str = "
    INSERT INTO codebase (name, url, branch_url) VALUES
        ('alpha', 'https://x/alpha', 'https://x/alpha'),
        ('beta', 'https://x/beta', 'https://x/beta'),
        ('gamma', 'https://x/gamma', 'https://x/gamma');
    INSERT INTO change_set (id, campaign)
        SELECT 'cs' || i, 'lintian-fixes' FROM generate_series(0, 5) AS i;
    INSERT INTO named_publish_policy (name) VALUES ('default');
    -- Candidates in some change sets, so that `change_set_todo` has rows to look at.
    INSERT INTO candidate (suite, command, codebase, publish_policy, change_set) VALUES
        ('lintian-fixes', 'fix', 'alpha', 'default', 'cs0'),
        ('lintian-fixes', 'fix', 'beta', 'default', 'cs0'),
        ('lintian-fixes', 'fix', 'alpha', 'default', 'cs1'),
        ('unchanged', 'fix', 'gamma', 'default', 'cs2');
";

const CODEBASES: [&str; 3] = ["alpha", "beta", "gamma"];
const CAMPAIGNS: [&str; 2] = ["lintian-fixes", "unchanged"];
const RESULT_CODES: [&str; 6] = [
    "success",
    "success",
    "nothing-to-do",
    "build-failed",
    "nothing-new-to-do",
    "success",
];
const STATES: [&str; 5] = ["created", "working", "ready", "publishing", "done"];

/// A small deterministic generator: both databases must see the same history.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// What both databases hold that the triggers write.
async fn derived_rows(pool: &PgPool) -> Vec<String> {
    let mut rows: Vec<String> = sqlx::query_scalar(
        "SELECT format('last_run %s/%s: %s %s %s', codebase, campaign, last_run_id,
                       last_effective_run_id, last_unabsorbed_run_id)
         FROM last_run ORDER BY codebase, campaign",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    rows.extend(
        sqlx::query_scalar::<_, String>(
            "SELECT format('change_set %s: %s', id, state) FROM change_set ORDER BY id",
        )
        .fetch_all(pool)
        .await
        .unwrap(),
    );
    rows
}

/// One step of the history, as SQL run on both databases.
fn next_step(rng: &mut Lcg, step: usize, runs: &mut Vec<String>) -> String {
    let change_set = format!("cs{}", rng.below(6));
    match rng.below(20) {
        0..=13 => {
            let id = format!("run-{step}");
            let codebase = rng.pick(&CODEBASES);
            let campaign = rng.pick(&CAMPAIGNS);
            let mut code = rng.pick(&RESULT_CODES);
            let resume_from = if code == "nothing-new-to-do" {
                match runs.len() {
                    0 => {
                        code = "success";
                        "NULL".to_string()
                    }
                    n => format!("'{}'", runs[rng.below(n)]),
                }
            } else {
                "NULL".to_string()
            };
            let transient = ["NULL", "true", "false"][rng.below(3)];
            // Start times arrive out of order. They never tie: with ties the latest run is
            // whichever the plan meets first, for upstream's bodies as for these.
            let minute = rng.below(40);
            let branches = match rng.below(4) {
                0 => "",
                1 => "('main', false)",
                2 => "('main', true)",
                _ => "('main', NULL), ('debian', false)",
            };
            runs.push(id.clone());
            let run = format!(
                "INSERT INTO run (id, command, result_code, start_time, finish_time, suite,
                                  change_set, codebase, logfilenames, failure_transient,
                                  resume_from)
                 VALUES ('{id}', 'fix', '{code}', timestamp '2026-01-01' + interval '{minute} minutes {step} microseconds',
                         timestamp '2026-01-01 01:00', '{campaign}', '{change_set}', '{codebase}',
                         '{{}}', {transient}, {resume_from})
                 RETURNING id"
            );
            if branches.is_empty() {
                run
            } else {
                // In the run's own statement, so that its triggers already see the branches.
                format!(
                    "WITH stored AS ({run})
                     INSERT INTO new_result_branch (run_id, role, absorbed)
                     SELECT stored.id, b.role, b.absorbed FROM stored,
                         (VALUES {branches}) AS b (role, absorbed)"
                )
            }
        }
        14 | 15 => {
            let code = ["success", "differ-unreachable"][rng.below(2)];
            format!(
                "INSERT INTO publish (id, change_set, target_branch_url, mode, result_code)
                 VALUES ('pub-{step}', '{change_set}', 'https://x/t', 'propose', '{code}')"
            )
        }
        16 | 17 => format!(
            "UPDATE change_set SET state = '{}' WHERE id = '{change_set}'",
            rng.pick(&STATES)
        ),
        18 if !runs.is_empty() => {
            let run = &runs[rng.below(runs.len())];
            format!(
                "UPDATE new_result_branch SET absorbed = NOT coalesce(absorbed, false) WHERE run_id = '{run}'"
            )
        }
        _ if !runs.is_empty() => {
            let run = &runs[rng.below(runs.len())];
            let code = rng.pick(&RESULT_CODES[..4]);
            format!("UPDATE run SET result_code = '{code}' WHERE id = '{run}'")
        }
        _ => "SELECT 1".to_string(),
    }
}

#[tokio::test]
async fn insert_path_writes_the_rows_upstream_bodies_write() {
    let ours = common::migrated_database().await;
    let upstream = common::migrated_database().await;
    for db in [&ours, &upstream] {
        sqlx::raw_sql(SEED).execute(&db.pool).await.unwrap();
    }
    for name in [
        "run_trigger_refresh_last_run",
        "run_trigger_refresh_change_set_state",
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(upstream_body(name)))
            .execute(&upstream.pool)
            .await
            .unwrap();
    }
    let mut runs = Vec::new();
    // The states the insert path moved a change set into.
    let mut reached = std::collections::BTreeSet::new();
    for seed in [1_u64, 7, 2026] {
        let mut rng = Lcg(seed);
        for step in 0..300 {
            let statement = next_step(&mut rng, step + 1000 * seed as usize, &mut runs);
            let before = derived_rows(&ours.pool).await;
            let mut outcomes = Vec::new();
            for db in [&ours, &upstream] {
                let outcome = sqlx::raw_sql(sqlx::AssertSqlSafe(statement.clone()))
                    .execute(&db.pool)
                    .await
                    .map(|done| done.rows_affected())
                    .map_err(|e| e.to_string());
                outcomes.push(outcome);
            }
            assert_eq!(outcomes[0], outcomes[1], "outcome of {statement}");
            let (a, b) = (
                derived_rows(&ours.pool).await,
                derived_rows(&upstream.pool).await,
            );
            assert_eq!(a, b, "after {statement}");
            if statement.contains("INSERT INTO run") {
                reached.extend(
                    a.into_iter()
                        .filter(|row| row.starts_with("change_set") && !before.contains(row))
                        .filter_map(|row| row.rsplit(' ').next().map(str::to_string)),
                );
            }
        }
    }
    // Stored runs moved change sets into every state past `created`.
    for state in &STATES[1..] {
        assert!(
            reached.contains(*state),
            "no stored run moved a change set to {state}: {reached:?}"
        );
    }
    let distinct_effective: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM last_run WHERE last_effective_run_id IS DISTINCT FROM last_run_id",
    )
    .fetch_one(&ours.pool)
    .await
    .unwrap();
    assert!(
        distinct_effective > 0,
        "the history never made a transient or resumed run the latest"
    );
    ours.drop_now().await;
    upstream.drop_now().await;
}
