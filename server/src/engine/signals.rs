//! Wake-ups between replicas over PostgreSQL `LISTEN/NOTIFY`, so a ticket taken on a replica
//! that does not run the engine is served as fast as on the leader, and a `waitTicket` caller
//! on any replica hears of its machine at once (not at the next periodic check).
//!
//! One channel per schema (from the leader lock's key). Two messages:
//! - `wake`: something changed (a ticket taken or closed, a pool edited); the leader runs a
//!   pass now.
//! - `assigned:<id>,<id>,…`: the leader committed these assignments; replicas re-read the
//!   tickets their `waitTicket` callers wait for.
//!
//! Losing a message (a reconnect) only delays: the leader still passes every
//! `engine_period_secs` and waiters re-read every few seconds.

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;

use super::Engine;
use super::leader;

/// The channel of the schema whose lock key is `key`.
pub fn channel(key: i64) -> String {
    format!("copr_pools_{:016x}", key as u64)
}

/// The most ids one `assigned:` message carries (PostgreSQL payloads stop at 8000 bytes).
const IDS_PER_MESSAGE: usize = 600;

/// The messages that tell replicas about `tickets`.
pub fn assigned_messages(tickets: &[i64]) -> Vec<String> {
    tickets
        .chunks(IDS_PER_MESSAGE)
        .map(|chunk| {
            let ids: Vec<String> = chunk.iter().map(i64::to_string).collect();
            format!("assigned:{}", ids.join(","))
        })
        .collect()
}

/// What a message asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Message {
    Wake,
    Assigned(Vec<i64>),
}

pub fn parse(payload: &str) -> Option<Message> {
    if payload == "wake" {
        return Some(Message::Wake);
    }
    let ids = payload.strip_prefix("assigned:")?;
    Some(Message::Assigned(
        ids.split(',').filter_map(|id| id.parse().ok()).collect(),
    ))
}

/// Sends one message on the engine's channel; failures are logged (the periodic pass covers).
pub async fn publish(pool: &PgPool, channel: &str, message: &str) {
    if let Err(e) = sqlx::query("SELECT pg_notify($1, $2)")
        .bind(channel)
        .bind(message)
        .execute(pool)
        .await
    {
        tracing::warn!(error = %e, "cannot notify the other replicas; they catch up at their next pass");
    }
}

/// Listens on the schema's channel until `shutdown`, reconnecting when the connection drops.
/// Once it listens, the engine's wake-ups go out on the channel too.
pub async fn bridge(engine: Engine, shutdown: CancellationToken) {
    let pool = engine.db().get_postgres_connection_pool().clone();
    let key = tokio::select! {
        key = leader::lock_key(&pool) => key,
        _ = shutdown.cancelled() => return,
    };
    let channel = channel(key);
    loop {
        let listening = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(&channel).await?;
            engine.set_channel(channel.clone());
            // Anything missed while (re)connecting: a pass and a re-read cost little.
            engine.wake_here();
            engine.waiters().poke_all();
            loop {
                match listener.try_recv().await? {
                    Some(n) => match parse(n.payload()) {
                        Some(Message::Wake) => engine.wake_here(),
                        Some(Message::Assigned(ids)) => engine.waiters().poke(&ids),
                        None => tracing::debug!(payload = n.payload(), "unknown wake-up message"),
                    },
                    // The connection dropped; the next call reconnects. What was sent
                    // meanwhile is lost: catch up.
                    None => {
                        tracing::warn!(
                            "the wake-up channel to the other replicas dropped; reconnecting"
                        );
                        engine.wake_here();
                        engine.waiters().poke_all();
                    }
                }
            }
            #[allow(unreachable_code)]
            Ok::<(), sqlx::Error>(())
        };
        tokio::select! {
            result = listening => {
                if let Err(e) = result {
                    tracing::warn!(error = %e, "lost the wake-up channel to the other replicas; reconnecting in 2 s");
                }
            }
            _ = shutdown.cancelled() => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_fit_a_payload() {
        assert_eq!(parse("wake"), Some(Message::Wake));
        let ids: Vec<i64> = (2_000_000_000..2_000_001_500).collect();
        let messages = assigned_messages(&ids);
        assert_eq!(messages.len(), 3);
        let mut back = Vec::new();
        for m in &messages {
            assert!(m.len() < 8000, "{} bytes", m.len());
            match parse(m) {
                Some(Message::Assigned(part)) => back.extend(part),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(back, ids);
        assert_eq!(parse("hello"), None);
        assert!(channel(-1).starts_with("copr_pools_"));
    }
}
