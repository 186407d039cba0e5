//! The PostgreSQL store: tables `runner_active_run` and `runner_rate_limited_host`. A unique
//! constraint on the queue id makes the claim atomic across processes.

use async_trait::async_trait;
use chrono::NaiveDateTime;
use serde_json::Value;
use sqlx::{PgConnection, PgPool};

use super::{ActiveRunStore, StoreError, StoredRun};

#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

/// Inserts the claim; the unique queue id makes a second claim fail, even across processes.
async fn insert_claim(
    conn: &mut PgConnection,
    id: &str,
    queue_id: i64,
    data: &Value,
    now: NaiveDateTime,
) -> Result<(), StoreError> {
    let worker = data.get("worker").and_then(Value::as_str);
    let inserted = sqlx::query(
        "INSERT INTO runner_active_run (id, queue_id, worker, data, last_keepalive)
         VALUES ($1, $2, $3, $4::json, $5)
         ON CONFLICT DO NOTHING",
    )
    .bind(id)
    .bind(queue_id)
    .bind(worker)
    .bind(data.to_string())
    .bind(now)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if inserted == 1 {
        return Ok(());
    }
    let holder: Option<String> =
        sqlx::query_scalar("SELECT id FROM runner_active_run WHERE queue_id = $1")
            .bind(queue_id)
            .fetch_optional(&mut *conn)
            .await?;
    match holder {
        Some(run_id) if run_id != id => Err(StoreError::AlreadyClaimed { queue_id, run_id }),
        _ => Err(StoreError::RunExists(id.to_string())),
    }
}

fn parse(text: &str) -> Result<Value, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::InvalidData(e.to_string()))
}

#[async_trait]
impl ActiveRunStore for PostgresStore {
    async fn register_run(
        &self,
        id: &str,
        queue_id: i64,
        data: &Value,
        now: NaiveDateTime,
    ) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        insert_claim(&mut conn, id, queue_id, data, now).await
    }

    async fn register_run_in(
        &self,
        conn: &mut PgConnection,
        id: &str,
        queue_id: i64,
        data: &Value,
        now: NaiveDateTime,
    ) -> Result<(), StoreError> {
        insert_claim(conn, id, queue_id, data, now).await
    }

    async fn update_run(&self, id: &str, data: &Value) -> Result<(), StoreError> {
        sqlx::query("UPDATE runner_active_run SET data = $2::json WHERE id = $1")
            .bind(id)
            .bind(data.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn get_run(&self, id: &str) -> Result<Option<Value>, StoreError> {
        let data: Option<String> =
            sqlx::query_scalar("SELECT data::text FROM runner_active_run WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        data.as_deref().map(parse).transpose()
    }

    async fn unclaim_run(&self, id: &str) -> Result<Option<Value>, StoreError> {
        let data: Option<String> =
            sqlx::query_scalar("DELETE FROM runner_active_run WHERE id = $1 RETURNING data::text")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        data.as_deref().map(parse).transpose()
    }

    async fn list_runs(&self) -> Result<Vec<StoredRun>, StoreError> {
        let rows: Vec<(String, String, Option<NaiveDateTime>)> = sqlx::query_as(
            "SELECT id, data::text, last_keepalive FROM runner_active_run ORDER BY queue_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(id, data, last_keepalive)| {
                Ok(StoredRun {
                    id,
                    data: parse(&data)?,
                    last_keepalive,
                })
            })
            .collect()
    }

    async fn active_run_count(&self) -> Result<usize, StoreError> {
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM runner_active_run")
            .fetch_one(&self.pool)
            .await?;
        Ok(usize::try_from(count).unwrap_or_default())
    }

    async fn assigned_queue_ids(&self) -> Result<Vec<i64>, StoreError> {
        Ok(sqlx::query_scalar("SELECT queue_id FROM runner_active_run")
            .fetch_all(&self.pool)
            .await?)
    }

    fn claims_in_database(&self) -> bool {
        true
    }

    async fn keepalive(&self, id: &str, at: NaiveDateTime) -> Result<(), StoreError> {
        sqlx::query("UPDATE runner_active_run SET last_keepalive = $2 WHERE id = $1")
            .bind(id)
            .bind(at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn last_keepalive(&self, id: &str) -> Result<Option<NaiveDateTime>, StoreError> {
        let at: Option<Option<NaiveDateTime>> =
            sqlx::query_scalar("SELECT last_keepalive FROM runner_active_run WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(at.flatten())
    }

    async fn rate_limit_host(&self, host: &str, until: NaiveDateTime) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO runner_rate_limited_host (host, until) VALUES ($1, $2)
             ON CONFLICT (host) DO UPDATE SET until = EXCLUDED.until",
        )
        .bind(host)
        .bind(until)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn rate_limited_hosts(
        &self,
        now: NaiveDateTime,
    ) -> Result<Vec<(String, NaiveDateTime)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT host, until FROM runner_rate_limited_host WHERE until > $1 ORDER BY host",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?)
    }
}
