//! Pool definitions: validation, resalloc `pools.yaml` import and export, and their database
//! form. A definition that fails validation never reaches the engine; one that is broken in the
//! database (edited by hand) is skipped with an error in the log, never a crash.

use std::collections::{BTreeMap, BTreeSet};

use serde_norway::{Mapping, Value};

use super::core::NAME_PLACEHOLDERS;
use super::model::{HookTimeouts, PoolConfig, PoolState, Tag};
use crate::entities::pools;

/// One problem with one key of one pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolError {
    pub pool: String,
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for PoolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pool {:?}, key {}: {}",
            self.pool, self.key, self.message
        )
    }
}

pub fn err(pool: &str, key: &str, message: impl Into<String>) -> PoolError {
    PoolError {
        pool: pool.to_string(),
        key: key.to_string(),
        message: message.into(),
    }
}

/// Keys resalloc's `pools.yaml` knows.
pub const RESALLOC_KEYS: &[&str] = &[
    "max",
    "max_starting",
    "max_prealloc",
    "start_delay",
    "cmd_new",
    "cmd_delete",
    "cmd_livecheck",
    "cmd_release",
    "cmd_list",
    "livecheck_period",
    "livecheck_attempts",
    "reuse_opportunity_time",
    "reuse_max_count",
    "reuse_max_time",
    "tags",
    "tags_on_demand",
    "name_pattern",
    "named_counters",
    "description",
];

/// Keys copr-pools adds; an exported file carries them and resalloc warns about and ignores
/// them, so one file serves both.
pub const EXTRA_KEYS: &[&str] = &[
    "state",
    "timeout_new",
    "timeout_delete",
    "timeout_livecheck",
    "timeout_release",
    "timeout_list",
    "start_on_waiting",
    "list_period",
    "unknown_min_age",
    "credential",
    "tags_required",
    "price_per_hour",
    "monthly_cap",
];

