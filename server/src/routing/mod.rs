//! Routing rules: the tags Copr adds to builds whose `owner/project/chroot/package` matches a
//! pattern (its frontend's `EXTRA_BUILDCHROOT_TAGS`), in order. Approving a request adds the
//! rules that feed its pools; rules made for a request follow its pools: enabled while one of
//! them is active, disabled while they are paused, draining or retired (a team's builds then
//! go to the shared pools instead of waiting for a pool that starts nothing).
//!
//! Patterns are Python regular expressions applied with `re.match` (anchored at the start
//! only); [`check_pattern`] accepts what the Rust `regex` crate reads the same way.
//!
//! Every change bumps the rules' version in the same transaction (`routing_state`), is
//! audited, and is checked: a rule whose tags no active pool offers is refused (its builds
//! would wait forever); a broad pattern, or rules whose tags together overflow the 50
//! characters Copr stores per build, need the admin to accept the warning. `served.rs` turns
//! the enabled rules into what Copr polls; `formats.rs` reads and writes Copr's forms.

use std::collections::BTreeSet;

use app::error::{AppError, FieldError};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter, QueryOrder,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::audit::{self, Actor};
use crate::engine::model::{PoolState, Tag};
use crate::entities::{pools, routing_rules, routing_state};

pub mod formats;
mod pattern;
pub mod preview;
pub mod served;
pub use pattern::{
    Overlaps, PatternSet, check_pattern, is_broad, matches, matches_everything, overlap, owner_of,
};

/// The most characters Copr stores for a build's extra tags (`build_chroot.tags_raw`,
/// VARCHAR(50), the tags joined by spaces).
pub const TAGS_RAW_LIMIT: usize = 50;

/// A rule as the pages, the API and the CLI read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub id: i32,
    pub position: i32,
    pub pattern: String,
    pub tags: Vec<String>,
    pub origin: String,
    pub enabled: bool,
    pub note: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// A rule as typed on the admin page or read from a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleSpec {
    pub pattern: String,
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RoutingError {
    #[error("{}", .0.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<FieldError>),
    /// Warnings the admin has to accept before the change is made.
    #[error("{}", .0.join(" "))]
    Warnings(Vec<String>),
    #[error("{0} was not found")]
    NotFound(String),
    #[error(transparent)]
    Db(#[from] DbErr),
}

impl From<RoutingError> for AppError {
    fn from(e: RoutingError) -> AppError {
        match e {
            RoutingError::Invalid(errors) => AppError::Invalid(errors),
            RoutingError::Warnings(warnings) => AppError::Invalid(vec![FieldError {
                field: "accept_warnings".into(),
                message: format!(
                    "{} Tick \"I have read the warnings\" to save it anyway.",
                    warnings.join(" ")
                ),
            }]),
            RoutingError::NotFound(what) => AppError::NotFound(what),
            RoutingError::Db(e) => {
                tracing::error!(error = %e, "routing rules: database error");
                AppError::Internal
            }
        }
    }
}

fn problem(field: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        message: message.into(),
    }
}

fn rule_of(r: routing_rules::Model) -> Rule {
    Rule {
        id: r.id,
        position: r.position,
        tags: serde_json::from_str(&r.tags).unwrap_or_default(),
        pattern: r.pattern,
        origin: r.origin,
        enabled: r.enabled,
        note: r.note,
        updated_at: r.updated_at,
    }
}

/// Every rule, in order.
pub async fn list(db: &impl ConnectionTrait) -> Result<Vec<Rule>, DbErr> {
    Ok(routing_rules::Entity::find()
        .order_by_asc(routing_rules::Column::Position)
        .all(db)
        .await?
        .into_iter()
        .map(rule_of)
        .collect())
}

/// Stores one enabled rule at `position`.
async fn insert(
    db: &impl ConnectionTrait,
    position: i32,
    pattern: &str,
    tags: &[String],
    origin: &str,
    note: Option<String>,
) -> Result<i32, DbErr> {
    let now = Utc::now();
    Ok(routing_rules::Entity::insert(routing_rules::ActiveModel {
        position: Set(position),
        pattern: Set(pattern.to_string()),
        tags: Set(serde_json::to_string(tags).expect("tags serialize")),
        origin: Set(origin.to_string()),
        pool: Set(None),
        enabled: Set(true),
        note: Set(note),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    })
    .exec(db)
    .await?
    .last_insert_id)
}

