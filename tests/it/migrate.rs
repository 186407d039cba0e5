//! Adopting an existing Janitor database keeps every row; migrating twice is a no-op; the
//! fixed trigger works.

use crate::common;

use sqlx::PgPool;

async fn count(pool: &PgPool, table: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
        .fetch_one(pool)
        .await
        .unwrap()
}

const SEED: &str = "
    INSERT INTO codebase (name, url, branch_url, value) VALUES
        ('alpha', 'https://x/alpha', 'https://x/alpha', 10), ('beta', 'https://x/beta', 'https://x/beta', 20);
    INSERT INTO change_set (id, campaign) VALUES ('cs1', 'lintian-fixes');
    INSERT INTO named_publish_policy (name) VALUES ('default');
    INSERT INTO candidate (suite, command, codebase, value, publish_policy) VALUES
        ('lintian-fixes', 'lintian-brush', 'alpha', 5, 'default');
    INSERT INTO worker (name, password) VALUES ('w1', crypt('secret', gen_salt('bf')));
    INSERT INTO run (id, command, start_time, finish_time, result_code, suite, logfilenames,
                     change_set, codebase, worker, revision)
        VALUES ('run-1', 'lintian-brush', '2026-01-01 10:00', '2026-01-01 10:05', 'success',
                'lintian-fixes', '{build.log}', 'cs1', 'alpha', 'w1', 'rev1');
    INSERT INTO debian_build (run_id, version, distribution, source)
        VALUES ('run-1', '1.0-1', 'lintian-fixes', 'alpha');
    INSERT INTO queue (codebase, suite, command, priority) VALUES ('beta', 'lintian-fixes', 'lintian-brush', 100);
";

#[tokio::test]
async fn adoption_keeps_every_row() {
    let Some(dir) = common::reference_dir() else {
        common::skip(
            "adoption: no reference schema at JANITOR_REFERENCE_SCHEMA_DIR or ../shared/reference",
        );
        return;
    };
    let db = common::empty_database().await;
    for file in ["state.sql", "debian.sql"] {
        let sql = std::fs::read_to_string(dir.join(file)).unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&db.pool)
            .await
            .unwrap();
    }
    sqlx::raw_sql(SEED).execute(&db.pool).await.unwrap();
    let tables = [
        "codebase",
        "change_set",
        "candidate",
        "worker",
        "run",
        "debian_build",
        "queue",
        "last_run",
    ];
    let mut before = Vec::new();
    for table in tables {
        before.push(count(&db.pool, table).await);
    }
    let report = janitor_runner::db::migrate(&db.pool).await.unwrap();
    assert_eq!(report.adopted.len(), 2);
    let mut after = Vec::new();
    for table in tables {
        after.push(count(&db.pool, table).await);
    }
    assert_eq!(before, after);
    assert_eq!(before[7], 1, "last_run is kept by the run trigger");
    // Idempotent.
    let again = janitor_runner::db::migrate(&db.pool).await.unwrap();
    assert!(again.adopted.is_empty());
    // The queue id is now unique.
    let duplicate = sqlx::query(
        "INSERT INTO queue (id, codebase, suite, command) SELECT id, 'alpha', 'lintian-fixes', 'x' FROM queue",
    )
    .execute(&db.pool)
    .await;
    assert!(duplicate.is_err(), "duplicate queue id accepted");
    // An absorbed result branch can be inserted (upstream's trigger read OLD here and failed).
    sqlx::query(
        "INSERT INTO new_result_branch (run_id, role, absorbed) VALUES ('run-1', 'main', true)",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    db.drop_now().await;
}

#[tokio::test]
async fn concurrent_start_ups_migrate_once() {
    let db = common::empty_database().await;
    let (a, b) = tokio::join!(
        janitor_runner::db::migrate(&db.pool),
        janitor_runner::db::migrate(&db.pool)
    );
    a.unwrap();
    b.unwrap();
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM runner_schema_migrations")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        applied as usize,
        janitor_runner::db::migrate::migrator().iter().count()
    );
    db.drop_now().await;
}