/// Checks one pool on its own. Cross-pool rules are in [`validate_all`].
pub fn validate(p: &PoolConfig) -> Vec<PoolError> {
    let mut errors = Vec::new();
    let n = &p.name;
    let name_ok = !n.is_empty()
        && n.len() <= 64
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !n.ends_with('_');
    if !name_ok {
        errors.push(err(
            n,
            "name",
            "use 1 to 64 letters, digits, '_', '-' or '.', not ending in '_' \
             (cloud listing scripts match machines by the pool name as a prefix)",
        ));
    }
    if p.cmd_new.trim().is_empty() {
        errors.push(err(
            n,
            "cmd_new",
            "is required: the command that starts a machine",
        ));
    }
    if p.cmd_delete.trim().is_empty() {
        errors.push(err(
            n,
            "cmd_delete",
            "is required: the command that deletes a machine",
        ));
    }
    for (key, value) in [
        ("cmd_livecheck", &p.cmd_livecheck),
        ("cmd_release", &p.cmd_release),
        ("cmd_list", &p.cmd_list),
    ] {
        if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
            errors.push(err(n, key, "is empty; leave the key out instead"));
        }
    }
    if p.max_starting == 0 && p.max > 0 {
        errors.push(err(
            n,
            "max_starting",
            "must be at least 1, or no machine ever starts",
        ));
    }
    if p.livecheck_period == 0 {
        errors.push(err(n, "livecheck_period", "must be at least 1 second"));
    }
    if p.list_period < 60 {
        errors.push(err(n, "list_period", "must be at least 60 seconds"));
    }
    for (key, t) in [
        ("timeout_new", p.timeouts.new),
        ("timeout_delete", p.timeouts.delete),
        ("timeout_livecheck", p.timeouts.livecheck),
        ("timeout_release", p.timeouts.release),
        ("timeout_list", p.timeouts.list),
    ] {
        if t == 0 {
            errors.push(err(n, key, "must be at least 1 second"));
        }
    }
    let mut seen = BTreeSet::new();
    for (key, tags) in [("tags", &p.tags), ("tags_on_demand", &p.tags_on_demand)] {
        for tag in tags {
            if tag.name.is_empty() || tag.name.chars().any(|c| c.is_whitespace()) {
                errors.push(err(
                    n,
                    key,
                    format!("tag {:?} must be a non-empty word without spaces", tag.name),
                ));
            }
            if !seen.insert(tag.name.clone()) {
                errors.push(err(n, key, format!("tag {:?} is listed twice", tag.name)));
            }
        }
    }
    let mut rest = p.name_pattern.as_str();
    while let Some(start) = rest.find('{') {
        let Some(end) = rest[start..].find('}') else {
            errors.push(err(n, "name_pattern", "has a '{' without its '}'"));
            break;
        };
        let placeholder = &rest[start + 1..start + end];
        if !NAME_PLACEHOLDERS.contains(&placeholder) {
            errors.push(err(
                n,
                "name_pattern",
                format!(
                    "unknown placeholder {{{placeholder}}}; use {}",
                    NAME_PLACEHOLDERS
                        .iter()
                        .map(|p| format!("{{{p}}}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        rest = &rest[start + end + 1..];
    }
    if !p.name_pattern.contains("{id}") {
        errors.push(err(
            n,
            "name_pattern",
            "must contain {id}, so every machine gets its own name",
        ));
    }
    for c in &p.named_counters {
        if c.is_empty() || !c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_') {
            errors.push(err(n, "named_counters", format!("{c:?} must be letters, digits and '_' (it becomes an environment variable name)")));
        }
    }
    for t in &p.tags_required {
        if !p.all_tags().any(|o| &o.name == t) {
            errors.push(err(
                n,
                "tags_required",
                format!(
                    "{t:?} is not one of the pool's tags, so no ticket could ever be served; add it to tags (or tags_on_demand)"
                ),
            ));
        }
    }
    for (key, value) in [
        ("price_per_hour", p.price_per_hour),
        ("monthly_cap", p.monthly_cap),
    ] {
        if value.is_some_and(|v| !v.is_finite() || v < 0.0) {
            errors.push(err(n, key, "must be 0 or more"));
        }
    }
    if p.monthly_cap.is_some() && p.price_per_hour.is_none() {
        errors.push(err(
            n,
            "monthly_cap",
            "needs price_per_hour: the cap is checked against the cost of the machines' time",
        ));
    }
    errors
}

/// Checks a whole set of pools: each one, and resalloc's rule that an on-demand tag is never a
/// normal tag of any pool.
pub fn validate_all<'a>(all: impl IntoIterator<Item = &'a PoolConfig> + Clone) -> Vec<PoolError> {
    let mut errors: Vec<PoolError> = all.clone().into_iter().flat_map(validate).collect();
    let on_demand: BTreeSet<&str> = all
        .clone()
        .into_iter()
        .filter(|p| p.state != PoolState::Retired)
        .flat_map(|p| p.tags_on_demand.iter().map(|t| t.name.as_str()))
        .collect();
    for p in all.into_iter().filter(|p| p.state != PoolState::Retired) {
        for t in &p.tags {
            if on_demand.contains(t.name.as_str()) {
                errors.push(err(
                    &p.name,
                    "tags",
                    format!(
                        "{:?} is an on-demand tag of some pool, so it cannot be a normal tag here",
                        t.name
                    ),
                ));
            }
        }
    }
    errors
}

/// The result of reading a `pools.yaml`.
#[derive(Debug, Default)]
pub struct Imported {
    pub pools: Vec<PoolConfig>,
    /// Keys that were ignored, as resalloc does ("useless config option").
    pub warnings: Vec<String>,
    /// The `credential: team/name` of pools that name one, by pool; the database layer
    /// resolves them to ids.
    pub credentials: BTreeMap<String, String>,
}

/// Words in a command line that suggest a secret written into it: option names and
/// assignments. Matched case-insensitively.
const SECRET_OPTIONS: &[&str] = &[
    "--password",
    "--passwd",
    "--os-password",
    "--secret",
    "--token",
    "--api-key",
    "--apikey",
    "--client-secret",
    "--application-credential-secret",
];
const SECRET_ASSIGNMENTS: &[&str] = &[
    "_KEY=",
    "SECRET=",
    "TOKEN=",
    "PASSWORD=",
    "PASSWD=",
    "APIKEY=",
];

/// Why a command line appears to carry a secret inline, if it does: a password or token
/// option, a `…_KEY=` / `…SECRET=` style assignment, or a long random-looking word (as API
/// keys are). Commands are kept and shown as configured (they are not secrets by design:
/// credentials reach hooks through their environment), so this only feeds a warning.
pub fn inline_secret_hint(command: &str) -> Option<String> {
    let lower = command.to_ascii_lowercase();
    if let Some(opt) = SECRET_OPTIONS.iter().find(|o| {
        lower.match_indices(*o).any(|(i, _)| {
            !lower[i + o.len()..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '-')
        })
    }) {
        return Some(format!("the option {opt}"));
    }
    let upper = command.to_ascii_uppercase();
    if let Some(a) = SECRET_ASSIGNMENTS.iter().find(|a| upper.contains(*a)) {
        return Some(format!("an assignment to a …{}", a.trim_end_matches('=')));
    }
    command
        .split(|c: char| c.is_whitespace() || matches!(c, '\'' | '"' | '=' | ':' | ','))
        .find(|w| looks_random(w))
        .map(|w| format!("a {}-character random-looking word", w.len()))
}

/// A word of 24 or more token characters mixing upper case, lower case and digits, and not a
/// path or an option.
fn looks_random(word: &str) -> bool {
    word.len() >= 24
        && !word.starts_with(['/', '.', '-', '~', '$', '{'])
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '_' | '-'))
        && word.chars().any(|c| c.is_ascii_uppercase())
        && word.chars().any(|c| c.is_ascii_lowercase())
        && word.chars().any(|c| c.is_ascii_digit())
}

/// A warning for each of the pool's commands that appears to carry a secret inline.
pub fn inline_secret_warnings(p: &PoolConfig) -> Vec<String> {
    let commands = [
        ("cmd_new", Some(&p.cmd_new)),
        ("cmd_delete", Some(&p.cmd_delete)),
        ("cmd_livecheck", p.cmd_livecheck.as_ref()),
        ("cmd_release", p.cmd_release.as_ref()),
        ("cmd_list", p.cmd_list.as_ref()),
    ];
    commands
        .into_iter()
        .filter_map(|(key, cmd)| {
            let hint = inline_secret_hint(cmd?)?;
            Some(format!(
                "pool {:?}: {key} appears to carry a secret inline ({hint}); it is stored, \
                 shown and audited as written. Hand secrets to hooks through a credential or \
                 the environment instead",
                p.name
            ))
        })
        .collect()
}

/// Parses a resalloc `pools.yaml` (a map of pool name to keys). Every problem is reported
/// with its pool and key; nothing is half-imported.
pub fn parse_pools_yaml(text: &str) -> Result<Imported, Vec<PoolError>> {
    let doc: Value = serde_norway::from_str(text)
        .map_err(|e| vec![err("", "", format!("the file is not valid YAML: {e}"))])?;
    let map = match doc {
        Value::Mapping(m) => m,
        Value::Null => Mapping::new(),
        _ => {
            return Err(vec![err(
                "",
                "",
                "the file must be a map of pool names to their settings",
            )]);
        }
    };
    let mut imported = Imported::default();
    let mut errors = Vec::new();
    for (name, body) in map {
        let Some(name) = name.as_str().map(str::to_string) else {
            errors.push(err(
                &format!("{name:?}"),
                "name",
                "pool names must be strings",
            ));
            continue;
        };
        match pool_from_yaml(&name, body, &mut imported.warnings) {
            Ok((p, credential)) => {
                if let Some(c) = credential {
                    imported.credentials.insert(p.name.clone(), c);
                }
                imported.pools.push(p);
            }
            Err(mut e) => errors.append(&mut e),
        }
    }
    errors.extend(validate_all(imported.pools.iter()));
    for p in &imported.pools {
        imported.warnings.extend(inline_secret_warnings(p));
    }
    if errors.is_empty() {
        Ok(imported)
    } else {
        Err(errors)
    }
}

fn pool_from_yaml(
    name: &str,
    body: Value,
    warnings: &mut Vec<String>,
) -> Result<(PoolConfig, Option<String>), Vec<PoolError>> {
    let body = match body {
        Value::Mapping(m) => m,
        _ => {
            return Err(vec![err(
                name,
                "",
                "the pool's settings must be a map of keys",
            )]);
        }
    };
    let mut p = PoolConfig::new(name, "", "");
    let mut errors = Vec::new();
    let mut has_prealloc = false;
    let mut credential = None;
    for (key, value) in body {
        let Some(key) = key.as_str() else {
            errors.push(err(name, &format!("{key:?}"), "keys must be strings"));
            continue;
        };
        let r = (|| -> Result<(), String> {
            match key {
                "max" => p.max = uint(&value)?,
                "max_starting" => p.max_starting = uint(&value)?,
                "max_prealloc" => {
                    p.max_prealloc = uint(&value)?;
                    has_prealloc = true;
                }
                "start_delay" => p.start_delay = uint(&value)?,
                "cmd_new" => p.cmd_new = string(&value)?,
                "cmd_delete" => p.cmd_delete = string(&value)?,
                "cmd_livecheck" => p.cmd_livecheck = opt_string(&value)?,
                "cmd_release" => p.cmd_release = opt_string(&value)?,
                "cmd_list" => p.cmd_list = opt_string(&value)?,
                "livecheck_period" => p.livecheck_period = uint(&value)?,
                "livecheck_attempts" => p.livecheck_attempts = uint(&value)?,
                "reuse_opportunity_time" => p.reuse_opportunity_time = uint(&value)?,
                "reuse_max_count" => p.reuse_max_count = uint(&value)?,
                "reuse_max_time" => p.reuse_max_time = uint(&value)?,
                "tags" => p.tags = tags(&value)?,
                "tags_on_demand" => p.tags_on_demand = tags(&value)?,
                "name_pattern" => p.name_pattern = string(&value)?,
                "named_counters" => p.named_counters = strings(&value)?,
                "description" => p.description = opt_string(&value)?,
                "state" => {
                    let s = string(&value)?;
                    p.state = PoolState::parse(&s).ok_or_else(|| {
                        format!("{s:?} is not a state; use active, paused, draining or retired")
                    })?;
                }
                "timeout_new" => p.timeouts.new = uint(&value)?,
                "timeout_delete" => p.timeouts.delete = uint(&value)?,
                "timeout_livecheck" => p.timeouts.livecheck = uint(&value)?,
                "timeout_release" => p.timeouts.release = uint(&value)?,
                "timeout_list" => p.timeouts.list = uint(&value)?,
                "start_on_waiting" => {
                    p.start_on_waiting = value.as_bool().ok_or("must be true or false")?
                }
                "list_period" => p.list_period = uint(&value)?,
                "tags_required" => p.tags_required = strings(&value)?,
                "price_per_hour" => p.price_per_hour = Some(amount(&value)?),
                "monthly_cap" => p.monthly_cap = Some(amount(&value)?),
                "unknown_min_age" => p.unknown_min_age = uint(&value)?,
                "credential" => {
                    let c = string(&value)?;
                    match c.split_once('/') {
                        Some((team, cred)) if !team.is_empty() && !cred.is_empty() => {
                            credential = Some(c)
                        }
                        _ => {
                            return Err(format!(
                                "{c:?} is not team/name: name a team's credential, e.g. copr-team/aws-main"
                            ));
                        }
                    }
                }
                other => warnings.push(format!("pool {name:?}: unknown key {other:?} ignored")),
            }
            Ok(())
        })();
        if let Err(message) = r {
            errors.push(err(name, key, message));
        }
    }
    if p.is_on_demand() && has_prealloc && p.max_prealloc != 0 {
        warnings.push(format!(
            "pool {name:?}: max_prealloc is 0 for on-demand pools (tags_on_demand is set)"
        ));
    }
    if p.is_on_demand() {
        p.max_prealloc = 0;
    }
    if errors.is_empty() {
        Ok((p, credential))
    } else {
        Err(errors)
    }
}

fn uint(v: &Value) -> Result<u32, String> {
    v.as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| format!("must be a whole number of 0 or more, not {}", show(v)))
}