/// The last rule's position (0 without rules).
async fn last_position(db: &impl ConnectionTrait) -> Result<i32, DbErr> {
    Ok(routing_rules::Entity::find()
        .order_by_desc(routing_rules::Column::Position)
        .one(db)
        .await?
        .map_or(0, |r| r.position))
}

/// Appends one rule per pattern, all adding `tags`, after the existing rules.
pub async fn append(
    db: &impl ConnectionTrait,
    origin: &str,
    patterns: &[String],
    tags: &[String],
    note: Option<String>,
) -> Result<Vec<i32>, DbErr> {
    let last = last_position(db).await?;
    let mut ids = Vec::new();
    for (i, pattern) in patterns.iter().enumerate() {
        ids.push(insert(db, last + 1 + i as i32, pattern, tags, origin, note.clone()).await?);
    }
    if !ids.is_empty() {
        bump(db).await?;
    }
    Ok(ids)
}

/// Removes the rules `origin` added (a change request that ends a pool's need for them).
pub async fn remove_origin(db: &impl ConnectionTrait, origin: &str) -> Result<u64, DbErr> {
    let removed = routing_rules::Entity::delete_many()
        .filter(routing_rules::Column::Origin.eq(origin))
        .exec(db)
        .await?
        .rows_affected;
    renumber(db).await?;
    if removed > 0 {
        bump(db).await?;
    }
    Ok(removed)
}

