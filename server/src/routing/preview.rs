//! "Where would my builds go": for builds typed one per line, the tags the rules give each
//! and the pools that could take it, best first, the way the engine ranks them. On the
//! request form the requested pool counts as if it were approved, with its scope's rule.

use app::api::routing::{MatchedRule, PreviewAsk, Route};
use sea_orm::{ConnectionTrait, DbErr};

use super::served::Snapshot;
use crate::engine::model::{PoolConfig, PoolState, Tag, score};

/// The most lines one preview answers.
pub const MAX_BUILDS: usize = 50;

/// The architecture of a chroot: its last `-` part (`fedora-rawhide-x86_64` → `x86_64`).
fn arch_of(chroot: &str) -> &str {
    chroot.rsplit('-').next().unwrap_or(chroot)
}

/// The pool the request form describes, as the engine would see it once approved.
fn requested_pool(ask: &PreviewAsk, arch: &str) -> Option<(PoolConfig, Option<String>)> {
    if ask.pool_kind != "dedicated" && ask.pool_kind != "community" {
        return None;
    }
    let name = if ask.name.trim().is_empty() {
        "requested"
    } else {
        ask.name.trim()
    };
    let mut p = PoolConfig::new(format!("{name}-{arch} (requested)"), "true", "true");
    let community = ask.pool_kind == "community";
    p.tags = vec![
        Tag::new("copr_builder", if community { -10 } else { 0 }),
        Tag::new(format!("arch_{arch}"), 0),
    ];
    if arch == "x86_64" {
        p.tags.push(Tag::new("arch_noarch", 0));
    }
    let routed = if community {
        (ask.budget == "on_demand").then(|| crate::requests::on_demand_tag(name))
    } else {
        Some(crate::requests::team_tag(&ask.team))
    };
    if let Some(tag) = &routed {
        p.tags.push(Tag::new(tag.clone(), 0));
        if !community {
            p.tags_required = vec![tag.clone()];
        }
    }
    Some((p, routed))
}

/// Answers a preview.
pub async fn preview(
    db: &impl ConnectionTrait,
    snapshot: &Snapshot,
    ask: &PreviewAsk,
) -> Result<Vec<Route>, DbErr> {
    let pools: Vec<PoolConfig> = crate::pools::load_all(db)
        .await?
        .0
        .into_iter()
        .filter(|p| p.state == PoolState::Active)
        .collect();
    let scope: Vec<&str> = ask
        .scope
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && super::check_pattern(l).is_ok())
        .collect();
    let mut out = Vec::new();
    for line in ask
        .builds
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take(MAX_BUILDS)
    {
        let parts: Vec<&str> = line.split('/').collect();
        if parts.len() != 4 || parts.iter().any(|p| p.is_empty()) {
            out.push(Route {
                build: line.to_string(),
                error: Some(
                    "Write a build as owner/project/chroot/package, e.g. @team/llvm/fedora-rawhide-x86_64/clang."
                        .into(),
                ),
                tags: Vec::new(),
                rules: Vec::new(),
                pools: Vec::new(),
            });
            continue;
        }
        let arch = arch_of(parts[2]);
        let (mut tags, rules) = snapshot.route(line);
        let rules: Vec<MatchedRule> = rules
            .into_iter()
            .map(|r| MatchedRule {
                position: r.position,
                pattern: r.pattern.clone(),
                tags: r.tags.clone(),
            })
            .collect();
        let requested = requested_pool(ask, arch);
        let mut candidates = pools.clone();
        let mut rules = rules;
        if let Some((pool, routed)) = requested {
            if let Some(tag) = routed
                && scope.iter().any(|p| super::matches(p, line))
            {
                rules.push(MatchedRule {
                    position: 0,
                    pattern: scope
                        .iter()
                        .find(|p| super::matches(p, line))
                        .map(|p| p.to_string())
                        .unwrap_or_default(),
                    tags: vec![tag.clone()],
                });
                tags.push(tag);
            }
            candidates.push(pool);
        }
        let mut wanted: Vec<String> = vec!["copr_builder".into(), format!("arch_{arch}")];
        for t in &tags {
            if !wanted.contains(t) {
                wanted.push(t.clone());
            }
        }
        let mut ranked: Vec<(i64, String)> = candidates
            .iter()
            .filter(|p| p.tags_required.iter().all(|r| wanted.contains(r)))
            .filter_map(|p| {
                score(p.tags.iter().chain(p.tags_on_demand.iter()), &wanted)
                    .map(|s| (s, p.name.clone()))
            })
            .collect();
        ranked.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        out.push(Route {
            build: line.to_string(),
            error: None,
            tags,
            rules,
            pools: ranked.into_iter().map(|(_, n)| n).collect(),
        });
    }
    Ok(out)
}