fn amount(v: &Value) -> Result<f64, String> {
    v.as_f64()
        .filter(|f| f.is_finite() && *f >= 0.0)
        .ok_or_else(|| "must be a number, 0 or more".to_string())
}

fn string(v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        _ => Err(format!("must be a string, not {}", show(v))),
    }
}

fn opt_string(v: &Value) -> Result<Option<String>, String> {
    match v {
        Value::Null => Ok(None),
        _ => string(v).map(Some),
    }
}

fn strings(v: &Value) -> Result<Vec<String>, String> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Sequence(items) => items.iter().map(string).collect(),
        _ => Err(format!("must be a list of strings, not {}", show(v))),
    }
}

fn tags(v: &Value) -> Result<Vec<Tag>, String> {
    let Value::Sequence(items) = v else {
        return match v {
            Value::Null => Ok(Vec::new()),
            _ => Err(format!("must be a list of tags, not {}", show(v))),
        };
    };
    items
        .iter()
        .map(|item| match item {
            Value::String(s) => Ok(Tag::new(s.clone(), 0)),
            Value::Mapping(m) => {
                let name = m
                    .get("name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| "a tag written as a map needs a string `name`".to_string())?;
                let priority = match m.get("priority") {
                    None | Some(Value::Null) => 0,
                    Some(p) => p.as_i64().ok_or_else(|| {
                        format!("priority of tag {name:?} must be a whole number")
                    })?,
                };
                if let Some(extra) = m
                    .keys()
                    .filter_map(Value::as_str)
                    .find(|k| !matches!(*k, "name" | "priority"))
                {
                    return Err(format!(
                        "tag {name:?} has an unknown key {extra:?}; use name and priority"
                    ));
                }
                Ok(Tag::new(name, priority))
            }
            other => Err(format!(
                "each tag must be a string or {{name, priority}}, not {}",
                show(other)
            )),
        })
        .collect()
}

fn show(v: &Value) -> String {
    serde_norway::to_string(v)
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "this value".into())
}

