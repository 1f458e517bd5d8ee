//! What Copr polls: the enabled rules of one version, rendered once as JSON and as Copr's
//! Python configuration, with the patterns compiled once into one set for matching.
//!
//! The [`RoutingCache`] keeps the current snapshot and checks the stored version at most once
//! per `freshness` (a change made by another replica, or the CLI, is served within that time;
//! this process's own changes invalidate it at once), so a poll costs no database round trip
//! and a `304` costs a string comparison.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use sea_orm::{ConnectionTrait, DbErr};
use serde::Serialize;

use super::{PatternSet, formats};

/// One rule as served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServedRule {
    /// Its place among all rules (disabled ones included), as the admin page numbers it.
    #[serde(skip)]
    pub position: i32,
    pub pattern: String,
    pub tags: Vec<String>,
}

/// The routing of one version.
pub struct Snapshot {
    pub version: i64,
    pub generated_at: DateTime<Utc>,
    pub rules: Vec<ServedRule>,
    set: PatternSet,
    pub json: Bytes,
    pub python: Bytes,
    /// The strong ETags of the two forms, made once: a `304` compares and copies them.
    etags: [Bytes; 2],
}

/// The JSON document of `GET /api/v1/routing`.
#[derive(Serialize)]
struct Document<'a> {
    version: i64,
    generated_at: String,
    rules: &'a [ServedRule],
}

impl Snapshot {
    /// Builds the snapshot of `rules` (enabled ones, in order) at `version`.
    pub fn new(
        version: i64,
        generated_at: DateTime<Utc>,
        rules: Vec<ServedRule>,
    ) -> Result<Snapshot, String> {
        let patterns: Vec<&str> = rules.iter().map(|r| r.pattern.as_str()).collect();
        let set = PatternSet::new(&patterns)?;
        let json = serde_json::to_vec(&Document {
            version,
            generated_at: generated_at.to_rfc3339_opts(SecondsFormat::Secs, true),
            rules: &rules,
        })
        .expect("rules serialize");
        let python = formats::to_python(&rules, version, generated_at);
        let etag = |form: &str| Bytes::from(format!("\"routing-{version}-{form}\""));
        Ok(Snapshot {
            etags: [etag("json"), etag("py")],
            version,
            generated_at,
            rules,
            set,
            json: Bytes::from(json),
            python: Bytes::from(python),
        })
    }

    /// The strong ETag of the JSON form or of the Python form.
    pub fn etag(&self, python: bool) -> &Bytes {
        &self.etags[usize::from(python)]
    }

    /// The tags Copr would give `build`, and the rules that gave them, in order.
    pub fn route(&self, build: &str) -> (Vec<String>, Vec<&ServedRule>) {
        let rules: Vec<&ServedRule> = self
            .set
            .matching(build)
            .into_iter()
            .map(|i| &self.rules[i])
            .collect();
        let tags = rules.iter().flat_map(|r| r.tags.iter().cloned()).collect();
        (tags, rules)
    }
}

/// Loads the snapshot of the stored rules.
pub async fn load(db: &impl ConnectionTrait) -> Result<Snapshot, DbErr> {
    let (version, changed_at) = super::version(db).await?;
    let rules = super::list(db)
        .await?
        .into_iter()
        .filter(|r| r.enabled)
        .map(|r| ServedRule {
            position: r.position,
            pattern: r.pattern,
            tags: r.tags,
        })
        .collect();
    Snapshot::new(version, changed_at, rules).map_err(DbErr::Custom)
}

#[derive(Default)]
struct CacheState {
    snapshot: Option<Arc<Snapshot>>,
    checked: Option<Instant>,
}

/// The current snapshot, shared by every request of this process.
pub struct RoutingCache {
    state: Mutex<CacheState>,
    freshness: Duration,
}

impl RoutingCache {
    pub fn new(freshness: Duration) -> RoutingCache {
        RoutingCache {
            state: Mutex::default(),
            freshness,
        }
    }

    /// The snapshot of the stored version, checked against the database at most once per
    /// `freshness`.
    pub async fn current(&self, db: &impl ConnectionTrait) -> Result<Arc<Snapshot>, DbErr> {
        if let Some(snapshot) = self.fresh() {
            return Ok(snapshot);
        }
        let cached = self
            .state
            .lock()
            .expect("routing cache lock")
            .snapshot
            .clone();
        let (version, _) = super::version(db).await?;
        let snapshot = match cached {
            Some(snap) if snap.version == version => snap,
            _ => Arc::new(load(db).await?),
        };
        let mut s = self.state.lock().expect("routing cache lock");
        // Keep the newest of what concurrent callers loaded.
        if s.snapshot
            .as_ref()
            .is_none_or(|old| old.version <= snapshot.version)
        {
            s.snapshot = Some(snapshot.clone());
        }
        s.checked = Some(Instant::now());
        Ok(snapshot)
    }

    /// The snapshot, when the stored version was checked less than `freshness` ago.
    pub fn fresh(&self) -> Option<Arc<Snapshot>> {
        let s = self.state.lock().expect("routing cache lock");
        match (&s.snapshot, s.checked) {
            (Some(snapshot), Some(at)) if at.elapsed() < self.freshness => Some(snapshot.clone()),
            _ => None,
        }
    }

    /// Forgets when the version was last checked: this process changed the rules.
    pub fn invalidate(&self) {
        self.state.lock().expect("routing cache lock").checked = None;
    }
}
