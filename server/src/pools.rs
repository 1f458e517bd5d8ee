//! Managing pool definitions in the database: import from and export to resalloc's
//! `pools.yaml`, listing. Every change is validated against all pools, written in one
//! transaction and recorded in the audit log; the engine picks it up on its next pass.

use std::collections::BTreeMap;

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::{NotSet, Set},
    ConnectionTrait, DbErr, EntityTrait, IntoActiveModel, QueryOrder, TransactionTrait,
};
use serde_json::json;

use crate::audit::{self, Actor};
use crate::credentials::Vault;
use crate::engine::model::{PoolConfig, PoolState};
use crate::engine::pools::{
    Imported, PoolError, err, from_model, inline_secret_warnings, to_model, validate_all,
};
use crate::entities::{credentials, pools};

#[derive(Debug, thiserror::Error)]
pub enum PoolsError {
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<PoolError>),
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// What saving a set of pools did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Saved {
    pub created: Vec<String>,
    pub updated: Vec<String>,
    pub unchanged: Vec<String>,
}

/// Every pool whose stored definition is valid, by name, and the broken ones with why.
pub async fn load_all(
    db: &impl ConnectionTrait,
) -> Result<(Vec<PoolConfig>, Vec<PoolError>), DbErr> {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for m in pools::Entity::find()
        .order_by_asc(pools::Column::Name)
        .all(db)
        .await?
    {
        match from_model(&m) {
            Ok(p) => good.push(p),
            Err(mut e) => bad.append(&mut e),
        }
    }
    Ok((good, bad))
}

/// Creates or updates the given pools (others are left as they are), after checking them
/// together with the pools already stored.
pub async fn save(
    db: &(impl ConnectionTrait + TransactionTrait),
    incoming: &[PoolConfig],
    actor: &Actor,
) -> Result<Saved, PoolsError> {
    let txn = crate::db::begin_write(db).await?;
    let saved = save_in(&txn, incoming, actor).await?;
    txn.commit().await?;
    Ok(saved)
}

/// [`save`] inside the caller's write transaction (an approval saves its pools together
/// with the request and the routing rules).
pub async fn save_in(
    txn: &impl ConnectionTrait,
    incoming: &[PoolConfig],
    actor: &Actor,
) -> Result<Saved, PoolsError> {
    let incoming = &owned_by_credential_teams(txn, incoming).await?;
    let existing: BTreeMap<String, pools::Model> = pools::Entity::find()
        .all(txn)
        .await?
        .into_iter()
        .map(|m| (m.name.clone(), m))
        .collect();
    let mut combined: BTreeMap<String, PoolConfig> = BTreeMap::new();
    for m in existing.values() {
        if let Ok(p) = from_model(m) {
            combined.insert(p.name.clone(), p);
        }
    }
    for p in incoming {
        combined.insert(p.name.clone(), p.clone());
    }
    let mut errors = validate_all(combined.values());
    errors.extend(check_credentials(txn, incoming).await?);
    if !errors.is_empty() {
        return Err(PoolsError::Invalid(errors));
    }
    let names = Vault::qualified_names(txn).await?;

    let now = Utc::now();
    let mut saved = Saved::default();
    for warning in incoming.iter().flat_map(inline_secret_warnings) {
        tracing::warn!(%warning, "pool command line");
    }
    for p in incoming {
        let before = existing.get(&p.name);
        let model = to_model(p, now, before);
        match before {
            None => {
                pools::Entity::insert(model.into_active_model())
                    .exec(txn)
                    .await?;
                audit::record(
                    txn,
                    actor,
                    "pool.create",
                    "pool",
                    &p.name,
                    json!({ "definition": definition_json(p, &names) }),
                )
                .await?;
                saved.created.push(p.name.clone());
            }
            Some(old) => {
                let old_def = from_model(old).ok();
                if old_def.as_ref() == Some(p) {
                    saved.unchanged.push(p.name.clone());
                    continue;
                }
                let mut am = model.into_active_model().reset_all();
                // The engine keeps these up to date concurrently: leave them to it.
                am.last_start_ms = NotSet;
                am.last_attempt_to_start_ms = NotSet;
                am.last_successful_start_ms = NotSet;
                am.start_success_rate = NotSet;
                am.start_time_avg = NotSet;
                am.last_list_ms = NotSet;
                am.created_at = NotSet;
                am.update(txn).await?;
                let changes = diff(old_def.as_ref(), p, &names);
                audit::record(
                    txn,
                    actor,
                    "pool.update",
                    "pool",
                    &p.name,
                    json!({ "changed": changes }),
                )
                .await?;
                saved.updated.push(p.name.clone());
            }
        }
    }
    Ok(saved)
}

