//! Tickets as clients see them: take, collect, wait and close, with resalloc's semantics.
//! These functions write the database and wake the engine; the engine decides which machine a
//! ticket gets.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveValue::Set, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter};
use tokio::sync::Notify;

use super::model::TState;
use crate::entities::{resources, tickets};

/// A ticket's state as `collectTicket` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketView {
    pub id: i64,
    pub state: TState,
    pub tags: Vec<String>,
    pub sandbox: Option<String>,
    pub resource_id: Option<i64>,
    /// The assigned machine's data (`cmd_new` output), when it has one.
    pub output: Option<Vec<u8>>,
}

impl TicketView {
    /// resalloc's `ready`: a machine was assigned (stays true once FAILED or CLOSED).
    pub fn ready(&self) -> bool {
        self.resource_id.is_some()
    }
}

/// Normalizes requested tags: sorted, without duplicates (resalloc faults on a duplicate
/// through a primary-key error; a client cannot mean anything by one, so it is dropped).
pub fn normalize_tags(tags: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut tags: Vec<String> = tags.into_iter().collect();
    tags.sort();
    tags.dedup();
    tags
}

/// Stores a new OPEN ticket and returns its id.
pub async fn take(
    db: &DatabaseConnection,
    tags: Vec<String>,
    sandbox: Option<String>,
) -> Result<i64, DbErr> {
    let tags = normalize_tags(tags);
    let inserted = tickets::Entity::insert(tickets::ActiveModel {
        state: Set(TState::Open.as_str().into()),
        tags: Set(serde_json::to_string(&tags).expect("tags serialize")),
        sandbox: Set(sandbox.filter(|s| !s.is_empty())),
        resource_id: Set(None),
        assigned_ms: Set(None),
        closed_ms: Set(None),
        created_at: Set(Utc::now()),
        ..Default::default()
    })
    .exec(db)
    .await?;
    Ok(i64::from(inserted.last_insert_id))
}

/// The ticket and its machine's data, or None for an unknown id.
pub async fn collect(db: &DatabaseConnection, id: i64) -> Result<Option<TicketView>, DbErr> {
    let Ok(id32) = i32::try_from(id) else {
        return Ok(None);
    };
    // One round trip: the ticket and its machine's data.
    let Some((t, machine)) = tickets::Entity::find_by_id(id32)
        .find_also_related(resources::Entity)
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    let output = machine.and_then(|r| r.data);
    Ok(Some(TicketView {
        id,
        state: TState::parse(&t.state).unwrap_or(TState::Open),
        tags: serde_json::from_str(&t.tags).unwrap_or_default(),
        sandbox: t.sandbox,
        resource_id: t.resource_id.map(i64::from),
        output,
    }))
}

/// Closes the ticket. Returns false for an unknown id; closing twice is harmless.
pub async fn close(db: &DatabaseConnection, id: i64) -> Result<bool, DbErr> {
    let Ok(id32) = i32::try_from(id) else {
        return Ok(false);
    };
    let r = tickets::Entity::update_many()
        .col_expr(tickets::Column::State, Expr::value(TState::Closed.as_str()))
        .col_expr(
            tickets::Column::ClosedMs,
            Expr::value(Utc::now().timestamp_millis()),
        )
        .filter(tickets::Column::Id.eq(id32))
        .filter(tickets::Column::State.ne(TState::Closed.as_str()))
        .exec(db)
        .await?;
    if r.rows_affected == 1 {
        return Ok(true);
    }
    Ok(tickets::Entity::find_by_id(id32).one(db).await?.is_some())
}

/// Wakes `waitTicket` callers when their ticket gets a machine, handing them the machine's
/// data. Holds no thread and no database connection per waiter: a waiter is a slot in a map.
#[derive(Default)]
pub struct Waiters {
    map: Mutex<HashMap<i64, Arc<Slot>>>,
}

#[derive(Default)]
struct Slot {
    notify: Notify,
    /// The data of the machine the ticket got, set by the engine after it committed.
    data: Mutex<Option<Vec<u8>>>,
}

