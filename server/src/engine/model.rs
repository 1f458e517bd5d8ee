//! The engine's vocabulary: pools, machines (resources), tickets and their states, as the pure
//! core sees them. Nothing here touches the database, the clock or a process.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch: the engine's only notion of time.
pub type Ms = i64;

/// A tag a pool offers, with the priority it adds to a matching ticket's score.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Tag {
    pub name: String,
    #[serde(default)]
    pub priority: i64,
}

impl Tag {
    pub fn new(name: impl Into<String>, priority: i64) -> Tag {
        Tag {
            name: name.into(),
            priority,
        }
    }
}

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(text: &str) -> Option<$name> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum!(
    /// What the engine may do with a pool.
    PoolState {
        /// Machines start, serve and are reused.
        Active = "active",
        /// No new machines start; existing ones keep serving.
        Paused = "paused",
        /// No new machines start, idle ones are deleted, taken ones go when released.
        Draining = "draining",
        /// Like draining, and kept only for history.
        Retired = "retired",
    }
);

string_enum!(
    /// resalloc's resource states.
    RState {
        Starting = "STARTING",
        Up = "UP",
        Releasing = "RELEASING",
        DeleteRequest = "DELETE_REQUEST",
        Deleting = "DELETING",
        Ended = "ENDED",
    }
);

string_enum!(
    /// resalloc's ticket states.
    TState {
        Open = "OPEN",
        Closed = "CLOSED",
        Failed = "FAILED",
    }
);

string_enum!(
    /// Why a machine is deleted; stored with it and shown to admins.
    DeleteReason {
        LivecheckFailed = "livecheck failed",
        ReuseOff = "released, reuse is off",
        ReuseWindowExpired = "released, not reused in time",
        ReuseMaxTime = "reuse time limit reached",
        ReuseMaxCount = "reuse count limit reached",
        OnDemandSurplus = "no ticket waits for it",
        Draining = "pool is draining",
        OverMax = "pool max was lowered",
        Requested = "deletion requested",
        StartTimedOut = "cmd_new timed out",
        ReleaseFailed = "cmd_release failed",
        Restart = "its hook was lost (the engine restarted while it ran)",
    }
);

string_enum!(
    /// The hook a machine is busy with.
    HookKind {
        New = "alloc",
        Delete = "terminate",
        Release = "release",
        Livecheck = "watch",
        List = "list",
    }
);

/// Timeouts of each hook, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookTimeouts {
    pub new: u32,
    pub delete: u32,
    pub livecheck: u32,
    pub release: u32,
    pub list: u32,
}

impl Default for HookTimeouts {
    fn default() -> Self {
        // cmd_new covers boot plus provisioning playbooks (Copr's take minutes); the others
        // are quick calls. cmd_list and the unknown-machine deletes use resalloc's 120 s.
        HookTimeouts {
            new: 3600,
            delete: 900,
            livecheck: 300,
            release: 900,
            list: 120,
        }
    }
}

impl HookTimeouts {
    pub fn for_kind(&self, kind: HookKind) -> u32 {
        match kind {
            HookKind::New => self.new,
            HookKind::Delete => self.delete,
            HookKind::Release => self.release,
            HookKind::Livecheck => self.livecheck,
            HookKind::List => self.list,
        }
    }
}

/// A pool's definition: every resalloc `pools.yaml` key plus what copr-pools adds.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolConfig {
    pub name: String,
    pub state: PoolState,
    pub owner_team_id: Option<i32>,
    pub description: Option<String>,
    pub max: u32,
    pub max_starting: u32,
    pub max_prealloc: u32,
    /// Seconds between two starts in this pool.
    pub start_delay: u32,
    pub cmd_new: String,
    pub cmd_delete: String,
    pub cmd_livecheck: Option<String>,
    pub cmd_release: Option<String>,
    pub cmd_list: Option<String>,
    pub livecheck_period: u32,
    pub livecheck_attempts: u32,
    pub reuse_opportunity_time: u32,
    /// 0 means unlimited.
    pub reuse_max_count: u32,
    /// 0 means unlimited.
    pub reuse_max_time: u32,
    pub name_pattern: String,
    pub tags: Vec<Tag>,
    pub tags_on_demand: Vec<Tag>,
    pub named_counters: Vec<String>,
    pub timeouts: HookTimeouts,
    /// Waiting tickets that nothing can serve may start machines here (resalloc #32).
    pub start_on_waiting: bool,
    /// Seconds between two `cmd_list` runs.
    pub list_period: u32,
    /// An unknown machine is deleted only when two listings at least this many seconds apart
    /// both report it.
    pub unknown_min_age: u32,
    /// The team credential handed to this pool's hooks (pools.yaml: `credential: team/name`).
    pub credential_id: Option<i32>,
    /// Tags a ticket must carry for this pool to serve it (beyond resalloc): a dedicated
    /// pool's machines go only to its team's builds, however idle they are.
    pub tags_required: Vec<String>,
    /// What one machine costs per hour, for usage, cost and the monthly cap.
    pub price_per_hour: Option<f64>,
    /// No new machine starts once this month's cost reaches this (in the price's currency).
    pub monthly_cap: Option<f64>,
}