/// Writes pools as a resalloc `pools.yaml`, every key explicit.
pub fn export_pools_yaml(pools: &[PoolConfig], credentials: &BTreeMap<i32, String>) -> String {
    let mut root = Mapping::new();
    for p in pools {
        let mut m = Mapping::new();
        let mut put = |k: &str, v: Value| {
            m.insert(Value::from(k), v);
        };
        let tag_list = |tags: &[Tag]| {
            Value::Sequence(
                tags.iter()
                    .map(|t| {
                        if t.priority == 0 {
                            Value::from(t.name.clone())
                        } else {
                            let mut tm = Mapping::new();
                            tm.insert("name".into(), t.name.clone().into());
                            tm.insert("priority".into(), t.priority.into());
                            Value::Mapping(tm)
                        }
                    })
                    .collect(),
            )
        };
        put("max", p.max.into());
        put("max_starting", p.max_starting.into());
        put("max_prealloc", p.max_prealloc.into());
        put("start_delay", p.start_delay.into());
        put("cmd_new", p.cmd_new.clone().into());
        put("cmd_delete", p.cmd_delete.clone().into());
        for (k, v) in [
            ("cmd_livecheck", &p.cmd_livecheck),
            ("cmd_release", &p.cmd_release),
            ("cmd_list", &p.cmd_list),
        ] {
            if let Some(v) = v {
                put(k, v.clone().into());
            }
        }
        put("livecheck_period", p.livecheck_period.into());
        put("livecheck_attempts", p.livecheck_attempts.into());
        put("reuse_opportunity_time", p.reuse_opportunity_time.into());
        put("reuse_max_count", p.reuse_max_count.into());
        put("reuse_max_time", p.reuse_max_time.into());
        put("tags", tag_list(&p.tags));
        if !p.tags_on_demand.is_empty() {
            put("tags_on_demand", tag_list(&p.tags_on_demand));
        }
        put("name_pattern", p.name_pattern.clone().into());
        if !p.named_counters.is_empty() {
            put(
                "named_counters",
                Value::Sequence(p.named_counters.iter().cloned().map(Value::from).collect()),
            );
        }
        if let Some(d) = &p.description {
            put("description", d.clone().into());
        }
        put("state", p.state.as_str().into());
        put("timeout_new", p.timeouts.new.into());
        put("timeout_delete", p.timeouts.delete.into());
        put("timeout_livecheck", p.timeouts.livecheck.into());
        put("timeout_release", p.timeouts.release.into());
        put("timeout_list", p.timeouts.list.into());
        put("start_on_waiting", p.start_on_waiting.into());
        put("list_period", p.list_period.into());
        put("unknown_min_age", p.unknown_min_age.into());
        if !p.tags_required.is_empty() {
            put(
                "tags_required",
                Value::Sequence(p.tags_required.iter().cloned().map(Value::from).collect()),
            );
        }
        if let Some(price) = p.price_per_hour {
            put("price_per_hour", price.into());
        }
        if let Some(cap) = p.monthly_cap {
            put("monthly_cap", cap.into());
        }
        if let Some(id) = p.credential_id {
            put(
                "credential",
                credentials
                    .get(&id)
                    .cloned()
                    .unwrap_or_else(|| format!("#{id}"))
                    .into(),
            );
        }
        root.insert(Value::from(p.name.clone()), Value::Mapping(m));
    }
    let header = "# Exported by copr-pools. resalloc reads this file too: it ignores (and warns\n\
                  # about) the keys after `name_pattern` that only copr-pools knows.\n";
    format!(
        "{header}{}",
        serde_norway::to_string(&Value::Mapping(root)).unwrap_or_default()
    )
}

