//! Pooled connections that the assignment and the finish hand on to each other directly.
//!
//! sqlx checks every connection it takes back with a round trip (in a task of its own),
//! because a connection dropped while a statement was in flight may be left halfway through
//! the protocol. A connection whose last statement completed is not, and on the paths every
//! run takes (an assignment's read and claim, a finish's transaction) that check is two of
//! the cycle's seven round trips. So those paths park their connection here once their last
//! statement has succeeded, and the next of them takes it from here. A connection let go any
//! other way (an error, a cancelled request) goes back to the pool, which checks it as ever.
//!
//! Parked connections are kept from the rest of the runner, so they are few (at most half the
//! pool), and one idle for [`UNCHECKED_IDLE`] is checked before it is handed out, as the pool
//! does. Those parked longer than [`PARKED_AT_MOST`] go back to the pool, and every
//! connection goes back once it has been passed on here for [`WARM_FOR`], so the pool's own
//! limits (its connections' lifetime, its idle timeout) still apply.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::{Connection, PgConnection, PgPool, Postgres};

use super::{ACQUIRE_TIMEOUT, UNCHECKED_IDLE};

/// A connection parked longer than this goes back to the pool, where the rest of the runner
/// can have it.
pub const PARKED_AT_MOST: Duration = Duration::from_secs(1);

/// How long a connection is passed on here before it goes back through the pool once.
pub const WARM_FOR: Duration = Duration::from_secs(60);

/// See the module documentation.
#[derive(Debug)]
pub struct WarmConnections {
    pool: PgPool,
    parked: Mutex<Vec<Parked>>,
    capacity: usize,
    // Dropping a pooled connection spawns its return to the pool, which needs a runtime; the
    // state may be dropped where there is none (a Python object collected on its own thread).
    runtime: Option<tokio::runtime::Handle>,
}

#[derive(Debug)]
struct Parked {
    conn: PoolConnection<Postgres>,
    parked_at: Instant,
    warm_since: Instant,
}

/// A connection from [`WarmConnections::acquire`]. [`WarmConnection::park`] once its last
/// statement has succeeded; dropped instead, it goes back to the pool and is checked there.
#[derive(Debug)]
pub struct WarmConnection<'a> {
    home: &'a WarmConnections,
    conn: PoolConnection<Postgres>,
    warm_since: Instant,
}

impl WarmConnections {
    /// Parks at most half of `pool`'s connections. Made outside a tokio runtime it parks none
    /// (there would be no runtime to return them to the pool on).
    pub fn new(pool: PgPool) -> Arc<Self> {
        let runtime = tokio::runtime::Handle::try_current().ok();
        let capacity = match runtime {
            Some(_) => usize::try_from(pool.options().get_max_connections() / 2).unwrap_or(0),
            None => 0,
        };
        let warm = Arc::new(Self {
            pool,
            parked: Mutex::new(Vec::with_capacity(capacity)),
            capacity,
            runtime,
        });
        if let Some(runtime) = &warm.runtime
            && capacity > 0
        {
            runtime.spawn(return_idle(Arc::downgrade(&warm), warm.pool.clone()));
        }
        warm
    }

    /// The most recently parked connection (checked first if it idled for
    /// [`UNCHECKED_IDLE`]), or else one from the pool; within [`ACQUIRE_TIMEOUT`] in all, as
    /// the pool's own, so a frozen server gets an answer.
    pub async fn acquire(&self) -> Result<WarmConnection<'_>, sqlx::Error> {
        let deadline = tokio::time::Instant::now() + ACQUIRE_TIMEOUT;
        while let Some(parked) = self.take_parked() {
            let mut conn = parked.conn;
            let checked = if parked.parked_at.elapsed() < UNCHECKED_IDLE {
                Ok(Ok(()))
            } else {
                tokio::time::timeout_at(deadline, Connection::ping(&mut *conn)).await
            };
            match checked {
                Ok(Ok(())) => {
                    return Ok(WarmConnection {
                        home: self,
                        conn,
                        warm_since: parked.warm_since,
                    });
                }
                // Broken (the server restarted, the backend was terminated): closed rather
                // than checked once more by the pool, and the next one tried.
                Ok(Err(_)) => conn.close_on_drop(),
                // Not answering: the server is frozen or unreachable, and the connections
                // still parked are left for when it answers again.
                Err(_) => {
                    conn.close_on_drop();
                    return Err(sqlx::Error::PoolTimedOut);
                }
            }
        }
        let conn = tokio::time::timeout_at(deadline, self.pool.acquire())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)??;
        Ok(WarmConnection {
            home: self,
            conn,
            warm_since: Instant::now(),
        })
    }

    /// How many connections are parked now.
    pub fn parked(&self) -> usize {
        self.lock().len()
    }

    fn take_parked(&self) -> Option<Parked> {
        self.lock().pop()
    }

    fn park(&self, conn: PoolConnection<Postgres>, warm_since: Instant) {
        if warm_since.elapsed() >= WARM_FOR {
            return;
        }
        let mut parked = self.lock();
        // Checked under the lock: once the pool is closing, what is parked is taken out under
        // it, and nothing parked after that would ever go back.
        if parked.len() < self.capacity && !self.pool.is_closed() {
            parked.push(Parked {
                conn,
                parked_at: Instant::now(),
                warm_since,
            });
        }
    }

    /// Takes out the connections parked for `at_least` (all of them when zero), to be
    /// dropped outside the lock.
    fn take_idle(&self, at_least: Duration) -> Vec<Parked> {
        let mut parked = self.lock();
        // Parked in order, so the idle ones are at the front.
        let idle = parked
            .iter()
            .take_while(|p| p.parked_at.elapsed() >= at_least)
            .count();
        parked.drain(..idle).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Parked>> {
        // A panic while holding this lock cannot leave the list inconsistent (a push, a pop,
        // a drain), so a poisoned lock is used as it is.
        self.parked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for WarmConnections {
    fn drop(&mut self) {
        let parked = std::mem::take(
            self.parked
                .get_mut()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        if parked.is_empty() {
            return;
        }
        let _entered = match tokio::runtime::Handle::try_current() {
            Ok(_) => None,
            Err(_) => self.runtime.as_ref().map(tokio::runtime::Handle::enter),
        };
        drop(parked);
    }
}

/// Returns connections parked for [`PARKED_AT_MOST`] to the pool, and all of them once the
/// pool is closing (closing waits for every connection to come back). Ends with the
/// connections' home.
async fn return_idle(home: Weak<WarmConnections>, pool: PgPool) {
    let mut tick = tokio::time::interval(PARKED_AT_MOST);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let closing = tokio::select! {
            () = pool.close_event() => true,
            _ = tick.tick() => false,
        };
        let Some(home) = home.upgrade() else { return };
        let at_least = if closing {
            Duration::ZERO
        } else {
            PARKED_AT_MOST
        };
        drop(home.take_idle(at_least));
        if closing {
            return;
        }
    }
}

impl WarmConnection<'_> {
    /// Hands the connection on to the next assignment or finish: only once its last
    /// statement has succeeded, with no transaction left open.
    pub fn park(self) {
        let Self {
            home,
            conn,
            warm_since,
        } = self;
        home.park(conn, warm_since);
    }
}

impl Deref for WarmConnection<'_> {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        &self.conn
    }
}

impl DerefMut for WarmConnection<'_> {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.conn
    }
}