/// A pool's definition as JSON for the audit log (commands hold no secrets: credentials reach
/// hooks through the environment).
fn definition_json(p: &PoolConfig, credentials: &BTreeMap<i32, String>) -> serde_json::Value {
    let yaml = crate::engine::pools::export_pools_yaml(std::slice::from_ref(p), credentials);
    let value: serde_norway::Value = serde_norway::from_str(&yaml).unwrap_or_default();
    serde_json::to_value(value.get(&p.name).cloned().unwrap_or_default()).unwrap_or_default()
}

/// The keys whose values differ, as {key: [before, after]}.
fn diff(
    before: Option<&PoolConfig>,
    after: &PoolConfig,
    credentials: &BTreeMap<i32, String>,
) -> serde_json::Value {
    let after_json = definition_json(after, credentials);
    let before_json = before
        .map(|b| definition_json(b, credentials))
        .unwrap_or_default();
    let mut changes = serde_json::Map::new();
    if let Some(obj) = after_json.as_object() {
        for (k, v) in obj {
            let old = before_json
                .get(k)
                .cloned()
                .unwrap_or(serde_json::Value::Null);
            if &old != v {
                changes.insert(k.clone(), json!([old, v]));
            }
        }
    }
    serde_json::Value::Object(changes)
}

/// A pool's states as people may set them.
pub async fn set_state(
    db: &(impl ConnectionTrait + TransactionTrait),
    actor: &Actor,
    name: &str,
    state: PoolState,
    reason: Option<String>,
) -> Result<(), PoolsError> {
    let txn = crate::db::begin_write(db).await?;
    let Some(m) = pools::Entity::find_by_id(name.to_string())
        .one(&txn)
        .await?
    else {
        return Err(PoolsError::Invalid(vec![err(name, "name", "no such pool")]));
    };
    let before = m.state.clone();
    if state == PoolState::Active
        && let Some(cid) = m.credential_id
        && credentials::Entity::find_by_id(cid)
            .one(&txn)
            .await?
            .is_some_and(|c| c.revoked_at.is_some())
    {
        return Err(PoolsError::Invalid(vec![err(
            name,
            "state",
            "its credential was revoked: the pool cannot run again with it",
        )]));
    }
    let mut am = m.into_active_model();
    am.state = Set(state.as_str().to_string());
    am.state_reason = Set(reason.clone());
    am.updated_at = Set(Utc::now());
    am.update(&txn).await?;
    crate::routing::follow_pool(&txn, name).await?;
    audit::record(
        &txn,
        actor,
        &format!("pool.{}", verb(state)),
        "pool",
        name,
        json!({ "state": [before, state.as_str()], "reason": reason }),
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// An admin's edit of a pool's limits and budget: `max`, `max_starting`, `max_prealloc`,
/// `price_per_hour`, `monthly_cap` (empty: none). Checked like any pool definition, audited
/// with what changed.
pub async fn edit_limits(
    db: &(impl ConnectionTrait + TransactionTrait),
    actor: &Actor,
    name: &str,
    values: &BTreeMap<String, String>,
) -> Result<(), PoolsError> {
    // Read and write in one write transaction: two admins saving at once apply one after
    // the other, neither undoing the other's fields.
    let txn = crate::db::begin_write(db).await?;
    let (all, _) = load_all(&txn).await?;
    let Some(mut p) = all.into_iter().find(|p| p.name == name) else {
        return Err(PoolsError::Invalid(vec![err(name, "name", "no such pool")]));
    };
    let mut errors = Vec::new();
    let mut whole = |key: &str, target: &mut u32| {
        if let Some(v) = values.get(key).map(|v| v.trim()).filter(|v| !v.is_empty()) {
            match v.parse::<u32>() {
                Ok(n) => *target = n,
                Err(_) => errors.push(err(name, key, "enter a whole number, 0 or more")),
            }
        }
    };
    whole("max", &mut p.max);
    whole("max_starting", &mut p.max_starting);
    whole("max_prealloc", &mut p.max_prealloc);
    let mut amount = |key: &str| -> Option<Option<f64>> {
        let v = values.get(key)?.trim();
        if v.is_empty() {
            return Some(None);
        }
        match v.parse::<f64>() {
            Ok(a) if a.is_finite() && a >= 0.0 => Some(Some(a)),
            _ => {
                errors.push(err(name, key, "enter an amount, 0 or more"));
                None
            }
        }
    };
    if let Some(price) = amount("price_per_hour") {
        p.price_per_hour = price;
    }
    if let Some(cap) = amount("monthly_cap") {
        p.monthly_cap = cap;
    }
    if !errors.is_empty() {
        return Err(PoolsError::Invalid(errors));
    }
    save_in(&txn, &[p], actor).await?;
    txn.commit().await?;
    Ok(())
}

fn verb(state: PoolState) -> &'static str {
    match state {
        PoolState::Active => "resume",
        PoolState::Paused => "pause",
        PoolState::Draining => "drain",
        PoolState::Retired => "retire",
    }
}

/// A `pools.yaml` text checked as `pools import` and `pools_file` take it: parsed, validated,
/// credentials resolved. `Err` holds every problem; nothing is saved either way.
pub async fn check_pools_yaml(
    db: &impl ConnectionTrait,
    text: &str,
) -> Result<Result<Imported, Vec<PoolError>>, DbErr> {
    let mut imported = match crate::engine::pools::parse_pools_yaml(text) {
        Ok(i) => i,
        Err(errors) => return Ok(Err(errors)),
    };
    let unresolved = resolve_credentials(db, &mut imported).await?;
    Ok(if unresolved.is_empty() {
        Ok(imported)
    } else {
        Err(unresolved)
    })
}

/// Turns the `credential: team/name` of imported pools into credential ids. The pool
/// belongs to the credential's team (unless the file says otherwise, which is refused).
pub async fn resolve_credentials(
    db: &impl ConnectionTrait,
    imported: &mut Imported,
) -> Result<Vec<PoolError>, DbErr> {
    let mut errors = Vec::new();
    for p in &mut imported.pools {
        let Some(qualified) = imported.credentials.get(&p.name) else {
            continue;
        };
        match Vault::resolve(db, qualified).await? {
            Some((id, team_id)) => {
                p.credential_id = Some(id);
                p.owner_team_id = Some(team_id);
            }
            None => errors.push(err(
                &p.name,
                "credential",
                format!(
                    "{qualified:?} is no live credential: name one of the team's credentials as team/name (revoked ones cannot be used)"
                ),
            )),
        }
    }
    Ok(errors)
}

/// The pools, each owned by its credential's team when it names a credential but no owner.
async fn owned_by_credential_teams(
    db: &impl ConnectionTrait,
    incoming: &[PoolConfig],
) -> Result<Vec<PoolConfig>, DbErr> {
    let mut out = incoming.to_vec();
    for p in &mut out {
        if let (Some(id), None) = (p.credential_id, p.owner_team_id)
            && let Some(c) = credentials::Entity::find_by_id(id).one(db).await?
        {
            p.owner_team_id = Some(c.team_id);
        }
    }
    Ok(out)
}

/// A pool may only use a live credential, and only of its own team.
async fn check_credentials(
    db: &impl ConnectionTrait,
    incoming: &[PoolConfig],
) -> Result<Vec<PoolError>, DbErr> {
    let mut errors = Vec::new();
    for p in incoming {
        let Some(id) = p.credential_id else {
            continue;
        };
        match credentials::Entity::find_by_id(id).one(db).await? {
            None => errors.push(err(&p.name, "credential", format!("credential {id} does not exist"))),
            Some(c) if c.revoked_at.is_some() && p.state == crate::engine::model::PoolState::Active => {
                errors.push(err(
                    &p.name,
                    "credential",
                    format!("credential {} was revoked; the pool cannot run with it: give it a live credential", c.name),
                ))
            }
            Some(c) if p.owner_team_id.is_some_and(|t| t != c.team_id) => errors.push(err(
                &p.name,
                "credential",
                format!("credential {} belongs to another team than the pool", c.name),
            )),
            Some(_) => {}
        }
    }
    Ok(errors)
}