/// The database row of a pool definition, keeping the runtime statistics of `existing`.
pub fn to_model(
    p: &PoolConfig,
    now: chrono::DateTime<chrono::Utc>,
    existing: Option<&pools::Model>,
) -> pools::Model {
    pools::Model {
        name: p.name.clone(),
        state: p.state.as_str().into(),
        owner_team_id: p.owner_team_id,
        description: p.description.clone(),
        max: p.max as i32,
        max_starting: p.max_starting as i32,
        max_prealloc: p.max_prealloc as i32,
        start_delay: p.start_delay as i32,
        cmd_new: p.cmd_new.clone(),
        cmd_delete: p.cmd_delete.clone(),
        cmd_livecheck: p.cmd_livecheck.clone(),
        cmd_release: p.cmd_release.clone(),
        cmd_list: p.cmd_list.clone(),
        livecheck_period: p.livecheck_period as i32,
        livecheck_attempts: p.livecheck_attempts as i32,
        reuse_opportunity_time: p.reuse_opportunity_time as i32,
        reuse_max_count: p.reuse_max_count as i32,
        reuse_max_time: p.reuse_max_time as i32,
        name_pattern: p.name_pattern.clone(),
        tags: serde_json::to_string(&p.tags).expect("tags serialize"),
        tags_on_demand: serde_json::to_string(&p.tags_on_demand).expect("tags serialize"),
        named_counters: serde_json::to_string(&p.named_counters).expect("names serialize"),
        timeout_new: p.timeouts.new as i32,
        timeout_delete: p.timeouts.delete as i32,
        timeout_livecheck: p.timeouts.livecheck as i32,
        timeout_release: p.timeouts.release as i32,
        timeout_list: p.timeouts.list as i32,
        start_on_waiting: p.start_on_waiting,
        list_period: p.list_period as i32,
        unknown_min_age: p.unknown_min_age as i32,
        last_start_ms: existing.and_then(|e| e.last_start_ms),
        last_attempt_to_start_ms: existing.and_then(|e| e.last_attempt_to_start_ms),
        last_successful_start_ms: existing.and_then(|e| e.last_successful_start_ms),
        start_success_rate: existing.and_then(|e| e.start_success_rate),
        start_time_avg: existing.and_then(|e| e.start_time_avg),
        last_list_ms: existing.and_then(|e| e.last_list_ms),
        created_at: existing.map_or(now, |e| e.created_at),
        updated_at: now,
        credential_id: p.credential_id,
        tags_required: serde_json::to_string(&p.tags_required).expect("names serialize"),
        price_per_hour: p.price_per_hour,
        monthly_cap: p.monthly_cap,
        request_id: existing.and_then(|e| e.request_id),
        // A reason belongs to the state it explains: a new state drops it.
        state_reason: existing
            .filter(|e| e.state == p.state.as_str())
            .and_then(|e| e.state_reason.clone()),
    }
}

