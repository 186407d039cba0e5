//! One behaviour suite for the active-run store, run against PostgreSQL, the mirrored store
//! and Redis; then what the mirrored store keeps when Redis loses everything.

use crate::common;

use std::sync::Arc;

use chrono::TimeDelta;
use janitor_runner::clock::SystemClock;
use janitor_runner::models::{ActiveRun, BackchannelInfo, QueueItem, VcsInfo};
use janitor_runner::state::{
    ActiveRunStore, MirroredStore, PostgresStore, RedisKeys, RedisStore, StoreError,
};
use serde_json::Value;
use tokio::sync::Barrier;

fn run(id: &str, queue_id: i64) -> ActiveRun {
    let item = QueueItem {
        id: queue_id,
        context: None,
        command: "lintian-brush".into(),
        estimated_duration: Some(TimeDelta::seconds(30)),
        campaign: "lintian-fixes".into(),
        refresh: false,
        requester: None,
        change_set: None,
        codebase: "alpha".into(),
    };
    ActiveRun::from_queue_item(
        &item,
        id.into(),
        common::fixed_now(),
        VcsInfo::default(),
        BackchannelInfo::Polling {
            my_url: "http://worker:8080/".into(),
        },
        Some("worker-1".into()),
        None,
    )
}

fn data(run: &ActiveRun) -> Value {
    run.to_json(common::fixed_now())
}

async fn registers_reads_and_releases(store: &dyn ActiveRunStore) {
    let now = common::fixed_now();
    let first = run("run-a", 1);
    store
        .register_run("run-a", 1, &data(&first), now)
        .await
        .unwrap();
    store
        .register_run("run-b", 2, &data(&run("run-b", 2)), now)
        .await
        .unwrap();
    assert_eq!(store.active_run_count().await.unwrap(), 2);
    let mut ids = store.assigned_queue_ids().await.unwrap();
    ids.sort();
    assert_eq!(ids, vec![1, 2]);
    let stored = store.get_run("run-a").await.unwrap().unwrap();
    assert_eq!(ActiveRun::from_json(&stored).unwrap(), first);
    // Stored text keeps the Python key order.
    let keys: Vec<&String> = stored.as_object().unwrap().keys().collect();
    assert_eq!(keys.first().map(|k| k.as_str()), Some("queue_id"));
    assert_eq!(store.last_keepalive("run-a").await.unwrap(), Some(now));
    let listed = store.list_runs().await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|r| r.last_keepalive == Some(now)));

    let removed = store.unclaim_run("run-a").await.unwrap().unwrap();
    assert_eq!(removed["id"], "run-a");
    assert_eq!(store.get_run("run-a").await.unwrap(), None);
    assert_eq!(store.last_keepalive("run-a").await.unwrap(), None);
    assert_eq!(store.assigned_queue_ids().await.unwrap(), vec![2]);
    assert_eq!(store.unclaim_run("run-a").await.unwrap(), None);
    assert_eq!(store.unclaim_run("never-was").await.unwrap(), None);
    // The released item can be claimed again.
    store
        .register_run("run-c", 1, &data(&run("run-c", 1)), now)
        .await
        .unwrap();
    assert_eq!(store.active_run_count().await.unwrap(), 2);
}

async fn refuses_a_second_claim(store: &dyn ActiveRunStore) {
    let now = common::fixed_now();
    store
        .register_run("run-a", 7, &data(&run("run-a", 7)), now)
        .await
        .unwrap();
    match store
        .register_run("run-b", 7, &data(&run("run-b", 7)), now)
        .await
    {
        Err(StoreError::AlreadyClaimed { queue_id, run_id }) => {
            assert_eq!((queue_id, run_id.as_str()), (7, "run-a"));
        }
        other => panic!("expected AlreadyClaimed, got {other:?}"),
    }
    assert_eq!(store.get_run("run-b").await.unwrap(), None);
    assert_eq!(store.active_run_count().await.unwrap(), 1);
}

async fn one_winner_under_contention(store: Arc<dyn ActiveRunStore>) {
    let contenders = 32;
    let barrier = Arc::new(Barrier::new(contenders));
    let mut tasks = Vec::new();
    for i in 0..contenders {
        let store = store.clone();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            let id = format!("run-{i}");
            let js = data(&run(&id, 99));
            barrier.wait().await;
            store.register_run(&id, 99, &js, common::fixed_now()).await
        }));
    }
    let mut winners = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => winners += 1,
            Err(StoreError::AlreadyClaimed { queue_id: 99, .. }) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(winners, 1);
    assert_eq!(store.active_run_count().await.unwrap(), 1);
    assert_eq!(store.assigned_queue_ids().await.unwrap(), vec![99]);
}

