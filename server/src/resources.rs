//! Machines and tickets for maintainers, in the spirit of `resalloc-maint`: listing,
//! inspecting, deleting (STARTING machines too, resalloc #6) and reading hook logs.

use std::path::{Path, PathBuf};

use chrono::Utc;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, TransactionTrait,
};
use serde::Serialize;
use serde_json::json;

use crate::audit::{self, Actor};
use crate::engine::hooks::log_path;
use crate::engine::model::{DeleteReason, HookKind, RState, TState, Tag};
use crate::engine::store::live_resources;
use crate::entities::{resources, tickets};

/// A machine as maintainers see it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ResourceInfo {
    pub id: i32,
    pub name: Option<String>,
    pub pool: String,
    pub state: String,
    pub tags: Vec<String>,
    pub releases: i32,
    pub ticket: Option<i32>,
    pub sandbox: Option<String>,
    pub id_in_pool: i32,
    pub check_failed_count: i32,
    /// `cmd_new`'s output, decoded as text.
    pub data: Option<String>,
    pub delete_reason: Option<String>,
    pub created_at: String,
}

impl From<resources::Model> for ResourceInfo {
    fn from(m: resources::Model) -> Self {
        let tags: Vec<Tag> = serde_json::from_str(&m.tags).unwrap_or_default();
        ResourceInfo {
            id: m.id,
            name: m.name,
            pool: m.pool,
            state: m.state,
            tags: tags.into_iter().map(|t| t.name).collect(),
            releases: m.releases_counter,
            ticket: m.ticket_id,
            sandbox: m.sandbox,
            id_in_pool: m.id_in_pool,
            check_failed_count: m.check_failed_count,
            data: m.data.map(|d| String::from_utf8_lossy(&d).into_owned()),
            delete_reason: m.delete_reason,
            created_at: m.created_at.to_rfc3339(),
        }
    }
}

impl ResourceInfo {
    /// resalloc-maint's `resource-list` line.
    pub fn line(&self) -> String {
        format!(
            "{} - {} pool={} tags={} status={} releases={} ticket={}",
            self.id,
            self.name.as_deref().unwrap_or("None"),
            self.pool,
            self.tags.join(","),
            self.state,
            self.releases,
            self.ticket
                .map_or_else(|| "NULL".to_string(), |t| t.to_string()),
        )
    }
}

/// Machines that are not ENDED (only UP ones with `up_only`), oldest first.
pub async fn list(db: &impl ConnectionTrait, up_only: bool) -> Result<Vec<ResourceInfo>, DbErr> {
    let mut q = resources::Entity::find().filter(live_resources());
    if up_only {
        q = q.filter(resources::Column::State.eq(RState::Up.as_str()));
    }
    Ok(q.order_by_asc(resources::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(Into::into)
        .collect())
}

/// A machine by id or by name (the newest of that name).
pub async fn find(
    db: &impl ConnectionTrait,
    id_or_name: &str,
) -> Result<Option<resources::Model>, DbErr> {
    if let Ok(id) = id_or_name.parse::<i32>()
        && let Some(m) = resources::Entity::find_by_id(id).one(db).await?
    {
        return Ok(Some(m));
    }
    resources::Entity::find()
        .filter(resources::Column::Name.eq(id_or_name))
        .order_by_desc(resources::Column::Id)
        .one(db)
        .await
}

/// Which machines `resource delete` means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    Ids(Vec<i32>),
    /// Every machine that is not already being deleted.
    All,
    /// UP machines without a ticket.
    Unused,
}

/// The outcome for one machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeleteOutcome {
    pub id: i32,
    pub name: Option<String>,
    pub result: String,
}