/// The definition stored in a database row, or what is wrong with it.
pub fn from_model(m: &pools::Model) -> Result<PoolConfig, Vec<PoolError>> {
    let n = m.name.as_str();
    let mut errors = Vec::new();
    let mut uint = |key: &str, v: i32| -> u32 {
        u32::try_from(v).unwrap_or_else(|_| {
            errors.push(err(n, key, format!("is {v}, it must be 0 or more")));
            0
        })
    };
    let mut p = PoolConfig::new(n, m.cmd_new.clone(), m.cmd_delete.clone());
    p.max = uint("max", m.max);
    p.max_starting = uint("max_starting", m.max_starting);
    p.max_prealloc = uint("max_prealloc", m.max_prealloc);
    p.start_delay = uint("start_delay", m.start_delay);
    p.livecheck_period = uint("livecheck_period", m.livecheck_period);
    p.livecheck_attempts = uint("livecheck_attempts", m.livecheck_attempts);
    p.reuse_opportunity_time = uint("reuse_opportunity_time", m.reuse_opportunity_time);
    p.reuse_max_count = uint("reuse_max_count", m.reuse_max_count);
    p.reuse_max_time = uint("reuse_max_time", m.reuse_max_time);
    p.timeouts = HookTimeouts {
        new: uint("timeout_new", m.timeout_new),
        delete: uint("timeout_delete", m.timeout_delete),
        livecheck: uint("timeout_livecheck", m.timeout_livecheck),
        release: uint("timeout_release", m.timeout_release),
        list: uint("timeout_list", m.timeout_list),
    };
    p.list_period = uint("list_period", m.list_period);
    p.unknown_min_age = uint("unknown_min_age", m.unknown_min_age);
    p.cmd_livecheck = m.cmd_livecheck.clone();
    p.cmd_release = m.cmd_release.clone();
    p.cmd_list = m.cmd_list.clone();
    p.name_pattern = m.name_pattern.clone();
    p.description = m.description.clone();
    p.owner_team_id = m.owner_team_id;
    p.start_on_waiting = m.start_on_waiting;
    p.credential_id = m.credential_id;
    p.price_per_hour = m.price_per_hour;
    p.monthly_cap = m.monthly_cap;
    match serde_json::from_str(&m.tags_required) {
        Ok(t) => p.tags_required = t,
        Err(e) => errors.push(err(
            n,
            "tags_required",
            format!("is not a JSON list of tag names: {e}"),
        )),
    }
    match PoolState::parse(&m.state) {
        Some(s) => p.state = s,
        None => errors.push(err(
            n,
            "state",
            format!("{:?} is not a pool state", m.state),
        )),
    }
    match serde_json::from_str(&m.tags) {
        Ok(t) => p.tags = t,
        Err(e) => errors.push(err(n, "tags", format!("is not a JSON list of tags: {e}"))),
    }
    match serde_json::from_str(&m.tags_on_demand) {
        Ok(t) => p.tags_on_demand = t,
        Err(e) => errors.push(err(
            n,
            "tags_on_demand",
            format!("is not a JSON list of tags: {e}"),
        )),
    }
    match serde_json::from_str(&m.named_counters) {
        Ok(c) => p.named_counters = c,
        Err(e) => errors.push(err(
            n,
            "named_counters",
            format!("is not a JSON list of names: {e}"),
        )),
    }
    errors.extend(validate(&p));
    if errors.is_empty() {
        Ok(p)
    } else {
        Err(errors)
    }
}

