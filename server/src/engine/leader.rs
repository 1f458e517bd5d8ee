//! The PostgreSQL advisory lock that elects the one replica running the engine.
//!
//! The lock lives as long as the database session that took it, so the leader keeps that
//! connection out of the pool and probes it. A slow answer is not a lost lock: stepping down
//! stops every running hook (a `cmd_new` halfway through creating a VM included) and makes
//! the next leader delete every machine caught mid-hook. So the leader steps down only when
//! another session is seen holding the lock, looked up from a fresh connection after several
//! failed probes. When its own session died and nobody else took the lock, it takes it again
//! on a new connection and carries on as if nothing happened: the runner, its hooks and its
//! in-memory state are untouched.
//!
//! A connection whose unlock failed (or whose lock is dropped any other way, a panic
//! included) is closed, never handed back to the pool, where it would go on holding the lock
//! for whoever borrows it next. Sessions are told apart by process id and start time, since
//! process ids are reused.

use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::{PgPool, Postgres};

/// The advisory-lock key that elects the one replica running the engine ("copr-eng"), in the
/// `public` schema. Deployments (and tests) in other schemas of one database each get their
/// own key, derived from the schema's name.
pub const LEADER_LOCK_KEY: i64 = 0x636f_7072_2d65_6e67;

/// How the leader checks that it still holds the lock.
#[derive(Debug, Clone)]
pub struct LeaderSettings {
    /// How often the lock's connection is probed.
    pub probe_every: Duration,
    /// How long one probe (and one confirmation from a fresh connection) may take.
    pub probe_timeout: Duration,
    /// Failed probes in a row before the lock's holder is looked up.
    pub failed_probes: u32,
    /// How often a standby replica tries to take the lock.
    pub retry_every: Duration,
}

impl Default for LeaderSettings {
    fn default() -> Self {
        LeaderSettings {
            probe_every: Duration::from_secs(5),
            probe_timeout: Duration::from_secs(5),
            failed_probes: 3,
            retry_every: Duration::from_secs(5),
        }
    }
}

