//! Tickets one at a time: what a build asked for, what it got, and, while it waits, why.
//! `GET /api/v1/tickets/{id}` answers with [`TicketDetail`] as JSON; the status page searches
//! waiting tickets by sandbox (`owner/project--submitter`, as Copr names it) or id.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::AppError;

/// Why a ticket waits: a stable `code` for tools and one sentence that names the pool, tag or
/// limit involved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct WaitingReason {
    /// `no_pool_offers_tag`, `no_pool_offers_all_tags`, `pool_dedicated`, `pool_paused`,
    /// `pool_draining`, `pool_over_cap`, `pool_at_max`, `machine_held_for_reuse`,
    /// `pool_at_max_starting`, `pool_start_delay`, `pool_prealloc_taken`,
    /// `machine_starting`, `machine_releasing`, `machine_ready` or `start_pending`.
    pub code: String,
    pub text: String,
    /// The pool the reason is about, if one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// The tag the reason is about, if one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// When the condition ends by itself (RFC 3339), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
}

/// The machine a ticket got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct TicketMachine {
    pub id: i64,
    pub name: String,
    pub pool: String,
}

/// One ticket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct TicketDetail {
    pub id: i64,
    /// `OPEN`, `CLOSED` or `FAILED`.
    pub state: String,
    pub tags: Vec<String>,
    pub sandbox: Option<String>,
    /// Seconds since the ticket was taken.
    pub age: f64,
    pub created_at: String,
    pub machine: Option<TicketMachine>,
    /// Set while the ticket is OPEN without a machine.
    pub waiting_reason: Option<WaitingReason>,
}

/// Waiting tickets whose sandbox contains the text, or the ticket with that id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct TicketSearch {
    pub query: String,
    pub tickets: Vec<TicketDetail>,
    /// More matched than are shown.
    pub truncated: bool,
}

/// Tickets matching a Copr owner, project, sandbox or ticket id.
#[server(prefix = "/api/ui", endpoint = "tickets")]
pub async fn search_tickets(query: String) -> Result<TicketSearch, AppError> {
    super::answer(match super::backend() {
        Ok(b) => b.search_tickets(query).await,
        Err(e) => Err(e),
    })
}