impl Waiters {
    /// Registers a waiter for the ticket. Dropping the guard (the call returned, or its
    /// client went away and the call was dropped) unregisters it.
    fn subscribe(&self, id: i64) -> WaiterGuard<'_> {
        let slot = self
            .map
            .lock()
            .expect("waiters lock")
            .entry(id)
            .or_default()
            .clone();
        WaiterGuard {
            waiters: self,
            id,
            slot: Some(slot),
        }
    }

    /// How many tickets have someone waiting for them.
    pub fn len(&self) -> usize {
        self.map.lock().expect("waiters lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Makes the waiters of these tickets re-read them (another replica assigned them).
    pub fn poke(&self, tickets: &[i64]) {
        let map = self.map.lock().expect("waiters lock");
        for id in tickets {
            if let Some(slot) = map.get(id) {
                slot.notify.notify_waiters();
            }
        }
    }

    /// Makes every waiter re-read its ticket.
    pub fn poke_all(&self) {
        for slot in self.map.lock().expect("waiters lock").values() {
            slot.notify.notify_waiters();
        }
    }

    /// Tells everyone waiting for these tickets that they got a machine with this data.
    /// Call only after the assignment is committed.
    pub fn assigned(&self, tickets: impl IntoIterator<Item = (i64, Vec<u8>)>) {
        let map = self.map.lock().expect("waiters lock");
        for (id, data) in tickets {
            if let Some(slot) = map.get(&id) {
                *slot.data.lock().expect("slot lock") = Some(data);
                slot.notify.notify_waiters();
            }
        }
    }
}

/// One `waitTicket` call's registration; removes the ticket's slot with the last waiter.
struct WaiterGuard<'a> {
    waiters: &'a Waiters,
    id: i64,
    slot: Option<Arc<Slot>>,
}

impl std::ops::Deref for WaiterGuard<'_> {
    type Target = Slot;

    fn deref(&self) -> &Slot {
        self.slot
            .as_ref()
            .expect("the slot lives as long as its guard")
    }
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        let mut map = self.waiters.map.lock().expect("waiters lock");
        drop(self.slot.take());
        if map.get(&self.id).is_some_and(|n| Arc::strong_count(n) == 1) {
            map.remove(&self.id);
        }
    }
}

/// Waits until the ticket has a machine and returns the machine's data (resalloc's
/// `waitTicket`). Re-reads the ticket every `recheck` in case the assignment happened on
/// another replica. Returns None for an unknown ticket.
pub async fn wait(
    db: &DatabaseConnection,
    waiters: &Waiters,
    id: i64,
    recheck: Duration,
) -> Result<Option<Vec<u8>>, DbErr> {
    // The guard unregisters the waiter however this ends, dropped halfway included.
    let slot = waiters.subscribe(id);
    loop {
        let notified = slot.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if let Some(data) = slot.data.lock().expect("slot lock").clone() {
            return Ok(Some(data));
        }
        match collect(db, id).await? {
            None => return Ok(None),
            Some(t) if t.ready() => return Ok(Some(t.output.unwrap_or_default())),
            Some(_) => {}
        }
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep(recheck) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{self, DbSettings};

    async fn database(dir: &std::path::Path) -> DatabaseConnection {
        let db = db::connect(&DbSettings {
            url: format!("sqlite://{}?mode=rwc", dir.join("t.sqlite").display()),
            max_connections: 2,
            schema: None,
        })
        .await
        .unwrap();
        db::migrate(&db).await.unwrap();
        db
    }

    #[tokio::test]
    async fn callers_who_leave_leave_no_waiter_behind() {
        let dir = tempfile::tempdir().unwrap();
        let db = database(dir.path()).await;
        let waiters = Waiters::default();
        let open = take(&db, vec!["copr_builder".into()], None).await.unwrap();

        // 100,000 calls dropped at their first await (a client that went away at once),
        // spread over 1,000 tickets: each is polled once and dropped.
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        for i in 0..100_000i64 {
            let id = if i % 1000 == 0 {
                open
            } else {
                1_000_000 + i % 1000
            };
            let call = std::pin::pin!(wait(&db, &waiters, id, Duration::from_secs(10)));
            let _ = std::future::Future::poll(call, &mut cx);
        }
        assert_eq!(waiters.len(), 0, "abandoned calls left waiters behind");

        // 200 calls parked on an open ticket, then dropped (their clients disconnected).
        let waiters = Arc::new(waiters);
        let calls: Vec<_> = (0..200)
            .map(|_| {
                let (db, waiters) = (db.clone(), waiters.clone());
                tokio::spawn(
                    async move { wait(&db, &waiters, open, Duration::from_secs(3600)).await },
                )
            })
            .collect();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while waiters.len() != 1 && tokio::time::Instant::now() < deadline {
            tokio::task::yield_now().await;
        }
        assert_eq!(waiters.len(), 1, "the parked calls share one ticket's slot");
        for call in &calls {
            call.abort();
        }
        for call in calls {
            assert!(call.await.unwrap_err().is_cancelled());
        }
        assert_eq!(waiters.len(), 0, "dropped calls left their slot behind");
    }
}
