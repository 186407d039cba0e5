//! The connections the assignment and the finish hand on to each other (`db::warm`): a
//! parked connection is the next one handed out, a broken one is replaced, one on a frozen
//! server ends the take without closing the others, and parked connections go back to the
//! pool when idle and when it closes.

use std::time::Duration;

use janitor_runner::db::ACQUIRE_TIMEOUT;
use janitor_runner::db::warm::{PARKED_AT_MOST, WarmConnections};

use crate::common::frozen_server::FreezableServer;
use crate::common::migrated_database;

async fn backend_pid(conn: &mut sqlx::PgConnection) -> i32 {
    sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(conn)
        .await
        .expect("backend pid")
}

/// Waits (a bounded time: a guard against a hang, not a timing assertion) for `done`.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PARKED_AT_MOST * 10;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_parked_connection_is_the_next_handed_out() {
    let db = migrated_database().await;
    let warm = WarmConnections::new(db.pool.clone());
    let mut conn = warm.acquire().await.expect("acquire");
    let first = backend_pid(&mut conn).await;
    conn.park();
    assert_eq!(warm.parked(), 1);
    let mut again = warm.acquire().await.expect("acquire again");
    assert_eq!(warm.parked(), 0);
    assert_eq!(backend_pid(&mut again).await, first);
    // Dropped rather than parked: back to the pool, not here.
    drop(again);
    assert_eq!(warm.parked(), 0);
    drop(warm);
    db.drop_now().await;
}

#[tokio::test]
async fn a_connection_left_in_a_transaction_is_not_parked() {
    let db = migrated_database().await;
    let warm = WarmConnections::new(db.pool.clone());
    {
        let mut conn = warm.acquire().await.expect("acquire");
        let mut tx = sqlx::Connection::begin(&mut *conn).await.expect("begin");
        sqlx::query("SELECT 1")
            .execute(&mut *tx)
            .await
            .expect("select");
        // Dropped mid-transaction, as a cancelled request would be.
    }
    assert_eq!(warm.parked(), 0);
    let mut conn = warm.acquire().await.expect("acquire");
    // Two statements outside a transaction get a transaction id each.
    let mut ids = Vec::new();
    for _ in 0..2 {
        let id: i64 = sqlx::query_scalar("SELECT txid_current()")
            .fetch_one(&mut *conn)
            .await
            .expect("select");
        ids.push(id);
    }
    let in_transaction = ids[0] == ids[1];
    assert!(
        !in_transaction,
        "a connection came back inside a transaction"
    );
    drop(conn);
    drop(warm);
    db.drop_now().await;
}

#[tokio::test]
async fn a_broken_parked_connection_is_replaced() {
    let db = migrated_database().await;
    let warm = WarmConnections::new(db.pool.clone());
    let mut conn = warm.acquire().await.expect("acquire");
    let pid = backend_pid(&mut conn).await;
    conn.park();
    let terminated: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(&db.pool)
        .await
        .expect("terminate");
    assert!(terminated);
    // Idle long enough to be checked before it is handed out again.
    tokio::time::sleep(janitor_runner::db::UNCHECKED_IDLE * 2).await;
    let mut conn = warm.acquire().await.expect("a working connection");
    assert_ne!(backend_pid(&mut conn).await, pid);
    drop(conn);
    drop(warm);
    db.drop_now().await;
}

#[tokio::test]
async fn at_most_half_the_pool_is_parked() {
    let db = migrated_database().await;
    let max = db.pool.options().get_max_connections() as usize;
    let warm = WarmConnections::new(db.pool.clone());
    let mut taken = Vec::new();
    for _ in 0..max {
        taken.push(warm.acquire().await.expect("acquire"));
    }
    for conn in taken {
        conn.park();
    }
    assert_eq!(warm.parked(), max / 2);
    // The rest of the pool is free for everyone else.
    let mut others = Vec::new();
    for _ in 0..max - max / 2 {
        others.push(db.pool.acquire().await.expect("a pool connection"));
    }
    drop(others);
    drop(warm);
    db.drop_now().await;
}

#[tokio::test]
async fn idle_parked_connections_go_back_to_the_pool() {
    let db = migrated_database().await;
    let warm = WarmConnections::new(db.pool.clone());
    let conn = warm.acquire().await.expect("acquire");
    conn.park();
    assert_eq!(warm.parked(), 1);
    eventually("the idle connection went back", || warm.parked() == 0).await;
    eventually("the pool has it idle", || {
        db.pool.num_idle() == db.pool.size() as usize
    })
    .await;
    drop(warm);
    db.drop_now().await;
}

#[tokio::test]
async fn closing_the_pool_takes_back_the_parked_connections() {
    let db = migrated_database().await;
    let warm = WarmConnections::new(db.pool.clone());
    let conn = warm.acquire().await.expect("acquire");
    conn.park();
    // Closing waits for every connection: it ends only if the parked one goes back.
    tokio::time::timeout(PARKED_AT_MOST * 10, db.pool.close())
        .await
        .expect("the pool closed with a connection parked");
    assert_eq!(warm.parked(), 0);
    // Parked after the close: not kept.
    drop(warm);
    db.drop_now().await;
}

#[tokio::test]
async fn a_frozen_server_gets_an_answer_and_the_connections_are_kept() {
    let db = migrated_database().await;
    let server = FreezableServer::in_front_of(&db.pool.connect_options()).await;
    let pool = janitor_runner::db::connect_lazy(&db.url, 6).expect("pool");
    pool.set_connect_options(server.options.clone());
    let warm = WarmConnections::new(pool.clone());
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut conn = warm.acquire().await.expect("acquire");
        backend_pid(&mut conn).await;
        held.push(conn);
    }
    let later = held.split_off(1);
    held.pop().expect("the first").park();
    // Idle long enough to be checked before it is handed out again; then nothing answers.
    tokio::time::sleep(janitor_runner::db::UNCHECKED_IDLE * 2).await;
    server.freeze(true);
    let taking = {
        let warm = warm.clone();
        tokio::spawn(async move { warm.acquire().await.map(drop) })
    };
    // Two more parked while the check of the first waits, long enough before its deadline
    // that they are due a check of their own and not yet due back to the pool.
    tokio::time::sleep(ACQUIRE_TIMEOUT - Duration::from_millis(500)).await;
    for conn in later {
        conn.park();
    }
    let taken = tokio::time::timeout(ACQUIRE_TIMEOUT * 3, taking)
        .await
        .expect("the take ended while the server was frozen")
        .expect("the take did not panic");
    assert!(
        matches!(taken, Err(sqlx::Error::PoolTimedOut)),
        "a frozen server gave {taken:?}"
    );
    server.freeze(false);
    // The connection that did not answer was closed; the two parked after it were left for
    // when the server answers (parked still, or back in the pool), and they work.
    eventually("the unanswered connection closed", || pool.size() <= 2).await;
    let mut conn = tokio::time::timeout(ACQUIRE_TIMEOUT * 3, warm.acquire())
        .await
        .expect("the take ended")
        .expect("a working connection once the server answers");
    backend_pid(&mut conn).await;
    assert_eq!(pool.size(), 2, "connections were closed unasked");
    drop(conn);
    drop(warm);
    pool.close().await;
    drop(server);
    db.drop_now().await;
}
