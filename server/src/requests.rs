//! Pool requests: a team asks for a dedicated pool (only its builds, on its cloud account)
//! or a community pool (everyone's builds, sponsored), or for a change to one of its pools;
//! an admin approves (with the limits adjusted) or rejects with a reason; a member may
//! withdraw. Every step is kept with who, when and why, and audited.
//!
//! Approval is one transaction: the request leaves `submitted` with a guarded update (two
//! admins, or two tabs, approving at once make one pool), the pools are saved (one per
//! architecture, commands from the kind's spawner template) and the routing rules that feed
//! them are appended.

use std::collections::BTreeMap;

use app::api::credentials::kind_label;
use app::api::requests::*;
use app::error::{AppError, FieldError};
use chrono::Utc;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::accounts;
use crate::audit::{self, Actor};
use crate::config::Config;
use crate::engine::model::{PoolConfig, PoolState, Tag};
use crate::entities::{credentials, pool_requests, pools, request_events, teams};
use crate::pools::PoolsError;

/// What a request asks for beside its name, kind and credential (stored as JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestSpec {
    pub arches: Vec<String>,
    pub params: BTreeMap<String, String>,
    pub budget: Budget,
    pub scope: Vec<String>,
    pub justification: String,
    /// A change request: the pool it changes.
    #[serde(default)]
    pub pool: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("{}", .0.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<FieldError>),
    #[error("{0} was not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Db(#[from] DbErr),
}

impl From<RequestError> for AppError {
    fn from(e: RequestError) -> AppError {
        match e {
            RequestError::Invalid(errors) => AppError::Invalid(errors),
            RequestError::NotFound(what) => AppError::NotFound(what),
            RequestError::Conflict(why) => AppError::Conflict(why),
            RequestError::Db(e) => {
                tracing::error!(error = %e, "database error in the requests");
                AppError::Internal
            }
        }
    }
}

impl From<PoolsError> for RequestError {
    fn from(e: PoolsError) -> RequestError {
        match e {
            PoolsError::Invalid(errors) => RequestError::Invalid(
                errors
                    .into_iter()
                    .map(|e| FieldError {
                        field: "approve".into(),
                        message: e.to_string(),
                    })
                    .collect(),
            ),
            PoolsError::Db(e) => RequestError::Db(e),
        }
    }
}

fn problem(field: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        message: message.into(),
    }
}

/// How a pool runs now: `on_demand` when it starts machines for waiting builds only.
pub fn current_choice(pool: &pools::Model) -> &'static str {
    let on_demand: Vec<Tag> = serde_json::from_str(&pool.tags_on_demand).unwrap_or_default();
    if on_demand.is_empty() {
        "preallocated"
    } else {
        "on_demand"
    }
}

/// The tag a team's dedicated pools carry and its routing rules add: `team_<group>`.
pub fn team_tag(team: &str) -> String {
    format!("team_{team}")
}

/// The tag a community on-demand pool starts machines for.
pub fn on_demand_tag(name: &str) -> String {
    format!("on_demand_{name}")
}

/// A request name: 1–40 lower-case letters, digits and '-', starting with a letter; its
/// pools are `<name>-<arch>`.
fn check_name(name: &str) -> Result<(), String> {
    let ok = (1..=40).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err("Name it with 1 to 40 lower-case letters, digits and '-', starting with a letter, e.g. llvm-builders; its pools are named <name>-<arch>.".into())
    }
}

/// A cloud parameter: names, ids, lists of them.
fn check_param(name: &str, value: &str) -> Result<(), String> {
    let numeric = |min: u64, max: u64, what: &str| {
        value
            .parse::<u64>()
            .ok()
            .filter(|n| (min..=max).contains(n))
            .map(|_| ())
            .ok_or_else(|| format!("Enter {what} from {min} to {max}."))
    };
    match name {
        "volume_size" => numeric(1, 16_384, "a size in GB"),
        "cpus" => numeric(1, 512, "a number of CPUs"),
        "ram_mb" => numeric(512, 4_194_304, "the memory in MB"),
        _ => {
            if value.len() > 256
                || !value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._:/=,-@".contains(c) || c == ' ')
            {
                Err("Use letters, digits and . _ : / = , - @ only (ids, names, comma-separated lists).".into())
            } else if value.split(',').any(|v| v.trim().starts_with('-')) {
                // The spawner would read it as one of its options.
                Err("Start each value with a letter or digit, not '-'.".into())
            } else {
                Ok(())
            }
        }
    }
}

/// Reads a number field; `None` with an error when it is not one.
fn number(
    values: &FormValues,
    field: &str,
    errors: &mut Vec<FieldError>,
    what: &str,
) -> Option<f64> {
    let raw = values.get(field).map(|v| v.trim()).unwrap_or("");
    if raw.is_empty() {
        return None;
    }
    match raw.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Some(v),
        _ => {
            errors.push(problem(
                field,
                format!("Enter {what}: a number, 0 or more."),
            ));
            None
        }
    }
}

/// A checked request, ready to store.
pub struct Draft {
    pub team_id: i32,
    pub purpose: String,
    pub name: String,
    pub pool_kind: String,
    pub credential_id: Option<i32>,
    pub spec: RequestSpec,
}

