//! One pool, as its page shows it: the configuration as `pools.yaml` writes it, its state and
//! counts, its machines, the waiting builds it could serve with why they wait, its start
//! statistics, and, for the owning team's members and admins, each machine's data and hook
//! logs.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use super::PoolStatus;
use super::tickets::TicketDetail;
use crate::error::{AppError, FieldError};

/// One hook log of a machine (its last part when long).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookLog {
    /// resalloc's names: `alloc`, `watch`, `release`, `terminate`.
    pub kind: String,
    pub text: String,
    /// Only the end is shown.
    pub truncated: bool,
}

/// A machine of the pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MachineView {
    pub id: i64,
    pub name: String,
    pub state: String,
    pub ticket: Option<i64>,
    pub sandbox: Option<String>,
    pub age_secs: f64,
    pub releases: i64,
    pub livecheck_failures: i64,
    /// `cmd_new`'s output (its address): owners and admins only.
    pub data: Option<String>,
    /// Owners and admins only; empty for everyone else.
    pub logs: Vec<HookLog>,
}

/// The pool page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolPage {
    pub status: PoolStatus,
    pub owner_team: Option<String>,
    /// Why it is in its state, when someone paused it with a reason.
    pub state_reason: Option<String>,
    /// The pool as `pools.yaml` would hold it.
    pub config_yaml: String,
    pub machines: Vec<MachineView>,
    /// Waiting tickets this pool is the reason for, or could serve.
    pub waiting: Vec<TicketDetail>,
    /// The viewer sees machines' data and hook logs (a member of the owning team, or an admin).
    pub private: bool,
    /// The viewer may pause and resume it (members of the owning team and admins).
    pub may_pause: bool,
    /// The viewer is an admin (drain, retire, delete machines).
    pub admin: bool,
    pub csrf_token: String,
    pub notice: Option<String>,
    pub errors: Vec<FieldError>,
}

/// The parts of a pool page that change while it is open, as the live stream sends them:
/// each field is there only when it changed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PoolUpdate {
    /// The pool's line and why it is in its state.
    pub status: Option<(PoolStatus, Option<String>)>,
    pub machines: Option<Vec<MachineView>>,
    pub waiting: Option<Vec<TicketDetail>>,
    pub charts: Option<Vec<super::charts::Chart>>,
    /// Hook logs by machine id, apart from the machines because they change on their own
    /// (owners and admins only).
    pub logs: Option<std::collections::BTreeMap<i64, Vec<HookLog>>>,
}

impl PoolPage {
    /// Takes in what the live stream sent.
    pub fn apply(&mut self, update: PoolUpdate) {
        if let Some((status, reason)) = update.status {
            self.status = status;
            self.state_reason = reason;
        }
        if let Some(mut machines) = update.machines {
            // Logs come on their own: keep the ones shown for machines that are still here.
            for m in &mut machines {
                if let Some(old) = self.machines.iter_mut().find(|o| o.id == m.id)
                    && m.logs.is_empty()
                {
                    m.logs = std::mem::take(&mut old.logs);
                }
            }
            self.machines = machines;
        }
        if let Some(mut logs) = update.logs {
            for m in &mut self.machines {
                m.logs = logs.remove(&m.id).unwrap_or_default();
            }
        }
        if let Some(waiting) = update.waiting {
            self.waiting = waiting;
        }
    }
}

/// The server side of the pool pages. Every method authorizes.
#[cfg(feature = "ssr")]
#[async_trait::async_trait]
pub trait PoolsBackend: Send + Sync + 'static {
    async fn pool_page(&self, name: String) -> Result<PoolPage, AppError>;
}

#[cfg(feature = "ssr")]
fn pools_backend() -> Result<std::sync::Arc<dyn PoolsBackend>, AppError> {
    use_context::<std::sync::Arc<dyn PoolsBackend>>().ok_or_else(|| {
        leptos::logging::error!("no PoolsBackend in the Leptos context");
        AppError::Internal
    })
}

/// One pool's page.
#[server(prefix = "/api/ui", endpoint = "pool")]
pub async fn get_pool_page(name: String) -> Result<PoolPage, AppError> {
    super::answer(match pools_backend() {
        Ok(b) => b.pool_page(name).await,
        Err(e) => Err(e),
    })
}
