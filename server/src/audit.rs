//! The append-only audit log: who did what to which object, when, and what changed. Callers
//! pass details with secrets already removed; this module never sees a secret.

use chrono::Utc;
use sea_orm::{ActiveValue::Set, ConnectionTrait, DbErr, EntityTrait};
use serde_json::Value;

use crate::entities::audit_events;

/// Who did it: a signed-in user, a command-line user, or the server itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    User(String),
    Cli(String),
    System,
}

impl Actor {
    /// The command-line user, from the environment (`SUDO_USER`, then `USER`).
    pub fn from_cli_env() -> Actor {
        let user = std::env::var("SUDO_USER")
            .or_else(|_| std::env::var("USER"))
            .unwrap_or_else(|_| "unknown".into());
        Actor::Cli(user)
    }

    pub fn label(&self) -> String {
        match self {
            Actor::User(u) => u.clone(),
            Actor::Cli(u) => format!("cli:{u}"),
            Actor::System => "system".into(),
        }
    }
}

/// Appends one event, in the caller's transaction when it has one.
pub async fn record(
    db: &impl ConnectionTrait,
    actor: &Actor,
    action: &str,
    object_type: &str,
    object_id: impl ToString,
    details: Value,
) -> Result<(), DbErr> {
    audit_events::Entity::insert(audit_events::ActiveModel {
        created_at: Set(Utc::now()),
        actor: Set(actor.label()),
        action: Set(action.to_string()),
        object_type: Set(object_type.to_string()),
        object_id: Set(object_id.to_string()),
        details: Set(details.to_string()),
        ..Default::default()
    })
    .exec(db)
    .await?;
    Ok(())
}
