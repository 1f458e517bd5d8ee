//! API tokens: how Copr's frontend (or a script) reads the routing API. An admin creates one
//! with a name; the token is shown once and only its SHA-256 is stored, with its last four
//! characters to tell tokens apart. Requests carry it as `Authorization: Bearer <token>`.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use ring::digest::{SHA256, digest};
use ring::rand::{SecureRandom, SystemRandom};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter, QueryOrder,
};
use serde_json::json;

use crate::audit::{self, Actor};
use crate::entities::api_tokens;

/// What every token starts with, so a leaked one is recognisable (and searchable).
pub const PREFIX: &str = "cpt_";

/// How often the last use of a token is written, at most.
const LAST_USED_EVERY_SECS: i64 = 60;

/// A token as listed (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub id: i32,
    pub name: String,
    pub hint: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{0}")]
    Invalid(String),
    #[error("no live token is named {0}")]
    NotFound(String),
    #[error(transparent)]
    Db(#[from] DbErr),
}

fn hash(token: &str) -> String {
    digest(&SHA256, token.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A token name: 1–64 letters, digits, '-', '_' or '.'.
pub fn check_name(name: &str) -> Result<(), String> {
    if (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        Ok(())
    } else {
        Err("Name the token with 1 to 64 letters, digits, '-', '_' or '.', e.g. copr-frontend-prod.".into())
    }
}

/// Creates a token named `name`; returns the token, which is never shown again.
pub async fn create(
    db: &DatabaseConnection,
    actor: &Actor,
    name: &str,
) -> Result<String, TokenError> {
    check_name(name).map_err(TokenError::Invalid)?;
    let taken = api_tokens::Entity::find()
        .filter(api_tokens::Column::Name.eq(name))
        .one(db)
        .await?;
    if taken.is_some() {
        return Err(TokenError::Invalid(format!(
            "A token named {name} exists already (revoked tokens keep their names): pick another name."
        )));
    }
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| TokenError::Invalid("the system's random generator failed".into()))?;
    use base64::Engine as _;
    let token = format!(
        "{PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let hint = token[token.len() - 4..].to_string();
    let now = Utc::now();
    let txn = crate::db::begin_write(db).await?;
    let id = api_tokens::Entity::insert(api_tokens::ActiveModel {
        name: Set(name.to_string()),
        token_hash: Set(hash(&token)),
        hint: Set(hint.clone()),
        created_by: Set(actor.label()),
        created_at: Set(now),
        last_used_at: Set(None),
        revoked_at: Set(None),
        revoked_by: Set(None),
        ..Default::default()
    })
    .exec(&txn)
    .await?
    .last_insert_id;
    audit::record(
        &txn,
        actor,
        "token.create",
        "api_token",
        id,
        json!({ "name": name, "hint": hint }),
    )
    .await?;
    txn.commit().await?;
    Ok(token)
}

/// Every token, newest first.
pub async fn list(db: &impl ConnectionTrait) -> Result<Vec<TokenInfo>, DbErr> {
    Ok(api_tokens::Entity::find()
        .order_by_desc(api_tokens::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(|t| TokenInfo {
            id: t.id,
            name: t.name,
            hint: t.hint,
            created_by: t.created_by,
            created_at: t.created_at,
            last_used_at: t.last_used_at,
            revoked_at: t.revoked_at,
        })
        .collect())
}

/// Revokes the live token named `name`.
pub async fn revoke(db: &DatabaseConnection, actor: &Actor, name: &str) -> Result<(), TokenError> {
    let txn = crate::db::begin_write(db).await?;
    let token = api_tokens::Entity::find()
        .filter(api_tokens::Column::Name.eq(name))
        .filter(api_tokens::Column::RevokedAt.is_null())
        .one(&txn)
        .await?
        .ok_or_else(|| TokenError::NotFound(name.to_string()))?;
    api_tokens::Entity::update_many()
        .col_expr(api_tokens::Column::RevokedAt, Expr::value(Utc::now()))
        .col_expr(api_tokens::Column::RevokedBy, Expr::value(actor.label()))
        .filter(api_tokens::Column::Id.eq(token.id))
        .exec(&txn)
        .await?;
    audit::record(
        &txn,
        actor,
        "token.revoke",
        "api_token",
        token.id,
        json!({ "name": name }),
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// The name of the live token `presented` is, noting its use (at most once a minute).
pub async fn verify(db: &impl ConnectionTrait, presented: &str) -> Result<Option<String>, DbErr> {
    if !well_formed(presented) {
        return Ok(None);
    }
    let Some(token) = api_tokens::Entity::find()
        .filter(api_tokens::Column::TokenHash.eq(hash(presented)))
        .filter(api_tokens::Column::RevokedAt.is_null())
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    let now = Utc::now();
    if token
        .last_used_at
        .is_none_or(|t| (now - t).num_seconds() >= LAST_USED_EVERY_SECS)
    {
        api_tokens::Entity::update_many()
            .col_expr(api_tokens::Column::LastUsedAt, Expr::value(now))
            .filter(api_tokens::Column::Id.eq(token.id))
            .exec(db)
            .await?;
    }
    Ok(Some(token.name))
}

/// Whether `presented` could be a token at all (else it is refused without a lookup).
fn well_formed(presented: &str) -> bool {
    presented.starts_with(PREFIX) && presented.len() <= 128
}

/// Tokens verified lately, so a poll does not ask the database each time: the presented
/// token → (its name, when). A revocation made by this process clears it; one made elsewhere
/// (the CLI, another replica) takes effect within [`MEMORY`].
///
/// A token not remembered is looked up once at a time: when many connections of one Copr
/// frontend arrive together (a restart), the first lookup is remembered and the others find
/// it, instead of each asking the database and writing the token's last use (SQLite takes
/// those writes one by one). Different tokens are looked up side by side, so a flood of
/// wrong ones does not hold up the right ones.
#[derive(Default)]
pub struct TokenMemory {
    verified: std::sync::Mutex<std::collections::HashMap<String, (Arc<str>, std::time::Instant)>>,
    /// The token → its turn to be looked up, while some check holds or awaits it.
    checking: std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    looked_up: std::sync::atomic::AtomicU64,
}

/// How long a verified token is trusted without asking the database again.
pub const MEMORY: std::time::Duration = std::time::Duration::from_secs(5);

impl TokenMemory {
    /// The name of the live token `presented` is, from memory or from the database.
    pub async fn verify(
        &self,
        db: &impl ConnectionTrait,
        presented: &str,
    ) -> Result<Option<Arc<str>>, DbErr> {
        if let Some(name) = self.remembered(presented) {
            return Ok(Some(name));
        }
        if !well_formed(presented) {
            return Ok(None);
        }
        let turn = {
            let mut checking = self.checking.lock().expect("token checks");
            // Turns nobody holds or awaits any more.
            checking.retain(|_, turn| Arc::strong_count(turn) > 1);
            checking.entry(presented.to_string()).or_default().clone()
        };
        let _turn = turn.lock().await;
        if let Some(name) = self.remembered(presented) {
            return Ok(Some(name));
        }
        self.looked_up
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name: Option<Arc<str>> = verify(db, presented).await?.map(Arc::from);
        let mut memory = self.verified.lock().expect("token memory");
        memory.retain(|_, (_, at)| at.elapsed() < MEMORY);
        if let Some(name) = &name {
            memory.insert(
                presented.to_string(),
                (name.clone(), std::time::Instant::now()),
            );
        }
        Ok(name)
    }

    /// The name of `presented`, when it was found live less than [`MEMORY`] ago.
    pub fn remembered(&self, presented: &str) -> Option<Arc<str>> {
        match self.verified.lock().expect("token memory").get(presented) {
            Some((name, at)) if at.elapsed() < MEMORY => Some(name.clone()),
            _ => None,
        }
    }

    /// How many times a token was looked up in the database.
    pub fn looked_up(&self) -> u64 {
        self.looked_up.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Forgets every token: one was revoked.
    pub fn forget(&self) {
        self.verified.lock().expect("token memory").clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_hashes_are_hex_sha256() {
        assert!(check_name("copr-frontend.prod_1").is_ok());
        assert!(check_name("").is_err() && check_name("a b").is_err());
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