async fn updates_only_registered_runs(store: &dyn ActiveRunStore) {
    let now = common::fixed_now();
    let mut active = run("run-a", 3);
    store
        .register_run("run-a", 3, &data(&active), now)
        .await
        .unwrap();
    active.resume_from = Some("run-0".into());
    store.update_run("run-a", &data(&active)).await.unwrap();
    let stored = store.get_run("run-a").await.unwrap().unwrap();
    assert_eq!(stored["resume_from"], "run-0");
    store.unclaim_run("run-a").await.unwrap();
    store.update_run("run-a", &data(&active)).await.unwrap();
    assert_eq!(
        store.get_run("run-a").await.unwrap(),
        None,
        "update resurrected a run"
    );
}

async fn tracks_keepalives(store: &dyn ActiveRunStore) {
    let now = common::fixed_now();
    store
        .register_run("run-a", 4, &data(&run("run-a", 4)), now)
        .await
        .unwrap();
    let later = now + TimeDelta::microseconds(90_000_123);
    store.keepalive("run-a", later).await.unwrap();
    assert_eq!(store.last_keepalive("run-a").await.unwrap(), Some(later));
    let listed = store.list_runs().await.unwrap();
    assert_eq!(listed[0].last_keepalive, Some(later));
    // A keep-alive that arrives after its run finished leaves nothing behind.
    store.unclaim_run("run-a").await.unwrap();
    store.keepalive("run-a", later).await.unwrap();
    assert_eq!(store.last_keepalive("run-a").await.unwrap(), None);
}

/// One holder at a time per run; a released lease can be taken; a holder that vanishes
/// without giving its leases back does not block the run for ever.
async fn leases_runs_to_one_holder(store: &dyn ActiveRunStore) {
    use std::time::Duration;
    let ttl = Duration::from_millis(300);
    let first = store.run_leases("process-1", ttl).await.unwrap();
    let second = store.run_leases("process-2", ttl).await.unwrap();
    assert!(first.try_acquire("run-a").await.unwrap());
    assert!(!second.try_acquire("run-a").await.unwrap());
    assert!(second.try_acquire("run-b").await.unwrap());
    assert!(!first.try_acquire("run-b").await.unwrap());
    // Releasing someone else's lease does nothing.
    second.release("run-a").await.unwrap();
    assert!(!second.try_acquire("run-a").await.unwrap());
    first.release("run-a").await.unwrap();
    assert!(second.try_acquire("run-a").await.unwrap());
    second.finish().await.unwrap();
    // The first holder dies holding run-c (dropped without finish).
    assert!(first.try_acquire("run-c").await.unwrap());
    drop(first);
    let third = store.run_leases("process-3", ttl).await.unwrap();
    let mut taken = false;
    for _ in 0..50 {
        if third.try_acquire("run-c").await.unwrap() {
            taken = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(taken, "a dead holder's lease ends");
    third.finish().await.unwrap();
}

async fn rate_limits_hosts(store: &dyn ActiveRunStore) {
    let now = common::fixed_now();
    store
        .rate_limit_host("salsa.debian.org", now + TimeDelta::seconds(120))
        .await
        .unwrap();
    store
        .rate_limit_host("github.com", now - TimeDelta::seconds(1))
        .await
        .unwrap();
    assert_eq!(
        store.rate_limited_hosts(now).await.unwrap(),
        vec![(
            "salsa.debian.org".to_string(),
            now + TimeDelta::seconds(120)
        )]
    );
    store
        .rate_limit_host("github.com", now + TimeDelta::seconds(5))
        .await
        .unwrap();
    let mut hosts = store.rate_limited_hosts(now).await.unwrap();
    hosts.sort();
    assert_eq!(hosts.len(), 2);
    // Read together, as an assignment reads them: the same claims and hosts.
    store
        .register_run("run-a", 5, &data(&run("run-a", 5)), now)
        .await
        .unwrap();
    let (claims, mut together) = store.claims_and_rate_limits(now).await.unwrap();
    together.sort();
    assert_eq!((claims, together), (vec![5], hosts));
    assert!(
        store
            .rate_limited_hosts(now + TimeDelta::seconds(600))
            .await
            .unwrap()
            .is_empty()
    );
}

macro_rules! suite {
    ($($case:ident),* $(,)?) => {
        mod postgres {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let db = common::migrated_database().await;
                    let store: Arc<dyn ActiveRunStore> = Arc::new(PostgresStore::new(db.pool.clone()));
                    super::run_case(stringify!($case), store).await;
                    db.drop_now().await;
                }
            )*
        }
        mod mirrored {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let db = common::migrated_database().await;
                    let prefix = common::redis_prefix();
                    let store = super::mirrored_store(&db, &prefix).await;
                    super::run_case(stringify!($case), Arc::new(store.clone())).await;
                    // Whatever the case left, the copy equals PostgreSQL once written.
                    store.flush().await;
                    super::assert_copy_matches(&store, &prefix).await;
                    common::clear_prefix(&prefix).await;
                    db.drop_now().await;
                }
            )*
        }
        mod redis {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let prefix = common::redis_prefix();
                    let conn = janitor_runner::app::connect_redis(&common::redis_url()).await.unwrap();
                    let store: Arc<dyn ActiveRunStore> =
                        Arc::new(RedisStore::new(conn, RedisKeys::with_prefix(&prefix)));
                    super::run_case(stringify!($case), store).await;
                    common::clear_prefix(&prefix).await;
                }
            )*
        }
    };
}