impl PoolConfig {
    /// A pool with resalloc's defaults and the given commands.
    pub fn new(
        name: impl Into<String>,
        cmd_new: impl Into<String>,
        cmd_delete: impl Into<String>,
    ) -> Self {
        PoolConfig {
            name: name.into(),
            state: PoolState::Active,
            owner_team_id: None,
            description: None,
            max: 4,
            max_starting: 1,
            max_prealloc: 2,
            start_delay: 0,
            cmd_new: cmd_new.into(),
            cmd_delete: cmd_delete.into(),
            cmd_livecheck: None,
            cmd_release: None,
            cmd_list: None,
            livecheck_period: 600,
            livecheck_attempts: 3,
            reuse_opportunity_time: 0,
            reuse_max_count: 0,
            reuse_max_time: 3600,
            name_pattern: "{pool_name}_{id}_{datetime}".into(),
            tags: Vec::new(),
            tags_on_demand: Vec::new(),
            named_counters: Vec::new(),
            timeouts: HookTimeouts::default(),
            start_on_waiting: false,
            list_period: 1800,
            unknown_min_age: 600,
            credential_id: None,
            tags_required: Vec::new(),
            price_per_hour: None,
            monthly_cap: None,
        }
    }

    /// On-demand pools preallocate nothing and start only for tickets with their tags.
    pub fn is_on_demand(&self) -> bool {
        !self.tags_on_demand.is_empty()
    }

    /// resalloc forces `max_prealloc` to 0 for on-demand pools.
    pub fn effective_prealloc(&self) -> u32 {
        if self.is_on_demand() {
            0
        } else {
            self.max_prealloc
        }
    }

    /// The tags machines of this pool carry: normal and on-demand.
    pub fn all_tags(&self) -> impl Iterator<Item = &Tag> {
        self.tags.iter().chain(self.tags_on_demand.iter())
    }

    /// The sum of the pool's priorities for the requested tags, or None when the pool does
    /// not offer all of them (resalloc's `get_tags_priority`).
    pub fn tags_priority(&self, requested: &[String]) -> Option<i64> {
        score(self.all_tags(), requested)
    }

    /// Whether a ticket with these tags carries every tag in `tags_required`.
    pub fn admits(&self, requested: &[String]) -> bool {
        self.tags_required
            .iter()
            .all(|t| requested.iter().any(|r| r == t))
    }

    /// [`PoolConfig::tags_priority`] for tickets this pool admits; None for the others.
    pub fn serves(&self, requested: &[String]) -> Option<i64> {
        if self.admits(requested) {
            self.tags_priority(requested)
        } else {
            None
        }
    }

    /// Whether machines may be started in this pool now.
    pub fn may_start(&self) -> bool {
        self.state == PoolState::Active
    }

    /// Whether idle machines of this pool are to be deleted.
    pub fn is_winding_down(&self) -> bool {
        matches!(self.state, PoolState::Draining | PoolState::Retired)
    }
}

/// Sum of priorities of `requested` over `offered`, or None unless every requested tag is
/// offered (ticket tags ⊆ resource tags). Duplicate offers of one name count once.
pub fn score<'a>(offered: impl Iterator<Item = &'a Tag>, requested: &[String]) -> Option<i64> {
    let mut found = 0usize;
    let mut total = 0i64;
    let mut seen: Vec<&str> = Vec::new();
    for tag in offered {
        if seen.contains(&tag.name.as_str()) {
            continue;
        }
        if requested.iter().any(|r| r == &tag.name) {
            found += 1;
            total += tag.priority;
            seen.push(&tag.name);
        }
    }
    (found == requested.len()).then_some(total)
}

/// What the engine remembers of a pool between passes, besides its definition.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PoolRuntime {
    pub last_start: Option<Ms>,
    pub last_list: Option<Ms>,
    /// What the pool's machines cost this month so far, the running ones' time included.
    pub month_cost: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Pool {
    pub config: PoolConfig,
    pub runtime: PoolRuntime,
}

impl Pool {
    /// The month's cost has reached the pool's cap: no new machine starts until next month.
    pub fn over_cap(&self) -> bool {
        self.config
            .monthly_cap
            .is_some_and(|cap| self.runtime.month_cost >= cap)
    }

    /// Whether machines may be started in this pool now: active and under its cap.
    pub fn may_start(&self) -> bool {
        self.config.may_start() && !self.over_cap()
    }
}

