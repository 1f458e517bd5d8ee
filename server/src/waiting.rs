//! Why builds wait: the engine's explanation ([`crate::engine::explain`]) of every waiting
//! ticket, computed from the world the engine loads, for the status page, the ticket API and
//! `copr-pools ticket info`. One computation serves every reader for a second
//! ([`WaitingCache`]), so a page or a poll costs no more than one world load per second.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use app::api::tickets::{TicketDetail, TicketMachine, TicketSearch, WaitingReason};
use app::api::{QueueGroup, QueueReason};
use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QuerySelect};

use crate::engine::explain::{Facts, Waiting, explain_all};
use crate::engine::model::{Ms, RState, World};
use crate::engine::store::{self, live_resources, open_tickets};
use crate::entities::{pools, resources, tickets};

/// The explanation of every waiting ticket at one moment.
#[derive(Debug, Default)]
pub struct Explained {
    pub at: Ms,
    pub world: World,
    pub reasons: BTreeMap<i64, Waiting>,
    /// When each waiting ticket was taken.
    pub taken_at: HashMap<i64, DateTime<Utc>>,
}

/// Loads the world as the engine does and explains every waiting ticket in it.
pub async fn explain(db: &DatabaseConnection) -> Result<Explained, DbErr> {
    let (loaded, starting, averages, waiting) = tokio::try_join!(
        store::load(db),
        resources::Entity::find()
            .filter(live_resources())
            .filter(resources::Column::State.eq(RState::Starting.as_str()))
            .select_only()
            .columns([resources::Column::Id, resources::Column::CreatedAt])
            .into_tuple::<(i32, DateTime<Utc>)>()
            .all(db),
        pools::Entity::find()
            .select_only()
            .columns([pools::Column::Name, pools::Column::StartTimeAvg])
            .into_tuple::<(String, Option<f64>)>()
            .all(db),
        tickets::Entity::find()
            .filter(open_tickets())
            .filter(tickets::Column::ResourceId.is_null())
            .select_only()
            .columns([tickets::Column::Id, tickets::Column::CreatedAt])
            .into_tuple::<(i32, DateTime<Utc>)>()
            .all(db),
    )?;
    let facts = Facts {
        started_at: starting
            .into_iter()
            .map(|(id, at)| (i64::from(id), at.timestamp_millis()))
            .collect(),
        start_time_avg: averages
            .into_iter()
            .filter_map(|(name, avg)| Some((name, avg?)))
            .collect(),
    };
    let at = Utc::now().timestamp_millis();
    let reasons = explain_all(&loaded.world, &facts, at);
    Ok(Explained {
        at,
        world: loaded.world,
        reasons,
        taken_at: waiting
            .into_iter()
            .map(|(id, t)| (i64::from(id), t))
            .collect(),
    })
}

impl Explained {
    /// A waiting ticket with its reason, as the API and pages show it.
    pub fn detail(&self, id: i64, now: DateTime<Utc>) -> Option<TicketDetail> {
        let t = self.world.tickets.get(&id)?;
        let w = self.reasons.get(&id)?;
        let taken = self.taken_at.get(&id).copied().unwrap_or(now);
        Some(TicketDetail {
            id,
            state: t.state.as_str().to_string(),
            tags: t.tags.clone(),
            sandbox: t.sandbox.clone(),
            age: (now - taken).num_milliseconds().max(0) as f64 / 1000.0,
            created_at: taken.to_rfc3339(),
            machine: None,
            waiting_reason: Some(reason(w)),
        })
    }
}

/// The last explanation, reused for `max_age`, or until the engine announces a change (then
/// reused for at most [`AFTER_CHANGE`], so a burst of changes costs ten computations a
/// second, not one per reader).
pub struct WaitingCache {
    max_age: Duration,
    last: tokio::sync::Mutex<Option<(Instant, u64, Arc<Explained>)>>,
    /// The engine's change counter ([`crate::engine::Engine::changes`]), when followed.
    changes: Option<tokio::sync::watch::Receiver<u64>>,
    /// Counts computations, for tests and metrics.
    computed: Mutex<u64>,
}

/// How long an explanation is reused once the engine has announced a change.
pub const AFTER_CHANGE: Duration = Duration::from_millis(100);

impl Default for WaitingCache {
    fn default() -> Self {
        WaitingCache::new(Duration::from_secs(1))
    }
}

impl WaitingCache {
    pub fn new(max_age: Duration) -> WaitingCache {
        WaitingCache {
            max_age,
            last: tokio::sync::Mutex::new(None),
            changes: None,
            computed: Mutex::new(0),
        }
    }

    /// A cache that also recomputes soon after the engine announces a change.
    pub fn following(changes: tokio::sync::watch::Receiver<u64>) -> WaitingCache {
        WaitingCache {
            changes: Some(changes),
            ..WaitingCache::default()
        }
    }

    /// The explanation at most `max_age` old. Concurrent callers wait for one computation.
    pub async fn get(&self, db: &DatabaseConnection) -> Result<Arc<Explained>, DbErr> {
        self.get_if(db, |_| true).await
    }

    /// [`WaitingCache::get`], computed again unless the cached explanation also satisfies
    /// `keep` (checked under the lock, so concurrent callers share one computation).
    pub async fn get_if(
        &self,
        db: &DatabaseConnection,
        keep: impl Fn(&Explained) -> bool,
    ) -> Result<Arc<Explained>, DbErr> {
        let generation = self.changes.as_ref().map_or(0, |c| *c.borrow());
        let mut last = self.last.lock().await;
        if let Some((when, seen, explained)) = last.as_ref()
            && when.elapsed() < self.max_age
            && (*seen == generation || when.elapsed() < AFTER_CHANGE)
            && keep(explained)
        {
            return Ok(explained.clone());
        }
        let explained = Arc::new(explain(db).await?);
        *last = Some((Instant::now(), generation, explained.clone()));
        *self.computed.lock().expect("counter") += 1;
        Ok(explained)
    }

