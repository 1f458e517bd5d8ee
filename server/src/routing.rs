//! Routing rules: the tags Copr adds to builds whose `owner/project/chroot/package` matches a
//! pattern (its frontend's `EXTRA_BUILDCHROOT_TAGS`), in order. Approving a request adds the
//! rules that feed its pools; rules made for a request follow its pools: enabled while one of
//! them is active, disabled while they are paused, draining or retired (a team's builds then
//! go to the shared pools instead of waiting for a pool that starts nothing).
//!
//! Patterns are Python regular expressions applied with `re.match` (anchored at the start
//! only); [`check_pattern`] accepts what the Rust `regex` crate reads the same way.

use chrono::Utc;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
};

use crate::entities::{pools, routing_rules};

/// A rule as the approval queue and the admin pages read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub id: i32,
    pub position: i32,
    pub pattern: String,
    pub tags: Vec<String>,
    pub origin: String,
    pub enabled: bool,
}

/// Every rule, in order.
pub async fn list(db: &impl ConnectionTrait) -> Result<Vec<Rule>, DbErr> {
    Ok(routing_rules::Entity::find()
        .order_by_asc(routing_rules::Column::Position)
        .all(db)
        .await?
        .into_iter()
        .map(|r| Rule {
            id: r.id,
            position: r.position,
            tags: serde_json::from_str(&r.tags).unwrap_or_default(),
            pattern: r.pattern,
            origin: r.origin,
            enabled: r.enabled,
        })
        .collect())
}

/// Appends one rule per pattern, all adding `tags`, after the existing rules.
pub async fn append(
    db: &impl ConnectionTrait,
    origin: &str,
    patterns: &[String],
    tags: &[String],
    note: Option<String>,
) -> Result<Vec<i32>, DbErr> {
    let last = routing_rules::Entity::find()
        .order_by_desc(routing_rules::Column::Position)
        .one(db)
        .await?
        .map_or(0, |r| r.position);
    let now = Utc::now();
    let mut ids = Vec::new();
    for (i, pattern) in patterns.iter().enumerate() {
        let inserted = routing_rules::Entity::insert(routing_rules::ActiveModel {
            position: Set(last + 1 + i as i32),
            pattern: Set(pattern.clone()),
            tags: Set(serde_json::to_string(tags).expect("tags serialize")),
            origin: Set(origin.to_string()),
            pool: Set(None),
            enabled: Set(true),
            note: Set(note.clone()),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        })
        .exec(db)
        .await?;
        ids.push(inserted.last_insert_id);
    }
    Ok(ids)
}

/// Removes the rules `origin` added (a change request that ends a pool's need for them).
pub async fn remove_origin(db: &impl ConnectionTrait, origin: &str) -> Result<u64, DbErr> {
    Ok(routing_rules::Entity::delete_many()
        .filter(routing_rules::Column::Origin.eq(origin))
        .exec(db)
        .await?
        .rows_affected)
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
    Ok(r.rows_affected)
}

/// Checks a pattern: it compiles, and reads the same in Rust's `regex` as in Python's `re`
/// (which the next steps of routing pin down construct by construct).
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    if pattern.trim().is_empty() {
        return Err("a pattern cannot be empty; use .* for every build".into());
    }
    if pattern.len() > 512 {
        return Err("keep a pattern under 512 characters".into());
    }
    regex::Regex::new(&format!("^(?:{pattern})"))
        .map(|_| ())
        .map_err(|e| {
            let first = e.to_string();
            let line = first
                .lines()
                .find(|l| l.starts_with("error:"))
                .unwrap_or("it is not a regular expression")
                .trim_start_matches("error: ")
                .to_string();
            format!("{pattern:?} is not a pattern Copr can use: {line}")
        })
}

/// Whether `text` matches `pattern` as Python's `re.match` does (anchored at the start).
pub fn matches(pattern: &str, text: &str) -> bool {
    regex::Regex::new(&format!("^(?:{pattern})")).is_ok_and(|r| r.is_match(text))
}

/// The part of a pattern before its first special character: what every build it matches
/// starts with.
fn literal_prefix(pattern: &str) -> String {
    pattern
        .chars()
        .take_while(|c| !".^$*+?()[]{}|\\".contains(*c))
        .collect()
}

/// The owner every build a pattern matches belongs to (`@team` or a user), when the pattern
/// names one literally: `@llvm/.*` → `@llvm`; `.*/clang` → none.
pub fn owner_of(pattern: &str) -> Option<String> {
    let pattern = pattern.strip_prefix('^').unwrap_or(pattern);
    let prefix = literal_prefix(pattern);
    prefix
        .split_once('/')
        .map(|(owner, _)| owner.to_string())
        .filter(|o| !o.is_empty())
}

/// Whether a pattern matches any build at all, e.g. `.*` or `.*/.*`: routed to one pool,
/// it would take every build away from every other pool.
pub fn matches_everything(pattern: &str) -> bool {
    [
        "zz-anyone/zz-project/fedora-rawhide-x86_64/zz-package",
        "@zz-group/zz-project/epel-9-aarch64/zz-other",
    ]
    .iter()
    .all(|probe| matches(pattern, probe))
}

/// Whether two patterns may match a build in common: one's literal beginning matches the
/// other (a heuristic: regular-expression overlap is undecidable in general, and this is for
/// a warning, not a refusal).
pub fn overlap(a: &str, b: &str) -> bool {
    let (pa, pb) = (literal_prefix(a), literal_prefix(b));
    matches(a, &pb) || matches(b, &pa) || pa.starts_with(&pb) || pb.starts_with(&pa)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_from_the_start_like_pythons_re_match() {
        assert!(matches("@team/.*", "@team/llvm/fedora-41-x86_64/clang"));
        assert!(!matches("team/.*", "@team/llvm/fedora-41-x86_64/clang"));
        assert!(
            matches("@asahi/kernel", "@asahi/kernel-edge/x/y"),
            "not anchored at the end"
        );
        assert!(check_pattern("^@python/python3\\.\\d+/.*/root$").is_ok());
        assert!(
            check_pattern("(?<=a)b")
                .unwrap_err()
                .contains("not a pattern")
        );
        assert!(check_pattern("").is_err());
    }

    #[test]
    fn owners_and_catch_all_patterns_are_told_apart() {
        assert_eq!(owner_of("@llvm/.*").as_deref(), Some("@llvm"));
        assert_eq!(owner_of("^frostyx/copr-.*").as_deref(), Some("frostyx"));
        assert_eq!(owner_of(".*/clang"), None);
        assert_eq!(owner_of("@ll.*/x"), None);
        assert!(matches_everything(".*"));
        assert!(matches_everything(".*/.*/.*"));
        assert!(!matches_everything(".*/.*/.*/chromium"));
        assert!(!matches_everything("@llvm/.*"));
    }

    #[test]
    fn overlapping_scopes_are_noticed() {
        assert!(overlap("@team/.*", "@team/llvm/.*"));
        assert!(overlap(".*", "@team/.*"));
        assert!(!overlap("@team-a/.*", "@team-b/.*"));
        assert!(overlap(
            "@fedora-llvm-team/llvm-snapshots[^/]*/.*",
            "@fedora-llvm-team/.*"
        ));
    }
}