/// Pools by name, for lookups.
pub fn by_name(pools: Vec<PoolConfig>) -> BTreeMap<String, PoolConfig> {
    pools.into_iter().map(|p| (p.name.clone(), p)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const COPR_EXAMPLE: &str = r#"
aws_x86_64_powerful_spot_prod:
    max: 10
    max_starting: 4
    tags:
    - name: copr_builder
      priority: -40
    - aws
    - arch_noarch
    - arch_x86_64
    tags_on_demand:
    - on_demand_powerful
    cmd_new: copr-resalloc-vm-ip-to-yaml copr-resalloc-aws-new-x86_64 --instance-type c7a.8xlarge
    cmd_delete: "/var/lib/resallocserver/resalloc_provision/vm-delete"
    cmd_livecheck: "resalloc-check-vm-ip"
    cmd_release: "/var/lib/resallocserver/resalloc_provision/vm-release"
    cmd_list: resalloc-aws-list
    livecheck_period: 180
    reuse_opportunity_time: 90
    reuse_max_count: 8
    reuse_max_time: 1800
    description: "A pool of powerful spot x86_64 instances"
copr_hv_x86_64_01_prod:
    max: 20
    max_starting: 4
    max_prealloc: 20
    tags: [copr_builder, hypervisor, arch_x86_64]
    cmd_new: libvirt-new --ram-size 16384
    cmd_delete: vm-delete
    named_counters: [ip]
"#;

    #[test]
    fn copr_production_pools_import_with_defaults() {
        let imported = parse_pools_yaml(COPR_EXAMPLE).unwrap();
        assert!(imported.warnings.is_empty(), "{:?}", imported.warnings);
        let pools = by_name(imported.pools);
        let aws = &pools["aws_x86_64_powerful_spot_prod"];
        assert_eq!(aws.max, 10);
        assert_eq!(aws.max_prealloc, 0, "on-demand pools preallocate nothing");
        assert_eq!(aws.tags[0], Tag::new("copr_builder", -40));
        assert_eq!(aws.tags[1], Tag::new("aws", 0));
        assert_eq!(aws.tags_on_demand, vec![Tag::new("on_demand_powerful", 0)]);
        assert_eq!(aws.reuse_max_count, 8);
        assert_eq!(aws.livecheck_attempts, 3, "resalloc's default");
        let hv = &pools["copr_hv_x86_64_01_prod"];
        assert_eq!(hv.livecheck_period, 600);
        assert_eq!(hv.reuse_max_time, 3600);
        assert_eq!(hv.name_pattern, "{pool_name}_{id}_{datetime}");
        assert_eq!(hv.named_counters, vec!["ip"]);
    }

    #[test]
    fn export_then_import_is_the_same() {
        let pools = parse_pools_yaml(COPR_EXAMPLE).unwrap().pools;
        let again = parse_pools_yaml(&export_pools_yaml(&pools, &BTreeMap::new())).unwrap();
        assert!(again.warnings.is_empty());
        assert_eq!(by_name(pools), by_name(again.pools));
    }

    #[test]
    fn errors_name_the_pool_and_key() {
        let e = parse_pools_yaml("p1:\n  max: lots\n  cmd_new: x\n  cmd_delete: y\n").unwrap_err();
        assert_eq!(e.len(), 1);
        assert_eq!((e[0].pool.as_str(), e[0].key.as_str()), ("p1", "max"));
        assert!(e[0].message.contains("whole number"), "{}", e[0]);

        let e = parse_pools_yaml("p2:\n  max: 3\n").unwrap_err();
        let keys: Vec<&str> = e.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["cmd_new", "cmd_delete"]);

        let e =
            parse_pools_yaml("p3:\n  cmd_new: x\n  cmd_delete: y\n  name_pattern: '{pool}_{id}'\n")
                .unwrap_err();
        assert_eq!(e[0].key, "name_pattern");
        assert!(e[0].message.contains("{pool}"));
    }

    #[test]
    fn unknown_keys_are_warnings() {
        let imported =
            parse_pools_yaml("p:\n  cmd_new: x\n  cmd_delete: y\n  max_reuses: 3\n").unwrap();
        assert_eq!(imported.warnings.len(), 1);
        assert!(imported.warnings[0].contains("max_reuses"));
    }

    #[test]
    fn on_demand_tags_cannot_be_normal_tags_elsewhere() {
        let text = "a:\n  cmd_new: x\n  cmd_delete: y\n  tags_on_demand: [big]\nb:\n  cmd_new: x\n  cmd_delete: y\n  tags: [big]\n";
        let e = parse_pools_yaml(text).unwrap_err();
        assert_eq!((e[0].pool.as_str(), e[0].key.as_str()), ("b", "tags"));
    }

    #[test]
    fn bad_yaml_is_reported_not_panicked() {
        assert!(parse_pools_yaml("a: [").is_err());
        assert!(parse_pools_yaml("- a\n- b\n").is_err());
        assert!(parse_pools_yaml("a: 3\n").is_err());
        assert!(
            parse_pools_yaml("a:\n  tags: [{prio: 1}]\n  cmd_new: x\n  cmd_delete: y\n").is_err()
        );
        assert!(parse_pools_yaml("").unwrap().pools.is_empty());
    }
}