async fn run_case(case: &str, store: Arc<dyn ActiveRunStore>) {
    match case {
        "registers_reads_and_releases" => registers_reads_and_releases(store.as_ref()).await,
        "refuses_a_second_claim" => refuses_a_second_claim(store.as_ref()).await,
        "one_winner_under_contention" => one_winner_under_contention(store).await,
        "updates_only_registered_runs" => updates_only_registered_runs(store.as_ref()).await,
        "tracks_keepalives" => tracks_keepalives(store.as_ref()).await,
        "rate_limits_hosts" => rate_limits_hosts(store.as_ref()).await,
        "leases_runs_to_one_holder" => leases_runs_to_one_holder(store.as_ref()).await,
        other => panic!("no case {other}"),
    }
}

suite!(
    registers_reads_and_releases,
    refuses_a_second_claim,
    one_winner_under_contention,
    updates_only_registered_runs,
    tracks_keepalives,
    rate_limits_hosts,
    leases_runs_to_one_holder,
);

/// The Redis layout is the Python runner's, field for field.
#[tokio::test]
async fn redis_layout_matches_the_python_runner() {
    let prefix = common::redis_prefix();
    let conn = janitor_runner::app::connect_redis(&common::redis_url())
        .await
        .unwrap();
    let store = RedisStore::new(conn.clone(), RedisKeys::with_prefix(&prefix));
    let now = common::fixed_now() + TimeDelta::microseconds(250);
    let active = run("3f1c0e57-0000-4000-8000-000000000001", 42);
    store
        .register_run(&active.log_id, 42, &data(&active), now)
        .await
        .unwrap();
    let mut raw = conn.clone();
    let holder: String = ::redis::cmd("HGET")
        .arg(format!("{prefix}assigned-queue-items"))
        .arg("42")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(holder, active.log_id);
    let keepalive: String = ::redis::cmd("HGET")
        .arg(format!("{prefix}last-keepalive"))
        .arg(&active.log_id)
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(keepalive, "2026-11-23T12:00:00.000250");
    let stored: String = ::redis::cmd("HGET")
        .arg(format!("{prefix}active-runs"))
        .arg(&active.log_id)
        .query_async(&mut raw)
        .await
        .unwrap();
    let js: Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(
        js["backchannel"],
        serde_json::json!({"my_url": "http://worker:8080/"})
    );
    // An entry written by the Python runner (different spacing, extra precision) reads back.
    let python_written = r#"{"queue_id": 43, "id": "py-run", "codebase": "beta", "change_set": null, "campaign": "lintian-fixes", "command": "lintian-brush", "estimated_duration": null, "current_duration": 0.5, "start_time": "2026-11-23T11:00:00.123456", "worker": null, "worker_link": null, "vcs": {}, "backchannel": {}, "instigated_context": null, "resume_from": null}"#;
    let _: () = ::redis::cmd("HSET")
        .arg(format!("{prefix}active-runs"))
        .arg("py-run")
        .arg(python_written)
        .query_async(&mut raw)
        .await
        .unwrap();
    let back = store.get_run("py-run").await.unwrap().unwrap();
    let parsed = ActiveRun::from_json(&back).unwrap();
    assert_eq!(parsed.codebase(), "beta");
    assert_eq!(parsed.backchannel, BackchannelInfo::None);
    common::clear_prefix(&prefix).await;
}