    pub fn computed(&self) -> u64 {
        *self.computed.lock().expect("counter")
    }
}

fn rfc3339(ms: Ms) -> Option<String> {
    DateTime::<Utc>::from_timestamp_millis(ms).map(|t| t.to_rfc3339())
}

/// The reason as the API and pages show it.
pub fn reason(w: &Waiting) -> WaitingReason {
    WaitingReason {
        code: w.code.as_str().to_string(),
        text: w.text.clone(),
        pool: w.pool.clone(),
        tag: w.tag.clone(),
        until: w.until.and_then(rfc3339),
    }
}

/// One ticket, with its reason while it waits. None when there is no such ticket.
pub async fn ticket(
    db: &DatabaseConnection,
    cache: &WaitingCache,
    id: i64,
) -> Result<Option<TicketDetail>, DbErr> {
    let Ok(key) = i32::try_from(id) else {
        return Ok(None);
    };
    let Some(row) = tickets::Entity::find_by_id(key).one(db).await? else {
        return Ok(None);
    };
    let waiting = row.state == "OPEN" && row.resource_id.is_none();
    let explained = if waiting {
        // A ticket taken after the cached explanation is explained afresh (once, however
        // many ask at the same time).
        Some(cache.get_if(db, |e| e.reasons.contains_key(&id)).await?)
    } else {
        None
    };
    let machine = match row.resource_id {
        Some(r) => resources::Entity::find_by_id(r)
            .one(db)
            .await?
            .map(|m| TicketMachine {
                id: i64::from(m.id),
                name: m.name.unwrap_or_default(),
                pool: m.pool,
            }),
        None => None,
    };
    let now = Utc::now();
    Ok(Some(TicketDetail {
        id,
        state: row.state,
        tags: serde_json::from_str(&row.tags).unwrap_or_default(),
        sandbox: row.sandbox,
        age: (now - row.created_at).num_milliseconds().max(0) as f64 / 1000.0,
        created_at: row.created_at.to_rfc3339(),
        machine,
        waiting_reason: explained.and_then(|e| e.reasons.get(&id).map(reason)),
    }))
}

/// How many search results are shown.
pub const SEARCH_LIMIT: usize = 100;

/// Waiting tickets whose sandbox contains `query` (a Copr owner, project, `owner/project` or
/// submitter), or whose id it is, in queue order.
pub async fn search(
    db: &DatabaseConnection,
    cache: &WaitingCache,
    query: &str,
) -> Result<TicketSearch, DbErr> {
    let query = query.trim();
    let mut out = TicketSearch {
        query: query.to_string(),
        tickets: Vec::new(),
        truncated: false,
    };
    if query.is_empty() {
        return Ok(out);
    }
    let explained = cache.get(db).await?;
    let id: Option<i64> = query.trim_start_matches('#').parse().ok();
    let needle = query.to_lowercase();
    let now = Utc::now();
    for tid in explained.reasons.keys() {
        let Some(t) = explained.world.tickets.get(tid) else {
            continue;
        };
        let hit = id == Some(*tid)
            || t.sandbox
                .as_deref()
                .is_some_and(|s| s.to_lowercase().contains(&needle));
        if !hit {
            continue;
        }
        if out.tickets.len() == SEARCH_LIMIT {
            out.truncated = true;
            break;
        }
        out.tickets.extend(explained.detail(*tid, now));
    }
    Ok(out)
}

/// The waiting tickets grouped by the tags they asked for, each group with its reasons
/// (grouped by code and pool, the first ticket's sentence shown).
pub fn queue(explained: &Explained) -> Vec<QueueGroup> {
    let now = Utc::now();
    struct Group {
        waiting: i64,
        oldest: f64,
        servable: bool,
        reasons: Vec<(String, Option<String>, QueueReason)>,
    }
    let mut groups: BTreeMap<Vec<String>, Group> = BTreeMap::new();
    // Queue order (on-demand first, then oldest), as the engine serves them.
    for id in crate::engine::core::waiting_order(&explained.world) {
        let (Some(t), Some(w)) = (explained.world.tickets.get(&id), explained.reasons.get(&id))
        else {
            continue;
        };
        let age = explained.taken_at.get(&id).map_or(0.0, |at| {
            (now - *at).num_milliseconds().max(0) as f64 / 1000.0
        });
        let g = groups.entry(t.tags.clone()).or_insert(Group {
            waiting: 0,
            oldest: 0.0,
            servable: true,
            reasons: Vec::new(),
        });
        g.waiting += 1;
        g.oldest = g.oldest.max(age);
        if matches!(
            w.code,
            crate::engine::explain::WaitCode::NoPoolOffersTag
                | crate::engine::explain::WaitCode::NoPoolOffersAllTags
                | crate::engine::explain::WaitCode::PoolDedicated
        ) {
            g.servable = false;
        }
        let code = w.code.as_str().to_string();
        match g
            .reasons
            .iter_mut()
            .find(|(c, p, _)| *c == code && *p == w.pool)
        {
            Some((_, _, r)) => r.count += 1,
            None => g.reasons.push((
                code.clone(),
                w.pool.clone(),
                QueueReason {
                    code,
                    text: w.text.clone(),
                    count: 1,
                },
            )),
        }
    }
    groups
        .into_iter()
        .map(|(tags, g)| QueueGroup {
            tags,
            waiting: g.waiting,
            oldest_age_secs: g.oldest,
            servable: g.servable,
            reasons: g.reasons.into_iter().map(|(_, _, r)| r).collect(),
        })
        .collect()
}