/// A machine, in any state but ENDED.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    pub id: i64,
    pub pool: String,
    pub name: String,
    pub state: RState,
    /// The pool's tags, copied when the machine came up (empty before).
    pub tags: Vec<Tag>,
    pub ticket: Option<i64>,
    pub sandbox: Option<String>,
    pub sandboxed_since: Option<Ms>,
    pub released_at: Option<Ms>,
    pub releases: u32,
    pub check_failed: u32,
    pub check_last: Option<Ms>,
    pub up_at: Option<Ms>,
    pub id_in_pool: u32,
    pub counters: Vec<(String, u32)>,
}

impl Resource {
    /// A machine just inserted by a start, before `cmd_new` has run.
    pub fn starting(
        id: i64,
        pool: &str,
        name: String,
        id_in_pool: u32,
        counters: Vec<(String, u32)>,
    ) -> Resource {
        Resource {
            id,
            pool: pool.to_string(),
            name,
            state: RState::Starting,
            tags: Vec::new(),
            ticket: None,
            sandbox: None,
            sandboxed_since: None,
            released_at: None,
            releases: 0,
            check_failed: 0,
            check_last: None,
            up_at: None,
            id_in_pool,
            counters,
        }
    }

    /// UP, without a ticket, and healthy: may be given to a ticket.
    pub fn is_ready(&self) -> bool {
        self.state == RState::Up && self.ticket.is_none() && self.check_failed == 0
    }

    /// Ready and never used: the "free" machines that preallocation counts.
    pub fn is_free(&self) -> bool {
        self.is_ready() && self.releases == 0
    }
}

/// A ticket the engine still cares about: OPEN, or referenced by a machine.
#[derive(Debug, Clone, PartialEq)]
pub struct Ticket {
    pub id: i64,
    pub state: TState,
    /// Sorted, without duplicates.
    pub tags: Vec<String>,
    pub sandbox: Option<String>,
    pub resource: Option<i64>,
}

impl Ticket {
    pub fn is_waiting(&self) -> bool {
        self.state == TState::Open && self.resource.is_none()
    }
}

/// The result of a hook, fed into the next pass.
#[derive(Debug, Clone, PartialEq)]
pub enum HookOutcome {
    /// `cmd_new` finished. `data` is the captured standard output when it succeeded.
    Started {
        resource: i64,
        result: HookResult,
        data: Vec<u8>,
        took_ms: Ms,
    },
    /// `cmd_release` finished.
    Released { resource: i64, result: HookResult },
    /// `cmd_delete` finished (its exit status is ignored, like resalloc does). A delete that
    /// hung is tried again rather than trusted.
    Deleted { resource: i64, timed_out: bool },
    /// `cmd_livecheck` finished.
    Checked { resource: i64, result: HookResult },
    /// A hook was cancelled because its machine is being deleted.
    Cancelled { resource: i64, kind: HookKind },
    /// `cmd_list` printed these machine names.
    Listed {
        pool: String,
        names: Option<Vec<String>>,
    },
    /// A leaked machine's `cmd_delete` finished.
    UnknownDeleted { pool: String, name: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookResult {
    Success,
    Failed,
    TimedOut,
}

/// Everything a pass looks at.
#[derive(Debug, Clone, Default)]
pub struct World {
    pub pools: BTreeMap<String, Pool>,
    /// Machines that are not ENDED.
    pub resources: BTreeMap<i64, Resource>,
    /// OPEN tickets, and tickets referenced by a machine.
    pub tickets: BTreeMap<i64, Ticket>,
    /// Machines with a hook running, and which.
    pub busy: BTreeMap<i64, HookKind>,
    /// Pools whose `cmd_list` is running.
    pub listing: BTreeSet<String>,
    /// Unknown machines seen by `cmd_list`: (pool, name) → first seen.
    pub unknown: BTreeMap<(String, String), Ms>,
    /// Hook results not yet applied.
    pub outcomes: Vec<HookOutcome>,
}

impl World {
    /// The names of every machine the engine tracks (any pool).
    pub fn known_names(&self) -> std::collections::BTreeSet<&str> {
        self.resources.values().map(|r| r.name.as_str()).collect()
    }
}

impl HookOutcome {
    /// The machine the hook ran for, if it ran for one.
    pub fn resource(&self) -> Option<i64> {
        match self {
            HookOutcome::Started { resource, .. }
            | HookOutcome::Released { resource, .. }
            | HookOutcome::Deleted { resource, .. }
            | HookOutcome::Checked { resource, .. }
            | HookOutcome::Cancelled { resource, .. } => Some(*resource),
            HookOutcome::Listed { .. } | HookOutcome::UnknownDeleted { .. } => None,
        }
    }
}