#[cfg(test)]
mod secret_hint_tests {
    use super::*;

    #[test]
    fn commands_that_seem_to_carry_secrets_are_pointed_out() {
        for cmd in [
            "openstack server create --os-password hunter2 {name}",
            "spawn --password=hunter2",
            "AWS_SECRET_ACCESS_KEY=abc resalloc-aws-new",
            "IBMCLOUD_API_KEY=x resalloc-ibm-cloud-vm new",
            "resalloc-aws-new --key wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "curl -H 'Authorization: Bearer ghp_16C7e42F292c6912E7710c838347Ae178B4a'",
        ] {
            assert!(inline_secret_hint(cmd).is_some(), "{cmd}");
        }
        for cmd in [
            "/usr/bin/resalloc-aws-new --template fedora-41 --instance-type c7i.xlarge",
            "resalloc-openstack-new --key-pair-id copr-builder --image-uuid 3b2b8f2a-58a8-4c06-8f5f-2b0e7a0f6b9c",
            "/var/lib/resallocserver/provision/libvirt-new --swap-vol-size 168 --ram-size 16384",
            "resalloc-aws-delete --name \"$RESALLOC_NAME\" --region us-east-1",
            "resalloc-aws-list --tag FedoraGroup=copr --password-file /etc/secret",
        ] {
            assert_eq!(inline_secret_hint(cmd), None, "{cmd}");
        }
        let mut p = PoolConfig::new("aws", "spawn --token=s3cr3t", "delete");
        p.cmd_list = Some("list".into());
        let w = inline_secret_warnings(&p);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("cmd_new") && w[0].contains("--token"),
            "{w:?}"
        );
        assert!(
            !w[0].contains("s3cr3t"),
            "the warning does not repeat the secret"
        );
    }
}