/// Releasing a run reads its queue id from the run's own JSON (as another runner wrote it),
/// frees only a claim the run still holds, and leaves a run without a queue id in place.
#[tokio::test]
async fn redis_release_reads_the_queue_id_from_the_stored_run() {
    let prefix = common::redis_prefix();
    let conn = janitor_runner::app::connect_redis(&common::redis_url())
        .await
        .unwrap();
    let store = RedisStore::new(conn.clone(), RedisKeys::with_prefix(&prefix));
    let mut raw = conn.clone();
    let hset = |key: &str, field: &str, value: &str| {
        ::redis::cmd("HSET")
            .arg(format!("{prefix}{key}"))
            .arg(field)
            .arg(value)
            .clone()
    };
    for command in [
        hset(
            "active-runs",
            "py-run",
            r#"{"queue_id": 4300000, "id": "py-run"}"#,
        ),
        hset("assigned-queue-items", "4300000", "py-run"),
        hset("last-keepalive", "py-run", "2026-11-23T11:00:00"),
        // A late release: the item is held by another run now.
        hset("active-runs", "late", r#"{"queue_id":44,"id":"late"}"#),
        hset("assigned-queue-items", "44", "newer"),
        hset("active-runs", "broken", r#"{"id": "broken"}"#),
    ] {
        let _: () = command.query_async(&mut raw).await.unwrap();
    }
    let removed = store.unclaim_run("py-run").await.unwrap().unwrap();
    assert_eq!(removed["queue_id"], 4_300_000);
    assert_eq!(store.last_keepalive("py-run").await.unwrap(), None);
    assert_eq!(store.get_run("py-run").await.unwrap(), None);
    assert!(store.unclaim_run("late").await.unwrap().is_some());
    assert_eq!(store.assigned_queue_ids().await.unwrap(), vec![44]);
    match store.unclaim_run("broken").await {
        Err(StoreError::InvalidData(_)) => {}
        other => panic!("expected InvalidData, got {other:?}"),
    }
    assert!(store.get_run("broken").await.unwrap().is_some());
    common::clear_prefix(&prefix).await;
}

async fn mirrored_store(db: &common::TestDb, prefix: &str) -> MirroredStore {
    let conn = janitor_runner::app::connect_redis(&common::redis_url())
        .await
        .unwrap();
    MirroredStore::spawn(
        PostgresStore::new(db.pool.clone()),
        conn,
        RedisKeys::with_prefix(prefix),
        Arc::new(SystemClock),
    )
}

/// The Redis copy holds exactly the runs, claims and keep-alives PostgreSQL holds, in the
/// Python runner's encodings.
async fn assert_copy_matches(store: &MirroredStore, prefix: &str) {
    let runs = store.list_runs().await.unwrap();
    let copied_runs = common::redis_hash(prefix, "active-runs").await;
    let copied_claims = common::redis_hash(prefix, "assigned-queue-items").await;
    let copied_keepalives = common::redis_hash(prefix, "last-keepalive").await;
    assert_eq!(
        copied_runs.len(),
        runs.len(),
        "runs in the copy: {copied_runs:?}"
    );
    assert_eq!(
        copied_claims.len(),
        runs.len(),
        "claims in the copy: {copied_claims:?}"
    );
    for run in &runs {
        let copied: Value = serde_json::from_str(&copied_runs[&run.id]).unwrap();
        assert_eq!(copied, run.data);
        let queue_id = run.data["queue_id"].as_i64().unwrap().to_string();
        assert_eq!(copied_claims[&queue_id], run.id);
        assert_eq!(
            copied_keepalives.get(&run.id),
            run.last_keepalive
                .map(|at| janitor_runner::time::isoformat(&at))
                .as_ref()
        );
    }
}

/// Redis restarting empty (its keys gone) loses no claim: PostgreSQL still refuses a second
/// claim of each held item, and the copy is rebuilt, rate limits included, without a call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_is_rebuilt_after_redis_loses_everything() {
    let db = common::migrated_database().await;
    let prefix = common::redis_prefix();
    let store = mirrored_store(&db, &prefix).await;
    let now = common::fixed_now();
    for queue_id in 1..=3 {
        let active = run(&format!("run-{queue_id}"), queue_id);
        store
            .register_run(&active.log_id, queue_id, &data(&active), now)
            .await
            .unwrap();
    }
    let until = chrono::Utc::now().naive_utc() + TimeDelta::hours(1);
    store
        .rate_limit_host("forge.example.org", until)
        .await
        .unwrap();
    store.flush().await;
    assert_copy_matches(&store, &prefix).await;

    common::clear_prefix(&prefix).await;
    for queue_id in 1..=3 {
        let late = run(&format!("late-{queue_id}"), queue_id);
        let refused = store
            .register_run(&late.log_id, queue_id, &data(&late), now)
            .await;
        assert!(
            matches!(refused, Err(StoreError::AlreadyClaimed { ref run_id, .. }) if *run_id == format!("run-{queue_id}")),
            "{refused:?}"
        );
    }
    assert_eq!(store.active_run_count().await.unwrap(), 3);
    // Rebuilt by the periodic check, not by a write of this test.
    let deadline = std::time::Instant::now() + janitor_runner::state::MIRROR_CHECK_INTERVAL * 5;
    while common::redis_hash(&prefix, "active-runs").await.len() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "the copy was not rebuilt"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    store.flush().await;
    assert_copy_matches(&store, &prefix).await;
    let limits = common::redis_hash(&prefix, "rate-limit-hosts").await;
    assert_eq!(
        limits.get("forge.example.org"),
        Some(&janitor_runner::time::isoformat(&until))
    );

    // A run only Redis shows (another writer's late copy) goes at the second reconciliation.
    let stray = run("stray", 9);
    let client = ::redis::Client::open(common::redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = ::redis::pipe()
        .hset(
            format!("{prefix}active-runs"),
            "stray",
            data(&stray).to_string(),
        )
        .hset(format!("{prefix}assigned-queue-items"), "9", "stray")
        .query_async(&mut conn)
        .await
        .unwrap();
    store.flush().await;
    assert!(
        common::redis_hash(&prefix, "active-runs")
            .await
            .contains_key("stray")
    );
    store.flush().await;
    assert_copy_matches(&store, &prefix).await;

    store.unclaim_run("run-2").await.unwrap();
    store.flush().await;
    assert_copy_matches(&store, &prefix).await;
    common::clear_prefix(&prefix).await;
    db.drop_now().await;
}

/// The PostgreSQL-backed stores release a claim inside the caller's transaction: rolled back,
/// the run is still registered; committed, it is gone with whatever else the commit wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_commits_with_the_callers_transaction() {
    let db = common::migrated_database().await;
    let prefix = common::redis_prefix();
    let stores: Vec<Arc<dyn ActiveRunStore>> = vec![
        Arc::new(PostgresStore::new(db.pool.clone())),
        Arc::new(mirrored_store(&db, &prefix).await),
    ];
    for (n, store) in stores.into_iter().enumerate() {
        assert!(store.claims_in_database());
        let queue_id = 100 + n as i64;
        let active = run(&format!("in-tx-{n}"), queue_id);
        let now = common::fixed_now();
        store
            .register_run(&active.log_id, queue_id, &data(&active), now)
            .await
            .unwrap();
        let mut tx = db.pool.begin().await.unwrap();
        let removed = store.unclaim_run_in(&mut tx, &active.log_id).await.unwrap();
        assert_eq!(removed, Some(data(&active)));
        tx.rollback().await.unwrap();
        assert!(store.get_run(&active.log_id).await.unwrap().is_some());
        let mut tx = db.pool.begin().await.unwrap();
        store.unclaim_run_in(&mut tx, &active.log_id).await.unwrap();
        tx.commit().await.unwrap();
        assert!(store.get_run(&active.log_id).await.unwrap().is_none());
    }
    common::clear_prefix(&prefix).await;
    db.drop_now().await;
}

/// A queue row of its own for each case below, under codebase `codebase`.
async fn queued_item(db: &common::TestDb, codebase: &str) -> i64 {
    sqlx::query("INSERT INTO codebase (name) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(codebase)
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query_scalar(
        "INSERT INTO queue (codebase, suite, command) VALUES ($1, 'generic', 'true')
         RETURNING id::int8",
    )
    .bind(codebase)
    .fetch_one(&db.pool)
    .await
    .unwrap()
}

/// Every store, each with a prefix of its own in Redis.
async fn every_store(
    db: &common::TestDb,
    prefix: &str,
) -> Vec<(&'static str, Arc<dyn ActiveRunStore>)> {
    let conn = janitor_runner::app::connect_redis(&common::redis_url())
        .await
        .unwrap();
    vec![
        ("postgres", Arc::new(PostgresStore::new(db.pool.clone()))),
        (
            "mirrored",
            Arc::new(mirrored_store(db, &format!("{prefix}m:")).await),
        ),
        (
            "redis",
            Arc::new(RedisStore::new(
                conn,
                RedisKeys::with_prefix(&format!("{prefix}r:")),
            )),
        ),
    ]
}

/// An assigner chose a queue row in its snapshot; before it claimed it, another assigner
/// claimed the same row, and its run was stored (the row deleted, the claim released). The
/// late claim is refused, and leaves nothing behind: the item is not handed out twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_on_an_item_stored_since_is_refused() {
    let db = common::migrated_database().await;
    let prefix = common::redis_prefix();
    for (name, store) in every_store(&db, &prefix).await {
        let queue_id = queued_item(&db, &format!("stored-{name}")).await;
        let now = common::fixed_now();
        let first = run(&format!("first-{name}"), queue_id);
        let mut tx = db.pool.begin().await.unwrap();
        store
            .register_run_in(&mut tx, &first.log_id, queue_id, &data(&first), now)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        // The first run is stored: its row deleted, then its claim released.
        sqlx::query("DELETE FROM queue WHERE id = $1")
            .bind(queue_id)
            .execute(&db.pool)
            .await
            .unwrap();
        store.unclaim_run(&first.log_id).await.unwrap();

        // As an assignment claims: on a connection outside any transaction, so that nothing
        // but the claim's own statement can take a refused claim back.
        let late = run(&format!("late-{name}"), queue_id);
        let mut conn = db.pool.acquire().await.unwrap();
        let claimed = store
            .register_run_in(&mut conn, &late.log_id, queue_id, &data(&late), now)
            .await;
        assert!(
            matches!(claimed, Err(StoreError::QueueItemGone(id)) if id == queue_id),
            "{name}: {claimed:?}"
        );
        drop(conn);
        assert_eq!(store.get_run(&late.log_id).await.unwrap(), None, "{name}");
        assert!(
            !store
                .assigned_queue_ids()
                .await
                .unwrap()
                .contains(&queue_id),
            "{name}"
        );
    }
    common::clear_prefix(&prefix).await;
    db.drop_now().await;
}

/// The same, with the first run's finish still in progress when the late claim comes: the
/// claim waits for it, and is refused once it commits (the claims in the database; a Redis
/// claim meets the first run's claim, which goes only after that commit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_waits_for_a_finish_in_progress_and_is_refused() {
    let db = common::migrated_database().await;
    let prefix = common::redis_prefix();
    for (name, store) in every_store(&db, &prefix).await {
        if !store.claims_in_database() {
            continue;
        }
        let queue_id = queued_item(&db, &format!("finishing-{name}")).await;
        let now = common::fixed_now();
        let first = run(&format!("first-{name}"), queue_id);
        store
            .register_run(&first.log_id, queue_id, &data(&first), now)
            .await
            .unwrap();
        let mut finishing = db.pool.begin().await.unwrap();
        sqlx::query("DELETE FROM queue WHERE id = $1")
            .bind(queue_id)
            .execute(&mut *finishing)
            .await
            .unwrap();
        store
            .unclaim_run_in(&mut finishing, &first.log_id)
            .await
            .unwrap();

        let late = run(&format!("late-{name}"), queue_id);
        let claiming = {
            let store = store.clone();
            let pool = db.pool.clone();
            tokio::spawn(async move {
                let mut conn = pool.acquire().await.unwrap();
                store
                    .register_run_in(&mut conn, &late.log_id, queue_id, &data(&late), now)
                    .await
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(!claiming.is_finished(), "{name}: the claim did not wait");
        finishing.commit().await.unwrap();
        let claimed = tokio::time::timeout(std::time::Duration::from_secs(10), claiming)
            .await
            .expect("the claim ends once the finish commits")
            .unwrap();
        assert!(
            matches!(claimed, Err(StoreError::QueueItemGone(id)) if id == queue_id),
            "{name}: {claimed:?}"
        );
        assert_eq!(store.active_run_count().await.unwrap(), 0, "{name}");
    }
    common::clear_prefix(&prefix).await;
    db.drop_now().await;
}
