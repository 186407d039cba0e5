//! The migrations produce the reference Janitor schema: on a fresh database, and when adopting
//! a database that already holds it. Catalogs are compared object by object; the only allowed
//! differences are the declared additive ones (anything named `runner_*`).

use crate::common;

use std::collections::BTreeSet;

use sqlx::{PgPool, Row};

/// Additions the project declares: its own tables, indexes and bookkeeping.
fn is_declared_addition(name: &str) -> bool {
    name.starts_with("runner_")
}

async fn rows(pool: &PgPool, sql: &'static str) -> BTreeSet<String> {
    sqlx::query(sql)
        .fetch_all(pool)
        .await
        .unwrap_or_else(|e| panic!("catalog query failed: {e}\n{sql}"))
        .into_iter()
        .filter(|row| !is_declared_addition(row.get::<String, _>(0).as_str()))
        .map(|row| {
            (0..row.len())
                .map(|i| {
                    row.get::<Option<String>, _>(i)
                        .unwrap_or_else(|| "∅".into())
                })
                .collect::<Vec<_>>()
                .join(" | ")
        })
        .collect()
}

/// Everything about the public schema that clients can observe, as comparable lines.
async fn catalog(pool: &PgPool) -> Vec<(&'static str, BTreeSet<String>)> {
    let queries: [(&'static str, &'static str); 10] = [
        (
            "extensions",
            "SELECT extname::text FROM pg_extension WHERE extname <> 'plpgsql'",
        ),
        (
            "relations",
            "SELECT c.relname::text, c.relkind::text FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v', 'm', 'S', 'c', 'p')
               AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'e')",
        ),
        (
            "columns",
            "SELECT c.relname::text, a.attnum::text, a.attname::text,
                    format_type(a.atttypid, a.atttypmod), a.attnotnull::text,
                    pg_get_expr(ad.adbin, ad.adrelid), a.attgenerated::text
             FROM pg_attribute a
             JOIN pg_class c ON c.oid = a.attrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
             WHERE n.nspname = 'public' AND a.attnum > 0 AND NOT a.attisdropped
               AND c.relkind IN ('r', 'v', 'm', 'c', 'p')
               AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'e')",
        ),
        (
            "enum labels",
            "SELECT t.typname::text, e.enumsortorder::text, e.enumlabel::text FROM pg_enum e
             JOIN pg_type t ON t.oid = e.enumtypid
             JOIN pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname = 'public'",
        ),
        (
            "domains",
            "SELECT t.typname::text, format_type(t.typbasetype, t.typtypmod), con.conname::text,
                    pg_get_constraintdef(con.oid)
             FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
             LEFT JOIN pg_constraint con ON con.contypid = t.oid
             WHERE n.nspname = 'public' AND t.typtype = 'd'",
        ),
        (
            "constraints",
            "SELECT con.conname::text, c.relname::text, con.contype::text,
                    pg_get_constraintdef(con.oid)
             FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'",
        ),
        (
            "indexes (definitions, names aside)",
            "SELECT indexname::text,
                    regexp_replace(indexdef, 'INDEX \\S+ ON', 'INDEX ON')
             FROM pg_indexes WHERE schemaname = 'public'",
        ),
        (
            "functions",
            "SELECT p.proname::text, pg_get_function_identity_arguments(p.oid),
                    pg_get_function_result(p.oid), l.lanname::text
             FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
             JOIN pg_language l ON l.oid = p.prolang
             WHERE n.nspname = 'public'
               AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')",
        ),
        (
            "triggers",
            "SELECT t.tgname::text, c.relname::text, pg_get_triggerdef(t.oid)
             FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'public' AND NOT t.tgisinternal",
        ),
        (
            "composite types",
            "SELECT t.typname::text, t.typtype::text FROM pg_type t
             JOIN pg_namespace n ON n.oid = t.typnamespace
             WHERE n.nspname = 'public' AND t.typtype IN ('c', 'e', 'd')
               AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.objid = t.oid AND d.deptype = 'e')
               AND (t.typrelid = 0 OR (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')",
        ),
    ];
    let mut out = Vec::new();
    for (what, sql) in queries {
        let mut found = rows(pool, sql).await;
        if what.starts_with("indexes") {
            // Duplicate upstream indexes differ only in name; compare definitions as a set.
            found = found
                .into_iter()
                .filter_map(|line| line.split_once(" | ").map(|(_, def)| def.to_string()))
                .collect();
        }
        out.push((what, found));
    }
    out
}

fn differences(
    reference: &[(&'static str, BTreeSet<String>)],
    ours: &[(&'static str, BTreeSet<String>)],
) -> Vec<String> {
    let mut problems = Vec::new();
    for ((what, expected), (_, actual)) in reference.iter().zip(ours) {
        for missing in expected.difference(actual) {
            problems.push(format!("{what}: missing  {missing}"));
        }
        for extra in actual.difference(expected) {
            problems.push(format!("{what}: extra    {extra}"));
        }
    }
    problems
}

async fn load_reference(pool: &PgPool, dir: &std::path::Path) {
    for file in ["state.sql", "debian.sql"] {
        let sql = std::fs::read_to_string(dir.join(file)).expect("read reference schema");
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(pool)
            .await
            .unwrap_or_else(|e| panic!("loading reference {file}: {e}"));
    }
}

#[tokio::test]
async fn migrations_match_the_reference_schema() {
    let Some(dir) = common::reference_dir() else {
        common::skip(
            "schema compatibility: no reference schema at JANITOR_REFERENCE_SCHEMA_DIR or \
             ../shared/reference",
        );
        return;
    };
    let reference = common::empty_database().await;
    load_reference(&reference.pool, &dir).await;
    let expected = catalog(&reference.pool).await;
    assert!(
        expected[1].1.len() > 20,
        "reference schema did not load: {:?}",
        expected[1]
    );

    let fresh = common::empty_database().await;
    let report = janitor_runner::db::migrate(&fresh.pool)
        .await
        .expect("migrate fresh");
    assert!(report.adopted.is_empty());
    let problems = differences(&expected, &catalog(&fresh.pool).await);
    assert!(
        problems.is_empty(),
        "fresh database differs from the reference:\n{}",
        problems.join("\n")
    );

    let adopted = common::empty_database().await;
    load_reference(&adopted.pool, &dir).await;
    let report = janitor_runner::db::migrate(&adopted.pool)
        .await
        .expect("migrate adopted");
    assert_eq!(report.adopted, vec![20260101000001, 20260101000002]);
    let problems = differences(&expected, &catalog(&adopted.pool).await);
    assert!(
        problems.is_empty(),
        "adopted database differs from the reference:\n{}",
        problems.join("\n")
    );

    // The additive changes are there in both.
    for db in [&fresh, &adopted] {
        let additions: Vec<String> = sqlx::query_scalar(
            "SELECT relname::text FROM pg_class WHERE relname LIKE 'runner\\_%' ORDER BY 1",
        )
        .fetch_all(&db.pool)
        .await
        .unwrap();
        for name in [
            "runner_active_run",
            "runner_queue_id_key",
            "runner_rate_limited_host",
            "runner_schema_migrations",
        ] {
            assert!(
                additions.iter().any(|a| a == name),
                "{name} missing in {additions:?}"
            );
        }
    }
    for db in [reference, fresh, adopted] {
        db.drop_now().await;
    }
}
