//! The server's implementation of the UI's [`Backend`] port: each method authorizes, calls one
//! domain function and maps its errors to the shared vocabulary.

use app::api::{Backend, StatusSnapshot};
use app::error::AppError;

use super::AppState;

pub struct ServerBackend {
    pub state: AppState,
}

/// Logs a database error and hides it from the user.
fn internal(context: &'static str) -> impl FnOnce(sea_orm::DbErr) -> AppError {
    move |e| {
        tracing::error!(error = %e, context, "database error");
        AppError::Internal
    }
}

#[async_trait::async_trait]
impl Backend for ServerBackend {
    async fn status(&self) -> Result<StatusSnapshot, AppError> {
        crate::status::snapshot(&self.state.db)
            .await
            .map_err(internal("status snapshot"))
    }
}