/// Marks machines for deletion: STARTING, UP (a taken machine's ticket FAILS, as with
/// resalloc's `kill`) and RELEASING ones. The engine cancels a running hook and runs
/// `cmd_delete` on its next pass.
pub async fn request_delete(
    db: &(impl ConnectionTrait + TransactionTrait),
    selection: &Selection,
    actor: &Actor,
) -> Result<Vec<DeleteOutcome>, DbErr> {
    let deletable = [
        RState::Starting.as_str(),
        RState::Up.as_str(),
        RState::Releasing.as_str(),
    ];
    let txn = crate::db::begin_write(db).await?;
    let mut q = resources::Entity::find().filter(live_resources());
    match selection {
        Selection::Ids(ids) => q = q.filter(resources::Column::Id.is_in(ids.clone())),
        Selection::All => {}
        Selection::Unused => {
            q = q
                .filter(resources::Column::State.eq(RState::Up.as_str()))
                .filter(resources::Column::TicketId.is_null())
        }
    }
    let found = q.order_by_asc(resources::Column::Id).all(&txn).await?;
    let mut outcomes = Vec::new();
    if let Selection::Ids(ids) = selection {
        for id in ids.iter().filter(|id| !found.iter().any(|m| m.id == **id)) {
            outcomes.push(DeleteOutcome {
                id: *id,
                name: None,
                result: "no such machine".into(),
            });
        }
    }
    for found_row in found {
        // The engine may change the machine between the read above and the write below (an
        // assignment, on PostgreSQL): the write is guarded by what was read, and re-read when
        // the guard misses, so a ticket that just got the machine is failed too.
        let mut m = found_row;
        let marked = loop {
            if !deletable.contains(&m.state.as_str()) {
                break false;
            }
            let ticket_guard = match m.ticket_id {
                Some(t) => resources::Column::TicketId.eq(t),
                None => resources::Column::TicketId.is_null(),
            };
            let r = resources::Entity::update_many()
                .col_expr(
                    resources::Column::State,
                    Expr::value(RState::DeleteRequest.as_str()),
                )
                .col_expr(
                    resources::Column::DeleteReason,
                    Expr::value(DeleteReason::Requested.as_str()),
                )
                .col_expr(resources::Column::UpdatedAt, Expr::value(Utc::now()))
                .filter(resources::Column::Id.eq(m.id))
                .filter(resources::Column::State.eq(m.state.clone()))
                .filter(ticket_guard)
                .exec(&txn)
                .await?;
            if r.rows_affected == 1 {
                break true;
            }
            match resources::Entity::find_by_id(m.id).one(&txn).await? {
                Some(fresh) => m = fresh,
                None => break false,
            }
        };
        if !marked {
            outcomes.push(DeleteOutcome {
                id: m.id,
                name: m.name,
                result: format!("already {}", m.state),
            });
            continue;
        }
        let mut failed_ticket = None;
        if let Some(t) = m.ticket_id {
            let r = tickets::Entity::update_many()
                .col_expr(tickets::Column::State, Expr::value(TState::Failed.as_str()))
                .filter(tickets::Column::Id.eq(t))
                .filter(tickets::Column::State.eq(TState::Open.as_str()))
                .exec(&txn)
                .await?;
            failed_ticket = (r.rows_affected == 1).then_some(t);
        }
        audit::record(
            &txn,
            actor,
            "resource.delete",
            "resource",
            m.id,
            json!({ "name": m.name, "state": m.state, "reason": "requested", "failed_ticket": failed_ticket }),
        )
        .await?;
        outcomes.push(DeleteOutcome {
            id: m.id,
            name: m.name,
            result: "marked for deletion".into(),
        });
    }
    txn.commit().await?;
    Ok(outcomes)
}

/// The hook log files of a machine that exist, in the order its life wrote them.
pub fn log_files(log_dir: &Path, id: i32) -> Vec<(HookKind, PathBuf)> {
    [
        HookKind::New,
        HookKind::Livecheck,
        HookKind::Release,
        HookKind::Delete,
    ]
    .into_iter()
    .map(|k| (k, log_path(log_dir, i64::from(id), k)))
    .filter(|(_, p)| p.exists())
    .collect()
}

/// A ticket as maintainers see it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TicketInfo {
    pub id: i32,
    pub state: String,
    pub tags: Vec<String>,
    pub sandbox: Option<String>,
    pub resource: Option<String>,
    pub created_at: String,
}

impl TicketInfo {
    /// resalloc-maint's `ticket-list` line.
    pub fn line(&self) -> String {
        let mut s = format!(
            "{} - state={} tags={}",
            self.id,
            self.state,
            self.tags.join(",")
        );
        if let Some(r) = &self.resource {
            s.push_str(&format!(" resource={r}"));
        }
        s
    }
}

/// Tickets that are not CLOSED, oldest first.
pub async fn tickets_not_closed(db: &impl ConnectionTrait) -> Result<Vec<TicketInfo>, DbErr> {
    let rows = tickets::Entity::find()
        .filter(tickets::Column::State.ne(TState::Closed.as_str()))
        .order_by_asc(tickets::Column::Id)
        .all(db)
        .await?;
    let ids: Vec<i32> = rows.iter().filter_map(|t| t.resource_id).collect();
    let names: std::collections::HashMap<i32, Option<String>> = if ids.is_empty() {
        Default::default()
    } else {
        resources::Entity::find()
            .filter(resources::Column::Id.is_in(ids))
            .all(db)
            .await?
            .into_iter()
            .map(|r| (r.id, r.name))
            .collect()
    };
    Ok(rows
        .into_iter()
        .map(|t| TicketInfo {
            id: t.id,
            state: t.state,
            tags: serde_json::from_str(&t.tags).unwrap_or_default(),
            sandbox: t.sandbox,
            resource: t.resource_id.map(|r| {
                names
                    .get(&r)
                    .cloned()
                    .flatten()
                    .unwrap_or_else(|| r.to_string())
            }),
            created_at: t.created_at.to_rfc3339(),
        })
        .collect())
}