/// Enables the rules of the request that made `pool` while one of the request's pools is
/// active, disables them otherwise. Returns how many rules changed.
pub async fn follow_pool(db: &impl ConnectionTrait, pool: &str) -> Result<u64, DbErr> {
    let Some(request_id) = pools::Entity::find_by_id(pool.to_string())
        .one(db)
        .await?
        .and_then(|p| p.request_id)
    else {
        return Ok(0);
    };
    let siblings = pools::Entity::find()
        .filter(pools::Column::RequestId.eq(request_id))
        .all(db)
        .await?;
    let enabled = siblings.iter().any(|p| p.state == "active");
    let r = routing_rules::Entity::update_many()
        .col_expr(routing_rules::Column::Enabled, Expr::value(enabled))
        .col_expr(routing_rules::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(routing_rules::Column::Origin.eq(format!("request:{request_id}")))
        .filter(routing_rules::Column::Enabled.ne(enabled))
        .exec(db)
        .await?;
    if r.rows_affected > 0 {
        bump(db).await?;
    }
    Ok(r.rows_affected)
}

/// The rules' version and when it last changed.
pub async fn version(db: &impl ConnectionTrait) -> Result<(i64, DateTime<Utc>), DbErr> {
    Ok(routing_state::Entity::find_by_id(1)
        .one(db)
        .await?
        .map_or((0, DateTime::<Utc>::UNIX_EPOCH), |s| {
            (s.version, s.changed_at)
        }))
}

/// Bumps the version, inside the caller's transaction.
async fn bump(db: &impl ConnectionTrait) -> Result<(), DbErr> {
    routing_state::Entity::update_many()
        .col_expr(
            routing_state::Column::Version,
            Expr::col(routing_state::Column::Version).add(1),
        )
        .col_expr(routing_state::Column::ChangedAt, Expr::value(Utc::now()))
        .filter(routing_state::Column::Id.eq(1))
        .exec(db)
        .await?;
    Ok(())
}

/// Numbers the rules 1, 2, 3, … in their order.
async fn renumber(db: &impl ConnectionTrait) -> Result<(), DbErr> {
    let rules = routing_rules::Entity::find()
        .order_by_asc(routing_rules::Column::Position)
        .order_by_asc(routing_rules::Column::Id)
        .all(db)
        .await?;
    for (i, r) in rules.into_iter().enumerate() {
        let position = i as i32 + 1;
        if r.position != position {
            routing_rules::Entity::update_many()
                .col_expr(routing_rules::Column::Position, Expr::value(position))
                .filter(routing_rules::Column::Id.eq(r.id))
                .exec(db)
                .await?;
        }
    }
    Ok(())
}

/// The tags active pools offer (normal and on-demand): what a routed build can be served by.
pub async fn offered_tags(db: &impl ConnectionTrait) -> Result<BTreeSet<String>, DbErr> {
    let mut out = BTreeSet::new();
    for p in pools::Entity::find()
        .filter(pools::Column::State.eq(PoolState::Active.as_str()))
        .all(db)
        .await?
    {
        for list in [&p.tags, &p.tags_on_demand] {
            let tags: Vec<Tag> = serde_json::from_str(list).unwrap_or_default();
            out.extend(tags.into_iter().map(|t| t.name));
        }
    }
    Ok(out)
}

/// Reads tags typed as words separated by spaces or commas.
pub fn parse_tags(text: &str) -> Result<Vec<String>, String> {
    let tags: Vec<String> = text
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect();
    if tags.is_empty() {
        return Err("Enter at least one tag, e.g. on_demand_powerful.".into());
    }
    check_tag_names(&tags)?;
    Ok(tags)
}

fn check_tag_names(tags: &[String]) -> Result<(), String> {
    if tags.is_empty() {
        return Err("A rule adds at least one tag.".into());
    }
    for t in tags {
        if t.is_empty()
            || t.len() > TAGS_RAW_LIMIT
            || !t
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        {
            return Err(format!(
                "{t:?} is not a tag: use letters, digits, '_', '.' and '-' (Copr stores tags separated by spaces)."
            ));
        }
    }
    Ok(())
}

/// The errors and warnings of rules about to be stored, in context: `rules` is every rule as
/// it would be (enabled ones count), `focus` the ones being changed. Errors are by field
/// (`pattern`, `tags`), prefixed with the rule's number when several are checked.
pub fn findings(
    rules: &[(bool, RuleSpec)],
    focus: &[usize],
    offered: &BTreeSet<String>,
) -> (Vec<FieldError>, Vec<String>) {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let label = |i: usize| {
        if focus.len() > 1 {
            format!("Rule {}: ", i + 1)
        } else {
            String::new()
        }
    };
    for &i in focus {
        let (enabled, r) = &rules[i];
        if let Err(m) = check_pattern(&r.pattern) {
            errors.push(problem("pattern", format!("{}{m}", label(i))));
        }
        if let Err(m) = check_tag_names(&r.tags) {
            errors.push(problem("tags", format!("{}{m}", label(i))));
        } else if *enabled {
            let missing: Vec<&str> = r
                .tags
                .iter()
                .filter(|t| !offered.contains(*t))
                .map(String::as_str)
                .collect();
            if !missing.is_empty() {
                errors.push(problem(
                    "tags",
                    format!(
                        "{}No active pool offers {}: the builds it matches would wait forever. Add a pool that offers it (in tags, or tags_on_demand for an on-demand tag) first.",
                        label(i),
                        missing.join(", ")
                    ),
                ));
            }
        }
        if is_broad(&r.pattern) {
            warnings.push(format!(
                "{}{} sends many unrelated builds to the pools of {} (it starts with .* or matches every package of its owner on every chroot).",
                label(i),
                r.pattern,
                r.tags.join(", ")
            ));
        }
    }
    warnings.extend(combos(rules, focus));
    (errors, warnings)
}

/// Rules that can match one build together whose tags overflow what Copr stores for a build
/// (`TAGS_RAW_LIMIT`), for each enabled rule of `focus`.
pub fn combos(rules: &[(bool, RuleSpec)], focus: &[usize]) -> Vec<String> {
    let mut warnings = Vec::new();
    let enabled: Vec<usize> = (0..rules.len()).filter(|&i| rules[i].0).collect();
    let mut seen: BTreeSet<Vec<usize>> = BTreeSet::new();
    let patterns: Vec<&str> = rules.iter().map(|(_, r)| r.pattern.as_str()).collect();
    let mut overlaps = Overlaps::new(&patterns);
    for &i in focus.iter().filter(|i| rules[**i].0) {
        let mut combo = vec![i];
        for &j in &enabled {
            if j != i && combo.iter().all(|&k| overlaps.overlap(j, k)) {
                combo.push(j);
            }
        }
        combo.sort_unstable();
        let joined = combo
            .iter()
            .flat_map(|&k| rules[k].1.tags.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ");
        if joined.len() > TAGS_RAW_LIMIT && seen.insert(combo.clone()) {
            let numbers: Vec<String> = combo.iter().map(|k| (k + 1).to_string()).collect();
            warnings.push(format!(
                "Rules {} can match the same build; their tags together, \"{joined}\", are {} characters, over the {TAGS_RAW_LIMIT} Copr stores for a build, so such a build could not be queued.",
                numbers.join(", "),
                joined.len()
            ));
        }
    }
    warnings
}

/// The rules as `findings` takes them.
fn as_specs(rules: &[Rule]) -> Vec<(bool, RuleSpec)> {
    rules
        .iter()
        .map(|r| {
            (
                r.enabled,
                RuleSpec {
                    pattern: r.pattern.clone(),
                    tags: r.tags.clone(),
                    note: r.note.clone(),
                },
            )
        })
        .collect()
}

/// Refuses on errors; on warnings unless accepted. Returns the warnings.
fn verdict(
    (errors, warnings): (Vec<FieldError>, Vec<String>),
    accept_warnings: bool,
) -> Result<Vec<String>, RoutingError> {
    if !errors.is_empty() {
        return Err(RoutingError::Invalid(errors));
    }
    if !warnings.is_empty() && !accept_warnings {
        return Err(RoutingError::Warnings(warnings));
    }
    Ok(warnings)
}

fn note_of(note: Option<String>) -> Option<String> {
    note.map(|n| n.trim().to_string()).filter(|n| !n.is_empty())
}

/// An admin adds a rule at the end (or at `position`). Returns its id and the warnings
/// accepted.
pub async fn add(
    db: &DatabaseConnection,
    actor: &Actor,
    spec: RuleSpec,
    position: Option<i32>,
    accept_warnings: bool,
) -> Result<(i32, Vec<String>), RoutingError> {
    let txn = crate::db::begin_write(db).await?;
    let rules = list(&txn).await?;
    let at = position
        .map(|p| (p.max(1) as usize - 1).min(rules.len()))
        .unwrap_or(rules.len());
    let mut specs = as_specs(&rules);
    specs.insert(at, (true, spec.clone()));
    let warnings = verdict(
        findings(&specs, &[at], &offered_tags(&txn).await?),
        accept_warnings,
    )?;
    // Make room, then insert.
    routing_rules::Entity::update_many()
        .col_expr(
            routing_rules::Column::Position,
            Expr::col(routing_rules::Column::Position).add(1),
        )
        .filter(routing_rules::Column::Position.gt(at as i32))
        .exec(&txn)
        .await?;
    let id = insert(
        &txn,
        at as i32 + 1,
        &spec.pattern,
        &spec.tags,
        "admin",
        note_of(spec.note.clone()),
    )
    .await?;
    renumber(&txn).await?;
    bump(&txn).await?;
    audit::record(
        &txn,
        actor,
        "routing.add",
        "routing_rule",
        id,
        json!({ "pattern": spec.pattern, "tags": spec.tags, "position": at + 1, "warnings": warnings }),
    )
    .await?;
    txn.commit().await?;
    Ok((id, warnings))
}

async fn find(db: &impl ConnectionTrait, id: i32) -> Result<routing_rules::Model, RoutingError> {
    routing_rules::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| RoutingError::NotFound(format!("routing rule {id}")))
}

/// An admin changes a rule's pattern, tags or note.
pub async fn edit(
    db: &DatabaseConnection,
    actor: &Actor,
    id: i32,
    spec: RuleSpec,
    accept_warnings: bool,
) -> Result<Vec<String>, RoutingError> {
    let txn = crate::db::begin_write(db).await?;
    let before = find(&txn, id).await?;
    let rules = list(&txn).await?;
    let at = rules.iter().position(|r| r.id == id).unwrap_or(0);
    let mut specs = as_specs(&rules);
    specs[at].1 = spec.clone();
    let warnings = verdict(
        findings(&specs, &[at], &offered_tags(&txn).await?),
        accept_warnings,
    )?;
    routing_rules::Entity::update_many()
        .col_expr(
            routing_rules::Column::Pattern,
            Expr::value(spec.pattern.clone()),
        )
        .col_expr(
            routing_rules::Column::Tags,
            Expr::value(serde_json::to_string(&spec.tags).expect("tags serialize")),
        )
        .col_expr(
            routing_rules::Column::Note,
            Expr::value(note_of(spec.note.clone())),
        )
        .col_expr(routing_rules::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(routing_rules::Column::Id.eq(id))
        .exec(&txn)
        .await?;
    bump(&txn).await?;
    audit::record(
        &txn,
        actor,
        "routing.edit",
        "routing_rule",
        id,
        json!({
            "before": { "pattern": before.pattern, "tags": serde_json::from_str::<Vec<String>>(&before.tags).unwrap_or_default() },
            "after": { "pattern": spec.pattern, "tags": spec.tags },
            "warnings": warnings,
        }),
    )
    .await?;
    txn.commit().await?;
    Ok(warnings)
}

/// An admin moves a rule to `position` (1 is first); the others keep their order.
pub async fn move_to(
    db: &DatabaseConnection,
    actor: &Actor,
    id: i32,
    position: i32,
) -> Result<(), RoutingError> {
    let txn = crate::db::begin_write(db).await?;
    let rule = find(&txn, id).await?;
    let mut ids: Vec<i32> = list(&txn).await?.into_iter().map(|r| r.id).collect();
    ids.retain(|&i| i != id);
    let at = (position.max(1) as usize - 1).min(ids.len());
    ids.insert(at, id);
    for (i, rid) in ids.iter().enumerate() {
        routing_rules::Entity::update_many()
            .col_expr(routing_rules::Column::Position, Expr::value(i as i32 + 1))
            .filter(routing_rules::Column::Id.eq(*rid))
            .exec(&txn)
            .await?;
    }
    bump(&txn).await?;
    audit::record(
        &txn,
        actor,
        "routing.move",
        "routing_rule",
        id,
        json!({ "pattern": rule.pattern, "from": rule.position, "to": at + 1 }),
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// An admin turns a rule on or off. Turning one on is checked like adding it.
pub async fn set_enabled(
    db: &DatabaseConnection,
    actor: &Actor,
    id: i32,
    enabled: bool,
    accept_warnings: bool,
) -> Result<Vec<String>, RoutingError> {
    let txn = crate::db::begin_write(db).await?;
    let rule = find(&txn, id).await?;
    let mut warnings = Vec::new();
    if enabled && !rule.enabled {
        let rules = list(&txn).await?;
        let at = rules.iter().position(|r| r.id == id).unwrap_or(0);
        let mut specs = as_specs(&rules);
        specs[at].0 = true;
        warnings = verdict(
            findings(&specs, &[at], &offered_tags(&txn).await?),
            accept_warnings,
        )?;
    }
    routing_rules::Entity::update_many()
        .col_expr(routing_rules::Column::Enabled, Expr::value(enabled))
        .col_expr(routing_rules::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(routing_rules::Column::Id.eq(id))
        .exec(&txn)
        .await?;
    bump(&txn).await?;
    audit::record(
        &txn,
        actor,
        if enabled {
            "routing.enable"
        } else {
            "routing.disable"
        },
        "routing_rule",
        id,
        json!({ "pattern": rule.pattern }),
    )
    .await?;
    txn.commit().await?;
    Ok(warnings)
}

/// An admin deletes a rule.
pub async fn delete(db: &DatabaseConnection, actor: &Actor, id: i32) -> Result<(), RoutingError> {
    let txn = crate::db::begin_write(db).await?;
    let rule = find(&txn, id).await?;
    routing_rules::Entity::delete_by_id(id).exec(&txn).await?;
    renumber(&txn).await?;
    bump(&txn).await?;
    audit::record(
        &txn,
        actor,
        "routing.delete",
        "routing_rule",
        id,
        json!({ "pattern": rule.pattern, "tags": serde_json::from_str::<Vec<String>>(&rule.tags).unwrap_or_default(), "origin": rule.origin }),
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// What an import did, or would do.
#[derive(Debug, Clone, PartialEq)]
pub struct Imported {
    /// Rules appended, in order.
    pub added: Vec<RuleSpec>,
    /// Rules of the file already there (same pattern and tags), left alone.
    pub present: usize,
    pub warnings: Vec<String>,
}

/// Appends the rules of a file (Copr's `EXTRA_BUILDCHROOT_TAGS` or our JSON) after the
/// existing ones, skipping those already present, checked like the admin page: any error
/// refuses the whole file; warnings need `accept_warnings`. With `dry_run` nothing is written.
pub async fn import(
    db: &DatabaseConnection,
    actor: &Actor,
    incoming: Vec<RuleSpec>,
    accept_warnings: bool,
    dry_run: bool,
) -> Result<Imported, RoutingError> {
    let txn = crate::db::begin_write(db).await?;
    let rules = list(&txn).await?;
    let mut specs = as_specs(&rules);
    let mut added = Vec::new();
    let mut present = 0;
    let mut focus = Vec::new();
    for spec in incoming {
        if rules
            .iter()
            .any(|r| r.pattern == spec.pattern && r.tags == spec.tags)
            || added.contains(&spec)
        {
            present += 1;
            continue;
        }
        focus.push(specs.len());
        specs.push((true, spec.clone()));
        added.push(spec);
    }
    // Number errors and warnings by the rule's place in the file's new rules.
    let (errors, warnings) = findings(&specs, &focus, &offered_tags(&txn).await?);
    let warnings = verdict((errors, warnings), accept_warnings || dry_run)?;
    let report = Imported {
        added: added.clone(),
        present,
        warnings: warnings.clone(),
    };
    if dry_run || added.is_empty() {
        return Ok(report);
    }
    let patterns: Vec<(String, Vec<String>, Option<String>)> = added
        .iter()
        .map(|s| (s.pattern.clone(), s.tags.clone(), note_of(s.note.clone())))
        .collect();
    for (pattern, tags, note) in patterns {
        let last = last_position(&txn).await?;
        insert(&txn, last + 1, &pattern, &tags, "import", note).await?;
    }
    bump(&txn).await?;
    audit::record(
        &txn,
        actor,
        "routing.import",
        "routing_rule",
        "*",
        json!({ "added": added.len(), "present": present, "warnings": warnings }),
    )
    .await?;
    txn.commit().await?;
    Ok(report)
}

/// The rules a pool's change of state leaves with no active pool to serve them: a warning for
/// whoever paused or retired it.
pub async fn stranded(db: &impl ConnectionTrait) -> Result<Vec<String>, DbErr> {
    let offered = offered_tags(db).await?;
    Ok(list(db)
        .await?
        .into_iter()
        .filter(|r| r.enabled && r.tags.iter().any(|t| !offered.contains(t)))
        .map(|r| {
            format!(
                "Rule {} ({} → {}) now routes builds to tags no active pool offers: they wait until a pool offering them runs, or the rule is disabled.",
                r.position,
                r.pattern,
                r.tags.join(", ")
            )
        })
        .collect())
}

/// The string Copr matches for one build: `owner/project[:dirsuffix]/chroot/package`.
pub fn build_string(
    owner: &str,
    project: &str,
    chroot: &str,
    package: &str,
) -> Result<String, Vec<FieldError>> {
    let mut errors = Vec::new();
    let parts = [
        ("owner", owner, "a user name, or @group for a group"),
        (
            "project",
            project,
            "a project, or project:pr:123 for a pull request directory",
        ),
        ("chroot", chroot, "a chroot such as fedora-rawhide-x86_64"),
        ("package", package, "a package name"),
    ];
    for (field, value, what) in parts {
        let v = value.trim();
        if v.is_empty() || v.contains('/') || v.chars().any(char::is_whitespace) {
            errors.push(problem(
                field,
                format!("Enter {what}, without '/' or spaces."),
            ));
        }
    }
    if errors.is_empty() {
        Ok(format!(
            "{}/{}/{}/{}",
            owner.trim(),
            project.trim(),
            chroot.trim(),
            package.trim()
        ))
    } else {
        Err(errors)
    }
}

/// What is wrong with the rules as they stand: enabled rules no active pool serves, and rules
/// whose tags together overflow a build's.
pub async fn checks(db: &impl ConnectionTrait) -> Result<Vec<String>, DbErr> {
    let rules = list(db).await?;
    let specs = as_specs(&rules);
    let all: Vec<usize> = (0..specs.len()).collect();
    let mut out = stranded(db).await?;
    out.extend(combos(&specs, &all));
    Ok(out)
}