/// The team's live credential `id`, with its kind and region.
async fn team_credential(
    db: &impl ConnectionTrait,
    team_id: i32,
    id: i32,
) -> Result<Option<credentials::Model>, DbErr> {
    credentials::Entity::find_by_id(id)
        .filter(credentials::Column::TeamId.eq(team_id))
        .filter(credentials::Column::RevokedAt.is_null())
        .one(db)
        .await
}

/// The credential's region (a non-secret field of most kinds).
pub fn region_of(c: &credentials::Model) -> String {
    serde_json::from_str::<BTreeMap<String, String>>(&c.fields)
        .ok()
        .and_then(|f| f.get("region").cloned())
        .unwrap_or_default()
}

/// Checks what a form posted: every field, with a message that says what to fix.
pub async fn check(
    db: &DatabaseConnection,
    team: &str,
    values: &FormValues,
    prices: &[PriceEntry],
) -> Result<Draft, RequestError> {
    let team_row = accounts::team(db, team)
        .await?
        .ok_or_else(|| RequestError::NotFound(format!("team {team}")))?;
    let mut errors = Vec::new();
    let get = |k: &str| {
        values
            .get(k)
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    let justification = get("justification");
    if justification.chars().count() < 10 {
        errors.push(problem(
            "justification",
            "Say in a sentence or two what the builders are for (at least 10 characters), so an admin can decide.",
        ));
    } else if justification.len() > 4000 {
        errors.push(problem("justification", "Keep it under 4000 characters."));
    }
    let budget_choice = get("budget");
    if !matches!(budget_choice.as_str(), "on_demand" | "preallocated") {
        errors.push(problem("budget", "Choose on demand or preallocated."));
    }
    let max = number(values, "max", &mut errors, "the most machines at once");
    let max = match max {
        Some(m) if (1.0..=1000.0).contains(&m) && m.fract() == 0.0 => m as u32,
        Some(_) => {
            errors.push(problem(
                "max",
                "Enter a whole number of machines from 1 to 1000.",
            ));
            0
        }
        None => {
            if !errors.iter().any(|e| e.field == "max") {
                errors.push(problem(
                    "max",
                    "Enter the most machines that may run at once.",
                ));
            }
            0
        }
    };
    let prealloc = if budget_choice == "preallocated" {
        match number(values, "prealloc", &mut errors, "the machines kept ready") {
            Some(n) if n >= 1.0 && n.fract() == 0.0 && (n as u32) <= max.max(1) => n as u32,
            Some(_) if !errors.iter().any(|e| e.field == "prealloc") => {
                errors.push(problem(
                    "prealloc",
                    format!(
                        "Keep from 1 to {} machines ready (at most max).",
                        max.max(1)
                    ),
                ));
                0
            }
            None if !errors.iter().any(|e| e.field == "prealloc") => {
                errors.push(problem(
                    "prealloc",
                    "Enter how many machines are kept ready.",
                ));
                0
            }
            _ => 0,
        }
    } else {
        0
    };
    let monthly_cap = number(values, "monthly_cap", &mut errors, "the monthly cap");
    let build_hours = number(
        values,
        "build_hours",
        &mut errors,
        "the expected build hours",
    )
    .unwrap_or(0.0);

    let change = get("change");
    let (purpose, name, pool_kind, credential, arches, params, scope, typed_price);
    if change.is_empty() {
        purpose = "new".to_string();
        name = get("name");
        if let Err(m) = check_name(&name) {
            errors.push(problem("name", m));
        }
        pool_kind = get("pool_kind");
        if !matches!(pool_kind.as_str(), "dedicated" | "community") {
            errors.push(problem("pool_kind", "Choose dedicated or community."));
        }
        credential = match get("credential").parse::<i32>() {
            Ok(id) => team_credential(db, team_row.id, id).await?,
            Err(_) => None,
        };
        if credential.is_none() {
            errors.push(problem(
                "credential",
                "Choose one of your team's credentials (add one on the team page first).",
            ));
        }
        arches = ARCHES
            .iter()
            .filter(|a| {
                values
                    .get(&format!("arch_{a}"))
                    .is_some_and(|v| !v.is_empty())
            })
            .map(|a| a.to_string())
            .collect::<Vec<_>>();
        if arches.is_empty() {
            errors.push(problem("arches", "Tick at least one architecture."));
        }
        let kind = credential.as_ref().map_or("", |c| c.kind.as_str());
        let mut p = BTreeMap::new();
        for f in param_specs(kind, &arches) {
            let v = get(&f.name);
            if v.is_empty() {
                errors.push(problem(
                    &f.name,
                    format!("Enter the {}.", f.label.to_lowercase()),
                ));
            } else if let Err(m) = check_param(&f.name, &v) {
                errors.push(problem(&f.name, m));
            } else {
                p.insert(f.name.clone(), v);
            }
        }
        params = p;
        let mut patterns: Vec<String> = get("scope")
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        let routed = pool_kind == "dedicated" || budget_choice == "on_demand";
        if patterns.is_empty() && pool_kind == "dedicated" {
            patterns.push(format!("@{team}/.*"));
        }
        if patterns.is_empty() && routed {
            errors.push(problem(
                "scope",
                "Name the builds this on-demand pool is for, e.g. .*/.*/.*/chromium for every chromium build.",
            ));
        }
        for pattern in &patterns {
            if let Err(m) = crate::routing::check_pattern(pattern) {
                errors.push(problem("scope", m));
            } else if !routed {
                // A preallocated community pool serves every build: no rule, no check.
            } else if pool_kind == "dedicated" && crate::routing::owner_of(pattern).is_none() {
                errors.push(problem(
                    "scope",
                    format!("{pattern} does not name whose projects it is for: start it with the owner, e.g. @{team}/.* (a pattern that matches anyone's builds would take them away from Copr's pools)."),
                ));
            } else if crate::routing::matches_everything(pattern) {
                errors.push(problem(
                    "scope",
                    format!("{pattern} matches every build, which would then wait for this pool alone: name the projects or packages it is for."),
                ));
            }
        }
        scope = patterns;
        typed_price = number(
            values,
            "price_per_hour",
            &mut errors,
            "the price per machine-hour",
        );
        if errors.iter().all(|e| e.field != "name") {
            let taken = pools::Entity::find()
                .filter(pools::Column::Name.is_in(arches.iter().map(|a| format!("{name}-{a}"))))
                .one(db)
                .await?;
            let pending = pool_requests::Entity::find()
                .filter(pool_requests::Column::Name.eq(name.as_str()))
                .filter(pool_requests::Column::Purpose.eq("new"))
                .filter(pool_requests::Column::State.eq("submitted"))
                .one(db)
                .await?;
            if let Some(p) = taken {
                errors.push(problem(
                    "name",
                    format!("A pool named {} exists already: pick another name.", p.name),
                ));
            } else if pending.is_some() {
                errors.push(problem(
                    "name",
                    "A request with this name is waiting for approval: pick another name.",
                ));
            }
        }
    } else {
        purpose = "change".to_string();
        let pool = pools::Entity::find_by_id(change.clone())
            .filter(pools::Column::OwnerTeamId.eq(team_row.id))
            .one(db)
            .await?
            .ok_or_else(|| RequestError::NotFound(format!("pool {change} of team {team}")))?;
        let original = match pool.request_id {
            Some(id) => pool_requests::Entity::find_by_id(id).one(db).await?,
            None => None,
        };
        let Some(original) = original else {
            return Err(RequestError::Invalid(vec![problem(
                "change",
                "This pool was not made from a request: ask an admin to change it.",
            )]));
        };
        let spec: RequestSpec = serde_json::from_str(&original.spec).map_err(|e| {
            RequestError::Conflict(format!(
                "the request that made this pool cannot be read: {e}"
            ))
        })?;
        name = change.clone();
        pool_kind = original.pool_kind.clone();
        credential = match original.credential_id {
            Some(id) => team_credential(db, team_row.id, id).await?,
            None => None,
        };
        // A change is to this one pool: its architecture, its own cap.
        let Some(arch) = pool
            .name
            .strip_prefix(&format!("{}-", original.name))
            .filter(|a| ARCHES.contains(a))
        else {
            return Err(RequestError::Invalid(vec![problem(
                "change",
                "This pool's architecture cannot be told from its name: ask an admin to change it.",
            )]));
        };
        arches = vec![arch.to_string()];
        let now = current_choice(&pool);
        if budget_choice != now && !budget_choice.is_empty() {
            // The request's pools share one routing tag, which resalloc allows as an
            // on-demand or a normal tag, not both: they switch together or not at all.
            let siblings: Vec<String> = pools::Entity::find()
                .filter(pools::Column::RequestId.eq(original.id))
                .filter(pools::Column::Name.ne(pool.name.as_str()))
                .filter(pools::Column::State.ne(PoolState::Retired.as_str()))
                .all(db)
                .await?
                .into_iter()
                .map(|p| p.name)
                .collect();
            if !siblings.is_empty() {
                errors.push(problem(
                    "budget",
                    format!(
                        "{} share this pool's routing tag (one request made them), so they switch between on demand and preallocated together: keep {} here, or request a new pool.",
                        siblings.join(", "),
                        if now == "on_demand" { "on demand" } else { "preallocated" }
                    ),
                ));
            }
        }
        params = spec.params.clone();
        scope = spec.scope.clone();
        typed_price = number(
            values,
            "price_per_hour",
            &mut errors,
            "the price per machine-hour",
        );
    }

    let price = match (typed_price, &credential) {
        (Some(p), _) => Some(p),
        (None, Some(c)) => list_price(
            prices,
            &c.kind,
            &region_of(c),
            params
                .get("instance_type")
                .or(params.get("flavor"))
                .map_or("", |s| s.as_str()),
        ),
        (None, None) => None,
    };
    if price.is_none() && !errors.iter().any(|e| e.field == "price_per_hour") {
        errors.push(problem(
            "price_per_hour",
            "Enter what one machine costs per hour (the price list has no entry for this instance type).",
        ));
    }
    if !errors.is_empty() {
        return Err(RequestError::Invalid(errors));
    }
    Ok(Draft {
        team_id: team_row.id,
        purpose,
        name,
        pool_kind,
        credential_id: credential.map(|c| c.id),
        spec: RequestSpec {
            arches,
            params,
            budget: Budget {
                choice: budget_choice,
                prealloc,
                max,
                price_per_hour: price.unwrap_or(0.0),
                monthly_cap,
                build_hours,
            },
            scope,
            justification,
            pool: (!change.is_empty()).then_some(change),
        },
    })
}

/// Stores a checked request and the first step of its timeline.
pub async fn submit(
    db: &DatabaseConnection,
    actor: &Actor,
    draft: Draft,
) -> Result<i32, RequestError> {
    let txn = crate::db::begin_write(db).await?;
    let now = Utc::now();
    let inserted = pool_requests::Entity::insert(pool_requests::ActiveModel {
        team_id: Set(draft.team_id),
        purpose: Set(draft.purpose.clone()),
        name: Set(draft.name.clone()),
        pool_kind: Set(draft.pool_kind.clone()),
        credential_id: Set(draft.credential_id),
        spec: Set(serde_json::to_string(&draft.spec).expect("spec serializes")),
        state: Set("submitted".into()),
        created_by: Set(actor.label()),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    })
    .exec(&txn)
    .await?;
    let id = inserted.last_insert_id;
    event(&txn, id, actor, "submitted", None).await?;
    audit::record(
        &txn,
        actor,
        "request.submit",
        "request",
        id,
        json!({ "purpose": draft.purpose, "name": draft.name, "kind": draft.pool_kind, "spec": draft.spec }),
    )
    .await?;
    txn.commit().await?;
    Ok(id)
}

async fn event(
    db: &impl ConnectionTrait,
    request: i32,
    actor: &Actor,
    action: &str,
    note: Option<String>,
) -> Result<(), DbErr> {
    request_events::Entity::insert(request_events::ActiveModel {
        request_id: Set(request),
        at: Set(Utc::now()),
        actor: Set(actor.label()),
        action: Set(action.to_string()),
        note: Set(note),
        ..Default::default()
    })
    .exec(db)
    .await?;
    Ok(())
}

/// Moves a submitted request to `state`, guarded: a request decided meanwhile is refused
/// with who decided it.
async fn leave_submitted(
    db: &impl ConnectionTrait,
    id: i32,
    state: &str,
    actor: &Actor,
    reason: Option<String>,
) -> Result<(), RequestError> {
    let now = Utc::now();
    let r = pool_requests::Entity::update_many()
        .col_expr(pool_requests::Column::State, Expr::value(state))
        .col_expr(pool_requests::Column::DecidedBy, Expr::value(actor.label()))
        .col_expr(pool_requests::Column::DecidedAt, Expr::value(now))
        .col_expr(pool_requests::Column::DecisionReason, Expr::value(reason))
        .col_expr(pool_requests::Column::UpdatedAt, Expr::value(now))
        .filter(pool_requests::Column::Id.eq(id))
        .filter(pool_requests::Column::State.eq("submitted"))
        .exec(db)
        .await?;
    if r.rows_affected == 0 {
        let current = pool_requests::Entity::find_by_id(id)
            .one(db)
            .await?
            .ok_or_else(|| RequestError::NotFound(format!("request {id}")))?;
        return Err(RequestError::Conflict(format!(
            "request {id} was {} already{}",
            current.state,
            current
                .decided_by
                .map(|b| format!(" by {b}"))
                .unwrap_or_default()
        )));
    }
    Ok(())
}

/// A member takes back their team's submitted request.
pub async fn withdraw(db: &DatabaseConnection, actor: &Actor, id: i32) -> Result<(), RequestError> {
    let txn = crate::db::begin_write(db).await?;
    leave_submitted(&txn, id, "withdrawn", actor, None).await?;
    event(&txn, id, actor, "withdrawn", None).await?;
    audit::record(&txn, actor, "request.withdraw", "request", id, json!({})).await?;
    txn.commit().await?;
    Ok(())
}

/// An admin turns a request down; the reason is required and shown to the team.
pub async fn reject(
    db: &DatabaseConnection,
    actor: &Actor,
    id: i32,
    reason: &str,
) -> Result<(), RequestError> {
    let reason = reason.trim();
    if reason.chars().count() < 5 {
        return Err(RequestError::Invalid(vec![problem(
            "reason",
            "Say why (at least 5 characters): the team reads it on the request's page.",
        )]));
    }
    let txn = crate::db::begin_write(db).await?;
    leave_submitted(&txn, id, "rejected", actor, Some(reason.to_string())).await?;
    event(&txn, id, actor, "rejected", Some(reason.to_string())).await?;
    audit::record(
        &txn,
        actor,
        "request.reject",
        "request",
        id,
        json!({ "reason": reason }),
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// The limits an admin may set when approving.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    pub max: u32,
    pub max_prealloc: u32,
    pub max_starting: u32,
    pub priority: i64,
}

/// The limits an approval starts from: what the request asked for.
pub fn proposed_limits(kind: &str, spec: &RequestSpec, config: &Config) -> Limits {
    Limits {
        max: spec.budget.max,
        max_prealloc: if spec.budget.choice == "preallocated" {
            spec.budget.prealloc
        } else {
            0
        },
        max_starting: spec.budget.max.clamp(1, 4),
        priority: if kind == "community" {
            config.community_priority
        } else {
            0
        },
    }
}

fn limits_values(l: &Limits) -> FormValues {
    [
        ("max", l.max.to_string()),
        ("max_prealloc", l.max_prealloc.to_string()),
        ("max_starting", l.max_starting.to_string()),
        ("priority", l.priority.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn parse_limits(values: &FormValues, proposed: Limits) -> Result<Limits, RequestError> {
    let mut errors = Vec::new();
    let mut uint = |k: &str, min: u32, default: u32| -> u32 {
        match values.get(k).map(|v| v.trim()) {
            None | Some("") => default,
            Some(v) => match v.parse::<u32>() {
                Ok(n) if n >= min && n <= 1000 => n,
                _ => {
                    errors.push(problem(
                        k,
                        format!("Enter a whole number from {min} to 1000."),
                    ));
                    default
                }
            },
        }
    };
    let max = uint("max", 1, proposed.max);
    let max_prealloc = uint("max_prealloc", 0, proposed.max_prealloc);
    let max_starting = uint("max_starting", 1, proposed.max_starting);
    let priority = match values.get("priority").map(|v| v.trim()) {
        None | Some("") => proposed.priority,
        Some(v) => v.parse::<i64>().unwrap_or_else(|_| {
            errors.push(problem("priority", "Enter a whole number, e.g. -10."));
            proposed.priority
        }),
    };
    if max_prealloc > max {
        errors.push(problem("max_prealloc", "Keep at most max machines ready."));
    }
    if errors.is_empty() {
        Ok(Limits {
            max,
            max_prealloc,
            max_starting,
            priority,
        })
    } else {
        Err(RequestError::Invalid(errors))
    }
}

/// Whose pools these are: the team, and the request that made them.
pub struct Origin<'a> {
    pub team: &'a str,
    pub request_id: i32,
    pub pool_kind: &'a str,
    pub name: &'a str,
}

/// The pools a request makes, one per architecture.
pub fn pool_configs(
    origin: &Origin<'_>,
    credential: &credentials::Model,
    spec: &RequestSpec,
    limits: &Limits,
    config: &Config,
) -> Result<Vec<PoolConfig>, RequestError> {
    let Origin {
        team,
        request_id,
        pool_kind,
        name,
    } = *origin;
    let template = crate::spawners::template(&credential.kind, &config.spawner_templates)
        .ok_or_else(|| {
            RequestError::Conflict(format!(
                "no spawner template for {} credentials",
                credential.kind
            ))
        })?;
    let spawners = std::path::absolute(&config.spawners_dir)
        .unwrap_or_else(|_| config.spawners_dir.clone())
        .display()
        .to_string();
    let per_pool_cap = spec
        .budget
        .monthly_cap
        .map(|c| c / spec.arches.len().max(1) as f64);
    let mut out = Vec::new();
    for arch in &spec.arches {
        let pool_name = format!("{name}-{arch}");
        let mut values = spec.params.clone();
        values.insert("arch".into(), arch.clone());
        values.insert("pool".into(), pool_name.clone());
        values.insert("spawners".into(), spawners.clone());
        if let Some(image) = spec.params.get(&format!("image_{arch}")) {
            values.insert("image".into(), image.clone());
        }
        let render = |line: &str| {
            crate::spawners::render(line, &values).map_err(|m| {
                RequestError::Invalid(vec![problem(
                    "approve",
                    format!("the {} spawner template: {m}", credential.kind),
                )])
            })
        };
        let mut p = PoolConfig::new(
            &pool_name,
            render(&template.cmd_new)?,
            render(&template.cmd_delete)?,
        );
        p.cmd_list = template.cmd_list.as_deref().map(render).transpose()?;
        p.cmd_livecheck = template.cmd_livecheck.as_deref().map(render).transpose()?;
        p.owner_team_id = Some(credential.team_id);
        p.credential_id = Some(credential.id);
        p.description = Some(format!(
            "{} pool of {team} on {} ({}), from request #{request_id}",
            if pool_kind == "dedicated" {
                "Dedicated"
            } else {
                "Community"
            },
            kind_label(&credential.kind),
            credential.name
        ));
        p.max = limits.max;
        p.max_starting = limits.max_starting;
        p.max_prealloc = limits.max_prealloc;
        p.price_per_hour = Some(spec.budget.price_per_hour);
        p.monthly_cap = per_pool_cap;
        p.reuse_opportunity_time = 90;
        p.reuse_max_count = 8;
        p.tags = vec![
            Tag::new("copr_builder", limits.priority),
            Tag::new(format!("arch_{arch}"), 0),
        ];
        if arch == "x86_64" {
            p.tags.push(Tag::new("arch_noarch", 0));
        }
        let on_demand = spec.budget.choice == "on_demand";
        if pool_kind == "dedicated" {
            let tag = team_tag(team);
            if on_demand {
                p.tags_on_demand = vec![Tag::new(tag.clone(), 0)];
            } else {
                p.tags.push(Tag::new(tag.clone(), 0));
            }
            p.tags_required = vec![tag];
        } else if on_demand {
            p.tags_on_demand = vec![Tag::new(on_demand_tag(name), 0)];
        }
        if on_demand {
            p.max_prealloc = 0;
        }
        out.push(p);
    }
    Ok(out)
}

/// The routing rules approval adds, as (patterns, tags).
fn rules_for(pool_kind: &str, team: &str, name: &str, spec: &RequestSpec) -> Option<Vec<String>> {
    if pool_kind == "dedicated" {
        Some(vec![team_tag(team)])
    } else if spec.budget.choice == "on_demand" {
        Some(vec![on_demand_tag(name)])
    } else {
        // A preallocated community pool serves everyone: nothing to route.
        None
    }
}

/// An admin approves: the request's pools are made (a change request's pool is remade with
/// the new budget), with the routing rules that feed them, in one transaction. Returns the
/// pools. A request approved meanwhile (another tab, another admin) is refused.
pub async fn approve(
    db: &DatabaseConnection,
    config: &Config,
    actor: &Actor,
    id: i32,
    limit_values: &FormValues,
) -> Result<Vec<String>, RequestError> {
    let (request, team) = find(db, id).await?;
    let mut spec: RequestSpec = serde_json::from_str(&request.spec)
        .map_err(|e| RequestError::Conflict(format!("request {id} cannot be read: {e}")))?;
    let txn = crate::db::begin_write(db).await?;
    leave_submitted(&txn, id, "approved", actor, None).await?;
    let credential = match request.credential_id {
        Some(c) => credentials::Entity::find_by_id(c).one(&txn).await?,
        None => None,
    }
    .filter(|c| c.revoked_at.is_none())
    .ok_or_else(|| {
        RequestError::Invalid(vec![problem(
            "approve",
            "the request's credential was revoked: the team has to ask again with a live one",
        )])
    })?;

    let mut switched = false;
    let (name, made_by) = if request.purpose == "change" {
        // The pool is remade from the request that made it, with the new budget.
        let pool = pools::Entity::find_by_id(request.name.clone())
            .one(&txn)
            .await?
            .ok_or_else(|| RequestError::NotFound(format!("pool {}", request.name)))?;
        switched = current_choice(&pool) != spec.budget.choice;
        let original = pool_requests::Entity::find_by_id(pool.request_id.unwrap_or(0))
            .one(&txn)
            .await?
            .ok_or_else(|| RequestError::Conflict(format!("pool {} has no request", pool.name)))?;
        let mut original_spec: RequestSpec = serde_json::from_str(&original.spec).map_err(|e| {
            RequestError::Conflict(format!("request {} cannot be read: {e}", original.id))
        })?;
        let arch = original_spec
            .arches
            .iter()
            .find(|a| pool.name.ends_with(&format!("-{a}")))
            .cloned()
            .unwrap_or_default();
        original_spec.arches = vec![arch];
        original_spec.budget = spec.budget.clone();
        spec = original_spec;
        (
            original.name.clone(),
            (original.id, original.pool_kind.clone()),
        )
    } else {
        (request.name.clone(), (id, request.pool_kind.clone()))
    };
    let (origin_id, pool_kind) = made_by;
    let proposed = proposed_limits(&pool_kind, &spec, config);
    let limits = parse_limits(limit_values, proposed)?;
    let origin = Origin {
        team: &team,
        request_id: origin_id,
        pool_kind: &pool_kind,
        name: &name,
    };
    let mut configs = pool_configs(&origin, &credential, &spec, &limits, config)?;
    if request.purpose == "new" {
        let names: Vec<String> = configs.iter().map(|c| c.name.clone()).collect();
        if let Some(p) = pools::Entity::find()
            .filter(pools::Column::Name.is_in(names))
            .one(&txn)
            .await?
        {
            return Err(RequestError::Conflict(format!(
                "a pool named {} exists already: reject the request, or retire and remove that pool first",
                p.name
            )));
        }
    }
    if request.purpose == "change" {
        // Keep what the pool is now (its state, say) beyond the budget and limits.
        if let Some(current) = crate::pools::load_all(&txn)
            .await?
            .0
            .into_iter()
            .find(|p| p.name == request.name)
        {
            for c in &mut configs {
                c.state = current.state;
            }
        }
    }
    let saved = crate::pools::save_in(&txn, &configs, actor).await?;
    let names: Vec<String> = configs.iter().map(|c| c.name.clone()).collect();
    pools::Entity::update_many()
        .col_expr(pools::Column::RequestId, Expr::value(origin_id))
        .filter(pools::Column::Name.is_in(names.clone()))
        .exec(&txn)
        .await?;
    let mut rules = Vec::new();
    let rules_origin = format!("request:{origin_id}");
    if request.purpose == "change" && switched && pool_kind == "community" {
        // A community pool's rule exists only while it runs on demand (a dedicated pool's
        // team tag is routed either way).
        crate::routing::remove_origin(&txn, &rules_origin).await?;
    }
    if (request.purpose == "new" || (switched && pool_kind == "community"))
        && let Some(tags) = rules_for(&pool_kind, &team, &name, &spec)
    {
        rules = crate::routing::append(
            &txn,
            &rules_origin,
            &spec.scope,
            &tags,
            Some(format!("request #{origin_id} of {team}")),
        )
        .await?;
    }
    let outcome = json!({ "limits": limits, "pools": names, "rules": rules, "created": saved.created, "updated": saved.updated });
    pool_requests::Entity::update_many()
        .col_expr(
            pool_requests::Column::Outcome,
            Expr::value(outcome.to_string()),
        )
        .filter(pool_requests::Column::Id.eq(id))
        .exec(&txn)
        .await?;
    event(
        &txn,
        id,
        actor,
        "approved",
        Some(format!(
            "pools {} (max {}, {} ready, {} starting at once, priority {})",
            names.join(", "),
            limits.max,
            limits.max_prealloc,
            limits.max_starting,
            limits.priority
        )),
    )
    .await?;
    audit::record(&txn, actor, "request.approve", "request", id, outcome).await?;
    txn.commit().await?;
    Ok(names)
}

/// What an admin should look at before approving.
pub async fn warnings(
    db: &impl ConnectionTrait,
    config: &Config,
    request: &pool_requests::Model,
    team: &str,
    spec: &RequestSpec,
) -> Result<Vec<String>, DbErr> {
    let mut out = Vec::new();
    if request.purpose == "new" {
        let rules = crate::routing::list(db).await?;
        let mut owners: BTreeMap<String, String> = BTreeMap::new();
        for r in pool_requests::Entity::find().all(db).await? {
            let owner = teams::Entity::find_by_id(r.team_id)
                .one(db)
                .await?
                .map_or_else(String::new, |t| t.name);
            owners.insert(format!("request:{}", r.id), owner);
        }
        for pattern in &spec.scope {
            for rule in rules.iter().filter(|r| r.enabled) {
                if crate::routing::overlap(pattern, &rule.pattern) {
                    let whose = match owners.get(&rule.origin) {
                        Some(t) if t != team => format!("team {t}'s pool"),
                        Some(_) => "another pool of this team".to_string(),
                        None => "an admin's rule".to_string(),
                    };
                    out.push(format!(
                        "The scope {pattern} overlaps rule {} ({} → {}) of {whose}: builds matching both get both tags, and no single pool may offer them all.",
                        rule.position,
                        rule.pattern,
                        rule.tags.join(", ")
                    ));
                }
            }
        }
        let names: Vec<String> = spec
            .arches
            .iter()
            .map(|a| format!("{}-{a}", request.name))
            .collect();
        for p in pools::Entity::find()
            .filter(pools::Column::Name.is_in(names))
            .all(db)
            .await?
        {
            out.push(format!(
                "A pool named {} exists already: approval is refused until it is gone.",
                p.name
            ));
        }
        if request.pool_kind == "dedicated" {
            for pattern in &spec.scope {
                match crate::routing::owner_of(pattern) {
                    Some(owner) if owner != format!("@{team}") => out.push(format!(
                        "The scope {pattern} reaches {owner}'s projects, outside the team's group projects (@{team}/…): check that {owner} agreed."
                    )),
                    _ => {}
                }
            }
        }
    }
    if request.pool_kind == "dedicated" {
        let tag = team_tag(team);
        let on_demand = spec.budget.choice == "on_demand";
        for p in pools::Entity::find()
            .filter(pools::Column::Name.ne(request.name.as_str()))
            .filter(pools::Column::State.ne(PoolState::Retired.as_str()))
            .all(db)
            .await?
        {
            let (normal, od) = (
                p.tags.contains(&format!("\"{tag}\"")),
                p.tags_on_demand.contains(&format!("\"{tag}\"")),
            );
            if (on_demand && normal) || (!on_demand && od) {
                out.push(format!(
                        "Pool {} already uses {tag} {}: resalloc's rules forbid one tag being both an on-demand and a normal tag, so approval will fail; ask the team to use the same budget choice as that pool.",
                        p.name,
                        if normal { "as a normal tag" } else { "as an on-demand tag" }
                    ));
            }
        }
    }
    let team_id = request.team_id;
    let existing: u32 = pools::Entity::find()
        .filter(pools::Column::OwnerTeamId.eq(team_id))
        .filter(pools::Column::State.ne(PoolState::Retired.as_str()))
        .filter(pools::Column::Name.ne(request.name.clone()))
        .all(db)
        .await?
        .iter()
        .map(|p| p.max.max(0) as u32)
        .sum();
    let asked = spec.budget.max * spec.arches.len().max(1) as u32;
    if existing + asked > config.team_max_machines {
        out.push(format!(
            "The team would have up to {} machines ({existing} in its other pools + {asked}), above the per-team limit of {}.",
            existing + asked,
            config.team_max_machines
        ));
    }
    let estimate = estimate(&spec.budget);
    let n = spec.arches.len().max(1) as f64;
    if let Some(cap) = spec.budget.monthly_cap
        && estimate.floor * n > cap
    {
        out.push(format!(
            "The monthly cap {} is below the preallocated floor {}: the pool would stop starting machines within the month.",
            money(cap),
            money(estimate.floor * n)
        ));
    }
    if let Some(c) = request.credential_id {
        match credentials::Entity::find_by_id(c).one(db).await? {
            Some(c) if c.revoked_at.is_some() => {
                out.push(format!("Its credential {} was revoked.", c.name))
            }
            Some(c) if c.kind == "local" => {
                out.push("Its credential is the local demo: no real machines.".into())
            }
            None => out.push("Its credential no longer exists.".into()),
            _ => {}
        }
    }
    Ok(out)
}

/// A request for its page or the queue.
pub async fn view(
    db: &impl ConnectionTrait,
    config: &Config,
    request: pool_requests::Model,
    with_warnings: bool,
) -> Result<RequestView, DbErr> {
    let team = teams::Entity::find_by_id(request.team_id)
        .one(db)
        .await?
        .map(|t| t.name)
        .unwrap_or_default();
    let spec: RequestSpec = serde_json::from_str(&request.spec).unwrap_or(RequestSpec {
        arches: Vec::new(),
        params: BTreeMap::new(),
        budget: budget_of(&FormValues::new()),
        scope: Vec::new(),
        justification: String::new(),
        pool: None,
    });
    let credential = match request.credential_id {
        Some(id) => credentials::Entity::find_by_id(id).one(db).await?,
        None => None,
    };
    let kind = credential.as_ref().map(|c| c.kind.clone());
    let labels: BTreeMap<String, String> = param_specs(kind.as_deref().unwrap_or(""), &spec.arches)
        .into_iter()
        .map(|f| (f.name, f.label))
        .collect();
    let params = spec
        .params
        .iter()
        .map(|(k, v)| {
            (
                labels.get(k).cloned().unwrap_or_else(|| k.clone()),
                v.clone(),
            )
        })
        .collect();
    let timeline = request_events::Entity::find()
        .filter(request_events::Column::RequestId.eq(request.id))
        .order_by_asc(request_events::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(|e| TimelineEntry {
            at: e.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            actor: e.actor,
            action: e.action,
            note: e.note,
        })
        .collect();
    let warnings = if with_warnings && request.state == "submitted" {
        warnings(db, config, &request, &team, &spec).await?
    } else {
        Vec::new()
    };
    let pools = request
        .outcome
        .as_deref()
        .and_then(|o| serde_json::from_str::<serde_json::Value>(o).ok())
        .and_then(|o| {
            o["pools"].as_array().map(|a| {
                a.iter()
                    .filter_map(|p| p.as_str().map(str::to_string))
                    .collect()
            })
        })
        .unwrap_or_default();
    let mut estimate = estimate(&spec.budget);
    let n = spec.arches.len().max(1) as f64;
    estimate.floor *= n;
    estimate.variable *= n;
    estimate.total *= n;
    estimate.unserved_hours *= n;
    Ok(RequestView {
        id: request.id,
        team,
        purpose: request.purpose,
        name: request.name,
        pool_kind: request.pool_kind,
        credential: credential.as_ref().map(|c| c.name.clone()),
        credential_kind: kind,
        arches: spec.arches.clone(),
        params,
        budget: spec.budget.clone(),
        estimate,
        scope: spec.scope.clone(),
        justification: spec.justification.clone(),
        state: request.state,
        created_by: request.created_by,
        created_at: request
            .created_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        timeline,
        warnings,
        pools,
    })
}

/// A request and its team's name.
pub async fn find(
    db: &impl ConnectionTrait,
    id: i32,
) -> Result<(pool_requests::Model, String), RequestError> {
    let request = pool_requests::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| RequestError::NotFound(format!("request {id}")))?;
    let team = teams::Entity::find_by_id(request.team_id)
        .one(db)
        .await?
        .map(|t| t.name)
        .unwrap_or_default();
    Ok((request, team))
}

/// A team's requests, newest first.
pub async fn for_team(
    db: &impl ConnectionTrait,
    config: &Config,
    team: &str,
) -> Result<Vec<RequestView>, RequestError> {
    let Some(t) = accounts::team(db, team).await? else {
        return Err(RequestError::NotFound(format!("team {team}")));
    };
    let mut out = Vec::new();
    for r in pool_requests::Entity::find()
        .filter(pool_requests::Column::TeamId.eq(t.id))
        .order_by_desc(pool_requests::Column::Id)
        .all(db)
        .await?
    {
        out.push(view(db, config, r, false).await?);
    }
    Ok(out)
}

/// The admins' queue: pending requests oldest first, with their warnings, and the latest
/// decisions.
pub async fn queue(
    db: &impl ConnectionTrait,
    config: &Config,
) -> Result<RequestQueue, RequestError> {
    let mut pending = Vec::new();
    for r in pool_requests::Entity::find()
        .filter(pool_requests::Column::State.eq("submitted"))
        .order_by_asc(pool_requests::Column::Id)
        .all(db)
        .await?
    {
        pending.push(view(db, config, r, true).await?);
    }
    let mut decided = Vec::new();
    for r in pool_requests::Entity::find()
        .filter(pool_requests::Column::State.ne("submitted"))
        .order_by_desc(pool_requests::Column::UpdatedAt)
        .limit(20)
        .all(db)
        .await?
    {
        decided.push(view(db, config, r, false).await?);
    }
    Ok(RequestQueue { pending, decided })
}

/// The limits an admin sees pre-filled on a submitted request.
pub fn limits_for_page(view: &RequestView, config: &Config) -> FormValues {
    let spec = RequestSpec {
        arches: view.arches.clone(),
        params: BTreeMap::new(),
        budget: view.budget.clone(),
        scope: view.scope.clone(),
        justification: String::new(),
        pool: None,
    };
    limits_values(&proposed_limits(&view.pool_kind, &spec, config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_parameters_are_checked() {
        assert!(check_name("llvm-builders").is_ok());
        for bad in ["", "Llvm", "9lives", "a_b", "ends-", &"x".repeat(41)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert!(check_param("instance_type", "c7i.xlarge").is_ok());
        assert!(check_param("subnets", "subnet-a, subnet-b").is_ok());
        assert!(check_param("image_x86_64", "ami-1; rm -rf /").is_err());
        assert!(check_param("volume_size", "0").is_err());
        assert!(check_param("volume_size", "160").is_ok());
        for option in ["--playbook=/other.yml", "subnet-a, --debug", "-x"] {
            assert!(check_param("subnets", option).is_err(), "{option}");
        }
    }
}