/// The lock key for the connection's current schema. Retries until the database answers.
pub async fn lock_key(pool: &PgPool) -> i64 {
    loop {
        match sqlx::query_scalar::<_, String>("SELECT current_schema()")
            .fetch_one(pool)
            .await
        {
            Ok(schema) => return key_for_schema(&schema),
            Err(e) => {
                tracing::error!(error = %e, "cannot read the current schema for the engine leader lock; retrying in 2 s");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
}

/// [`LEADER_LOCK_KEY`] for `public`, and a key of its own (FNV-1a of the name mixed in) for
/// every other schema.
pub fn key_for_schema(schema: &str) -> i64 {
    if schema == "public" {
        return LEADER_LOCK_KEY;
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in schema.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    LEADER_LOCK_KEY ^ hash as i64
}

/// A database session: its server process id and when it started (process ids are reused;
/// the pair is not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionId {
    pub pid: i32,
    /// `backend_start` in epoch microseconds.
    pub started_us: i64,
}

/// The held lock: the connection it lives on and that connection's session.
pub struct LeaderLock {
    /// Taken out only by [`LeaderLock::release`]; dropped any other way (a panic included),
    /// the connection is closed, never returned to the pool still holding the lock.
    conn: Option<PoolConnection<Postgres>>,
    session: SessionId,
    key: i64,
}

impl Drop for LeaderLock {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.as_mut() {
            conn.close_on_drop();
        }
    }
}

/// Who holds the lock, as `pg_locks` tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Holder {
    Nobody,
    Session(SessionId),
}

/// How the lock's own connection answered a probe.
enum Probe {
    Answered,
    /// No answer in time: the session may be alive and merely slow.
    Slow,
    /// An error: the connection (and with it, most likely, the session and the lock) is gone.
    Broken,
}

impl LeaderLock {
    /// Takes the lock on a connection of its own, if nobody holds it.
    pub async fn try_acquire(pool: &PgPool, key: i64) -> Result<Option<LeaderLock>, sqlx::Error> {
        let mut conn = pool.acquire().await?;
        let (got, pid, started_us): (bool, i32, i64) = sqlx::query_as(
            "SELECT pg_try_advisory_lock($1), pg_backend_pid(), \
             (EXTRACT(EPOCH FROM backend_start) * 1000000)::bigint \
             FROM pg_stat_activity WHERE pid = pg_backend_pid()",
        )
        .bind(key)
        .fetch_one(&mut *conn)
        .await?;
        Ok(got.then_some(LeaderLock {
            conn: Some(conn),
            session: SessionId { pid, started_us },
            key,
        }))
    }

    fn conn(&mut self) -> &mut PoolConnection<Postgres> {
        self.conn
            .as_mut()
            .expect("the connection lives until release")
    }

    /// Holds the lock until another session is seen holding it, and returns that session's
    /// process id. A slow connection is given `failed_probes` probes before the holder is
    /// looked up; a broken one is looked up at once, so another replica that took the lock
    /// meanwhile is noticed within a probe.
    pub async fn hold(&mut self, pool: &PgPool, settings: &LeaderSettings) -> i32 {
        let mut failures = 0u32;
        loop {
            tokio::time::sleep(settings.probe_every).await;
            let probe = match tokio::time::timeout(
                settings.probe_timeout,
                sqlx::query("SELECT 1").execute(&mut **self.conn()),
            )
            .await
            {
                Ok(Ok(_)) => Probe::Answered,
                Ok(Err(_)) => Probe::Broken,
                Err(_) => Probe::Slow,
            };
            match probe {
                Probe::Answered => {
                    if failures > 0 {
                        tracing::info!(
                            failures,
                            "the engine leader connection answers again; still the leader"
                        );
                    }
                    failures = 0;
                    continue;
                }
                Probe::Slow => {
                    failures += 1;
                    tracing::warn!(
                        failures,
                        "the engine leader connection did not answer a probe in time"
                    );
                    if failures < settings.failed_probes {
                        continue;
                    }
                }
                Probe::Broken => {
                    failures += 1;
                    tracing::warn!(
                        "the engine leader connection is broken; looking at who holds the lock"
                    );
                }
            }
            match tokio::time::timeout(settings.probe_timeout, holder(pool, self.key)).await {
                Ok(Ok(Holder::Session(s))) if s == self.session => {
                    tracing::warn!(
                        failures,
                        "the engine leader connection is slow but still holds the lock; staying the leader"
                    );
                    failures = 0;
                }
                Ok(Ok(Holder::Session(other))) => return other.pid,
                Ok(Ok(Holder::Nobody)) => {
                    // Someone quicker, or a database gone again, leaves it to the next round.
                    if let Ok(Ok(Some(fresh))) = tokio::time::timeout(
                        settings.probe_timeout,
                        LeaderLock::try_acquire(pool, self.key),
                    )
                    .await
                    {
                        tracing::warn!(
                            old_pid = self.session.pid,
                            new_pid = fresh.session.pid,
                            "the engine leader session ended; took the lock again on a new connection, running hooks carry on"
                        );
                        // The old connection is closed by its drop.
                        drop(std::mem::replace(self, fresh));
                        failures = 0;
                    }
                }
                Ok(Err(_)) | Err(_) => tracing::warn!(
                    failures,
                    "cannot reach the database to see who holds the engine leader lock; staying the leader until it answers"
                ),
            }
        }
    }

    /// Gives the lock up. The connection goes back to the pool only when the unlock
    /// succeeded; otherwise it is closed, and the lock ends with its session.
    pub async fn release(mut self, timeout: Duration) {
        let key = self.key;
        let unlocked = tokio::time::timeout(
            timeout,
            sqlx::query_scalar::<_, bool>("SELECT pg_advisory_unlock($1)")
                .bind(key)
                .fetch_one(&mut **self.conn()),
        )
        .await;
        match unlocked {
            Ok(Ok(_)) => drop(self.conn.take()),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot release the engine leader lock; closing its connection")
            }
            Err(_) => {
                tracing::warn!("releasing the engine leader lock timed out; closing its connection")
            }
        }
        // Anything but a clean unlock: the drop closes the connection.
    }
}

/// Looks the lock's holder up in `pg_locks`, in this database.
async fn holder(pool: &PgPool, key: i64) -> Result<Holder, sqlx::Error> {
    // A bigint advisory key is kept as two 32-bit halves: classid (high) and objid (low).
    let high = i64::from((key as u64 >> 32) as u32);
    let low = i64::from(key as u64 as u32);
    let row: Option<(i32, i64)> = sqlx::query_as(
        "SELECT l.pid, (EXTRACT(EPOCH FROM a.backend_start) * 1000000)::bigint \
         FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
         WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 \
           AND l.classid::bigint = $1 AND l.objid::bigint = $2 \
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
         LIMIT 1",
    )
    .bind(high)
    .bind(low)
    .fetch_optional(pool)
    .await?;
    Ok(row.map_or(Holder::Nobody, |(pid, started_us)| {
        Holder::Session(SessionId { pid, started_us })
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_schema_has_its_own_key_and_public_keeps_the_old_one() {
        assert_eq!(key_for_schema("public"), LEADER_LOCK_KEY);
        assert_ne!(key_for_schema("it_1"), LEADER_LOCK_KEY);
        assert_ne!(key_for_schema("it_1"), key_for_schema("it_2"));
        assert_eq!(key_for_schema("it_1"), key_for_schema("it_1"));
    }
}
