//! Teams' cloud credentials: created, listed, renamed, given a new secret and revoked by the
//! team's members; sealed at rest with [`crate::secrets`]; handed to the hooks of the pools
//! that use them as environment variables and short-lived files ([`kinds::materialize`]).
//!
//! What this module must never do: return, log, audit or format a secret. Secrets enter
//! through a form post, are sealed in the same transaction that stores the credential, and
//! are opened again only to check them (startup, key rotation) or to hand them to a hook.

pub mod kinds;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use app::api::credentials::CredentialView;
use app::error::{AppError, FieldError};
use chrono::Utc;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr,
    EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
};
use secrecy::SecretString;
use serde_json::json;

use crate::accounts;
use crate::audit::{self, Actor};
use crate::entities::{credential_secrets, credentials, pools, teams};
use crate::secrets::{Keyring, Sealed};

/// Why a credential operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("{}", .0.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<FieldError>),
    #[error("{0} was not found")]
    NotFound(String),
    #[error("credential {0} was revoked; add a new one")]
    Revoked(String),
    #[error(transparent)]
    Db(#[from] DbErr),
}

impl From<CredentialError> for AppError {
    fn from(e: CredentialError) -> AppError {
        match e {
            CredentialError::Invalid(errors) => AppError::Invalid(errors),
            CredentialError::NotFound(what) => AppError::NotFound(what),
            CredentialError::Revoked(name) => {
                AppError::Conflict(format!("credential {name} was revoked; add a new one"))
            }
            CredentialError::Db(e) => {
                tracing::error!(error = %e, "database error in the credentials");
                AppError::Internal
            }
        }
    }
}

fn invalid(field: &str, message: impl Into<String>) -> CredentialError {
    CredentialError::Invalid(vec![FieldError {
        field: field.into(),
        message: message.into(),
    }])
}

/// The associated data that binds a sealed field to its credential and field name.
fn aad(credential_id: i32, field: &str) -> Vec<u8> {
    format!("copr-pools/credential/{credential_id}/{field}").into_bytes()
}

/// What a form asks to add.
#[derive(Clone, Copy)]
pub struct NewCredential<'a> {
    pub kind: &'a str,
    /// OpenStack's auth type.
    pub variant: Option<&'a str>,
    pub name: &'a str,
    /// The form's fields, secrets included.
    pub input: &'a BTreeMap<String, String>,
}

impl std::fmt::Debug for NewCredential<'_> {
    // The input holds the secrets: names only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewCredential")
            .field("kind", &self.kind)
            .field("variant", &self.variant)
            .field("name", &self.name)
            .field("fields", &self.input.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// A credential that the configured keys cannot open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub id: i32,
    pub team: String,
    pub name: String,
    pub key_id: String,
    pub why: String,
}

/// What `copr-pools key rotate` did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Rotated {
    pub resealed: usize,
    pub already_current: usize,
    pub unreadable: Vec<Unreadable>,
}

/// The credentials service: the database and the keys.
#[derive(Clone)]
pub struct Vault {
    db: DatabaseConnection,
    keyring: Arc<Keyring>,
}

impl Vault {
    pub fn new(db: DatabaseConnection, keyring: Arc<Keyring>) -> Vault {
        Vault { db, keyring }
    }

    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    async fn team_id(&self, team: &str) -> Result<i32, CredentialError> {
        accounts::team(&self.db, team)
            .await?
            .map(|t| t.id)
            .ok_or_else(|| CredentialError::NotFound(format!("team {team}")))
    }

    async fn row(&self, team: &str, id: i32) -> Result<credentials::Model, CredentialError> {
        let team_id = self.team_id(team).await?;
        credentials::Entity::find_by_id(id)
            .filter(credentials::Column::TeamId.eq(team_id))
            .one(&self.db)
            .await?
            .ok_or_else(|| CredentialError::NotFound(format!("credential {id} of team {team}")))
    }

    /// A team's credentials, live ones first, each without its secret.
    pub async fn list(&self, team: &str) -> Result<Vec<CredentialView>, CredentialError> {
        let team_id = self.team_id(team).await?;
        let rows = credentials::Entity::find()
            .filter(credentials::Column::TeamId.eq(team_id))
            .order_by_asc(credentials::Column::Name)
            .all(&self.db)
            .await?;
        let mut views = Vec::with_capacity(rows.len());
        for row in rows {
            views.push(self.view_of(team, row).await?);
        }
        views.sort_by_key(|v| v.revoked_at.is_some());
        Ok(views)
    }

    /// One of a team's credentials.
    pub async fn view(&self, team: &str, id: i32) -> Result<CredentialView, CredentialError> {
        let row = self.row(team, id).await?;
        self.view_of(team, row).await
    }

    async fn view_of(
        &self,
        team: &str,
        row: credentials::Model,
    ) -> Result<CredentialView, CredentialError> {
        let fields = stored_fields(&row);
        let spec = kinds::spec_of(&row.kind, &fields);
        let labelled = spec
            .as_ref()
            .map(|s| {
                s.fields
                    .iter()
                    .filter(|f| !f.secret)
                    .filter_map(|f| fields.get(&f.name).map(|v| (f.label.clone(), v.clone())))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        let mut labelled = labelled;
        if let Some(fp) = fields.get("public_key_fingerprint") {
            labelled.push(("Public key".into(), fp.clone()));
        }
        let pools = pools::Entity::find()
            .filter(pools::Column::CredentialId.eq(row.id))
            .order_by_asc(pools::Column::Name)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|p| p.name)
            .collect();
        // Checked without opening anything: the startup check opens them all once.
        let sealed = credential_secrets::Entity::find()
            .filter(credential_secrets::Column::CredentialId.eq(row.id))
            .all(&self.db)
            .await?;
        let known = self.keyring.ids();
        let unreadable = sealed
            .iter()
            .find(|s| !known.contains(&s.key_id.as_str()))
            .filter(|_| row.revoked_at.is_none())
            .map(|s| {
                format!(
                    "its secret was sealed with key {:?}, which is not configured",
                    s.key_id
                )
            });
        let secret_kept = row.revoked_at.is_some() && !sealed.is_empty();
        let time = |t: chrono::DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        Ok(CredentialView {
            id: row.id,
            team: team.to_string(),
            kind: row.kind.clone(),
            variant: fields.get("auth_type").cloned(),
            name: row.name.clone(),
            fields: labelled,
            fingerprint: row.fingerprint.clone(),
            last4: row.last4.clone(),
            created_by: row.created_by.clone(),
            created_at: time(row.created_at),
            secret_replaced_at: row.secret_replaced_at.map(time),
            last_used_at: row.last_used_at.map(time),
            revoked_at: row.revoked_at.map(time),
            revoked_by: row.revoked_by.clone(),
            pools,
            unreadable,
            secret_kept,
        })
    }

    /// Opens every secret of a credential, or says why one does not open.
    async fn open_all(
        &self,
        row: &credentials::Model,
    ) -> Result<Result<BTreeMap<String, SecretString>, String>, DbErr> {
        let sealed = credential_secrets::Entity::find()
            .filter(credential_secrets::Column::CredentialId.eq(row.id))
            .all(&self.db)
            .await?;
        let mut secrets = BTreeMap::new();
        for s in sealed {
            let opened = self.keyring.open(
                &Sealed {
                    key_id: s.key_id.clone(),
                    blob: s.sealed.clone(),
                },
                &aad(row.id, &s.field),
            );
            match opened {
                Ok(secret) => {
                    secrets.insert(s.field.clone(), secret);
                }
                Err(e) => return Ok(Err(format!("the secret cannot be read: {e}"))),
            }
        }
        Ok(Ok(secrets))
    }

    /// Adds a credential to a team. Names are 1–64 letters, digits, `-`, `_` or `.`, unique
    /// among the team's live credentials. Every field is checked by its kind's rules; the
    /// secrets are sealed in the transaction that stores the credential.
    pub async fn create(
        &self,
        actor: &Actor,
        team: &str,
        new: NewCredential<'_>,
        demo_spawners: bool,
    ) -> Result<i32, CredentialError> {
        let NewCredential {
            kind,
            variant,
            name,
            input,
        } = new;
        let spec = app::api::credentials::form_spec(kind, variant)
            .filter(|s| s.kind != "local" || demo_spawners)
            .ok_or_else(|| {
                invalid(
                    "kind",
                    "Choose one of the kinds of credential on offer on this server.",
                )
            })?;
        let name = name.trim();
        let mut errors = Vec::new();
        if let Err(message) = check_name(name) {
            errors.push(FieldError {
                field: "name".into(),
                message,
            });
        }
        let checked = match kinds::check(&spec, input, None, false) {
            Ok(c) => Some(c),
            Err(mut e) => {
                errors.append(&mut e);
                None
            }
        };
        if !errors.is_empty() {
            return Err(CredentialError::Invalid(errors));
        }
        let mut checked = checked.expect("checked when there are no errors");
        if kind == "libvirt"
            && let Some(secret) = checked.secrets.get("ssh_private_key")
            && let Ok(Some(fp)) =
                kinds::ssh_private_key(secrecy::ExposeSecret::expose_secret(secret))
        {
            checked.fields.insert("public_key_fingerprint".into(), fp);
        }
        let team_id = self.team_id(team).await?;
        let txn = crate::db::begin_write(&self.db).await?;
        if live_named(&txn, team_id, name).await?.is_some() {
            return Err(invalid(
                "name",
                format!(
                    "Your team already has a credential named {name:?}: pick another name, or give that one a new secret."
                ),
            ));
        }
        let now = Utc::now();
        let (fingerprint, last4) = self.describe(&spec, &checked.secrets);
        let inserted = credentials::Entity::insert(credentials::ActiveModel {
            team_id: Set(team_id),
            kind: Set(kind.to_string()),
            name: Set(name.to_string()),
            fields: Set(serde_json::to_string(&checked.fields).expect("fields serialize")),
            fingerprint: Set(fingerprint.clone()),
            last4: Set(last4),
            created_by: Set(actor.label()),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        })
        .exec(&txn)
        .await?;
        let id = inserted.last_insert_id;
        self.store_secrets(&txn, id, &checked.secrets).await?;
        audit::record(
            &txn,
            actor,
            "credential.create",
            "credential",
            format!("{team}/{name}"),
            json!({
                "id": id,
                "kind": kind,
                "fields": checked.fields,
                "secret_fields": checked.secrets.keys().collect::<Vec<_>>(),
                "fingerprint": fingerprint,
            }),
        )
        .await?;
        txn.commit().await?;
        Ok(id)
    }

    /// Renames a live credential.
    pub async fn rename(
        &self,
        actor: &Actor,
        team: &str,
        id: i32,
        name: &str,
    ) -> Result<(), CredentialError> {
        let name = name.trim();
        check_name(name).map_err(|m| invalid("name", m))?;
        let row = self.row(team, id).await?;
        if row.revoked_at.is_some() {
            return Err(CredentialError::Revoked(format!("{team}/{}", row.name)));
        }
        if row.name == name {
            return Ok(());
        }
        let txn = crate::db::begin_write(&self.db).await?;
        if live_named(&txn, row.team_id, name).await?.is_some() {
            return Err(invalid(
                "name",
                format!("Your team already has a credential named {name:?}."),
            ));
        }
        let old = row.name.clone();
        let renamed = credentials::Entity::update_many()
            .col_expr(credentials::Column::Name, Expr::value(name))
            .col_expr(credentials::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(credentials::Column::Id.eq(id))
            .filter(credentials::Column::RevokedAt.is_null())
            .exec(&txn)
            .await?;
        if renamed.rows_affected == 0 {
            return Err(CredentialError::Revoked(format!("{team}/{old}")));
        }
        audit::record(
            &txn,
            actor,
            "credential.rename",
            "credential",
            format!("{team}/{name}"),
            json!({ "id": id, "name": [old, name] }),
        )
        .await?;
        txn.commit().await?;
        Ok(())
    }

    /// Gives a live credential new secret values. The old ciphertexts are deleted in the
    /// same transaction; the non-secret fields stay.
    pub async fn replace_secret(
        &self,
        actor: &Actor,
        team: &str,
        id: i32,
        input: &BTreeMap<String, String>,
    ) -> Result<(), CredentialError> {
        let row = self.row(team, id).await?;
        if row.revoked_at.is_some() {
            return Err(CredentialError::Revoked(format!("{team}/{}", row.name)));
        }
        let fields = stored_fields(&row);
        let spec = kinds::spec_of(&row.kind, &fields)
            .ok_or_else(|| invalid("kind", "This credential's kind is no longer known."))?;
        let checked =
            kinds::check(&spec, input, Some(&fields), true).map_err(CredentialError::Invalid)?;
        let (fingerprint, last4) = self.describe(&spec, &checked.secrets);
        let txn = crate::db::begin_write(&self.db).await?;
        let now = Utc::now();
        let name = row.name.clone();
        // Guarded by the state it expects: a revocation that won the race stays one.
        let updated = credentials::Entity::update_many()
            .col_expr(
                credentials::Column::Fingerprint,
                Expr::value(fingerprint.clone()),
            )
            .col_expr(credentials::Column::Last4, Expr::value(last4))
            .col_expr(credentials::Column::SecretReplacedAt, Expr::value(now))
            .col_expr(credentials::Column::UpdatedAt, Expr::value(now))
            .filter(credentials::Column::Id.eq(id))
            .filter(credentials::Column::RevokedAt.is_null())
            .exec(&txn)
            .await?;
        if updated.rows_affected == 0 {
            return Err(CredentialError::Revoked(format!("{team}/{name}")));
        }
        credential_secrets::Entity::delete_many()
            .filter(credential_secrets::Column::CredentialId.eq(id))
            .exec(&txn)
            .await?;
        self.store_secrets(&txn, id, &checked.secrets).await?;
        audit::record(
            &txn,
            actor,
            "credential.replace_secret",
            "credential",
            format!("{team}/{name}"),
            json!({ "id": id, "secret_fields": checked.secrets.keys().collect::<Vec<_>>(), "fingerprint": fingerprint }),
        )
        .await?;
        txn.commit().await?;
        Ok(())
    }

    /// Revokes a credential for good: no machine starts with it again, and every active pool
    /// that uses it is paused (running machines stay until deleted), with the reason on the
    /// pool. Its secret is deleted at once, or, while machines started with it remain, kept
    /// for the hooks that delete them and deleted with the last ([`Vault::purge_revoked`]).
    /// Returns the pools it paused.
    pub async fn revoke(
        &self,
        actor: &Actor,
        team: &str,
        id: i32,
    ) -> Result<Vec<String>, CredentialError> {
        let row = self.row(team, id).await?;
        if row.revoked_at.is_some() {
            return Ok(Vec::new());
        }
        let txn = crate::db::begin_write(&self.db).await?;
        let now = Utc::now();
        let name = format!("{team}/{}", row.name);
        let revoked = credentials::Entity::update_many()
            .col_expr(credentials::Column::RevokedAt, Expr::value(now))
            .col_expr(credentials::Column::RevokedBy, Expr::value(actor.label()))
            .col_expr(credentials::Column::UpdatedAt, Expr::value(now))
            .filter(credentials::Column::Id.eq(id))
            .filter(credentials::Column::RevokedAt.is_null())
            .exec(&txn)
            .await?;
        if revoked.rows_affected == 0 {
            return Ok(Vec::new());
        }
        if machines_using(&txn, id).await? == 0 {
            credential_secrets::Entity::delete_many()
                .filter(credential_secrets::Column::CredentialId.eq(id))
                .exec(&txn)
                .await?;
        }
        let to_pause: Vec<String> = pools::Entity::find()
            .filter(pools::Column::CredentialId.eq(id))
            .filter(pools::Column::State.eq("active"))
            .all(&txn)
            .await?
            .into_iter()
            .map(|p| p.name)
            .collect();
        let reason = format!(
            "paused: its credential {name} was revoked by {} on {}",
            actor.label(),
            now.format("%Y-%m-%d %H:%M UTC")
        );
        if !to_pause.is_empty() {
            pools::Entity::update_many()
                .col_expr(pools::Column::State, Expr::value("paused"))
                .col_expr(pools::Column::StateReason, Expr::value(reason.clone()))
                .col_expr(pools::Column::UpdatedAt, Expr::value(now))
                .filter(pools::Column::Name.is_in(to_pause.clone()))
                .exec(&txn)
                .await?;
        }
        audit::record(
            &txn,
            actor,
            "credential.revoke",
            "credential",
            &name,
            json!({ "id": id, "paused_pools": to_pause }),
        )
        .await?;
        for pool in &to_pause {
            audit::record(
                &txn,
                actor,
                "pool.pause",
                "pool",
                pool,
                json!({ "reason": reason }),
            )
            .await?;
        }
        txn.commit().await?;
        Ok(to_pause)
    }

    /// Deletes the secrets of revoked credentials that no machine needs any more. Returns the
    /// credentials it emptied.
    pub async fn purge_revoked(&self) -> Result<Vec<String>, DbErr> {
        let kept: Vec<i32> = credential_secrets::Entity::find()
            .all(&self.db)
            .await?
            .into_iter()
            .map(|s| s.credential_id)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if kept.is_empty() {
            return Ok(Vec::new());
        }
        let revoked = credentials::Entity::find()
            .filter(credentials::Column::Id.is_in(kept))
            .filter(credentials::Column::RevokedAt.is_not_null())
            .all(&self.db)
            .await?;
        let teams = team_names(&self.db).await?;
        let mut purged = Vec::new();
        for c in revoked {
            let txn = crate::db::begin_write(&self.db).await?;
            if machines_using(&txn, c.id).await? > 0 {
                continue;
            }
            credential_secrets::Entity::delete_many()
                .filter(credential_secrets::Column::CredentialId.eq(c.id))
                .exec(&txn)
                .await?;
            let name = format!(
                "{}/{}",
                teams.get(&c.team_id).cloned().unwrap_or_default(),
                c.name
            );
            audit::record(
                &txn,
                &Actor::System,
                "credential.purge",
                "credential",
                &name,
                json!({ "id": c.id, "why": "revoked, and its last machine is gone" }),
            )
            .await?;
            txn.commit().await?;
            purged.push(name);
        }
        Ok(purged)
    }

    /// The live credentials the configured keys cannot open (checked at startup, so a wrong
    /// or missing key shows at once and not at the first build).
    pub async fn unreadable(&self) -> Result<Vec<Unreadable>, DbErr> {
        let mut out = Vec::new();
        let team_names = team_names(&self.db).await?;
        for row in credentials::Entity::find()
            .filter(credentials::Column::RevokedAt.is_null())
            .all(&self.db)
            .await?
        {
            for s in credential_secrets::Entity::find()
                .filter(credential_secrets::Column::CredentialId.eq(row.id))
                .all(&self.db)
                .await?
            {
                let sealed = Sealed {
                    key_id: s.key_id.clone(),
                    blob: s.sealed,
                };
                if let Err(e) = self.keyring.open(&sealed, &aad(row.id, &s.field)) {
                    out.push(Unreadable {
                        id: row.id,
                        team: team_names.get(&row.team_id).cloned().unwrap_or_default(),
                        name: row.name.clone(),
                        key_id: s.key_id,
                        why: e.to_string(),
                    });
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Seals every stored secret again with the first key; each credential in its own
    /// transaction, so an interrupted rotation can simply run again.
    pub async fn rotate(&self) -> Result<Rotated, DbErr> {
        let mut report = Rotated::default();
        let current = self.keyring.current_id().to_string();
        let team_names = team_names(&self.db).await?;
        for row in credentials::Entity::find().all(&self.db).await? {
            let txn = crate::db::begin_write(&self.db).await?;
            let secrets = credential_secrets::Entity::find()
                .filter(credential_secrets::Column::CredentialId.eq(row.id))
                .all(&txn)
                .await?;
            for s in secrets {
                if s.key_id == current {
                    report.already_current += 1;
                    continue;
                }
                let sealed = Sealed {
                    key_id: s.key_id.clone(),
                    blob: s.sealed.clone(),
                };
                let place = aad(row.id, &s.field);
                match self.keyring.open(&sealed, &place) {
                    Ok(plain) => {
                        let fresh = self.keyring.seal(
                            &place,
                            secrecy::ExposeSecret::expose_secret(&plain).as_bytes(),
                        );
                        let mut am = s.into_active_model();
                        am.key_id = Set(fresh.key_id);
                        am.sealed = Set(fresh.blob);
                        am.update(&txn).await?;
                        report.resealed += 1;
                    }
                    Err(e) => report.unreadable.push(Unreadable {
                        id: row.id,
                        team: team_names.get(&row.team_id).cloned().unwrap_or_default(),
                        name: row.name.clone(),
                        key_id: s.key_id.clone(),
                        why: e.to_string(),
                    }),
                }
            }
            txn.commit().await?;
        }
        Ok(report)
    }

    /// The id of a team's live credential named `team/name`.
    pub async fn resolve(
        db: &impl ConnectionTrait,
        qualified: &str,
    ) -> Result<Option<(i32, i32)>, DbErr> {
        let Some((team, name)) = qualified.split_once('/') else {
            return Ok(None);
        };
        let Some(team) = accounts::team(db, team).await? else {
            return Ok(None);
        };
        Ok(live_named(db, team.id, name)
            .await?
            .map(|c| (c.id, team.id)))
    }

    /// `team/name` of every credential, by id (for `pools export`).
    pub async fn qualified_names(
        db: &impl ConnectionTrait,
    ) -> Result<BTreeMap<i32, String>, DbErr> {
        let teams = team_names(db).await?;
        Ok(credentials::Entity::find()
            .all(db)
            .await?
            .into_iter()
            .map(|c| {
                (
                    c.id,
                    format!(
                        "{}/{}",
                        teams.get(&c.team_id).cloned().unwrap_or_default(),
                        c.name
                    ),
                )
            })
            .collect())
    }

    async fn store_secrets(
        &self,
        txn: &impl ConnectionTrait,
        id: i32,
        secrets: &BTreeMap<String, SecretString>,
    ) -> Result<(), DbErr> {
        let now = Utc::now();
        for (field, value) in secrets {
            let sealed = self.keyring.seal(
                &aad(id, field),
                secrecy::ExposeSecret::expose_secret(value).as_bytes(),
            );
            credential_secrets::Entity::insert(credential_secrets::ActiveModel {
                credential_id: Set(id),
                field: Set(field.clone()),
                key_id: Set(sealed.key_id),
                sealed: Set(sealed.blob),
                created_at: Set(now),
            })
            .exec(txn)
            .await?;
        }
        Ok(())
    }

    /// The fingerprint of all secret fields and the last four characters of the main one.
    fn describe(
        &self,
        spec: &app::api::credentials::FormSpec,
        secrets: &BTreeMap<String, SecretString>,
    ) -> (String, String) {
        if secrets.is_empty() {
            return ("—".into(), "—".into());
        }
        let fingerprint = self
            .keyring
            .fingerprint(&secrets.values().collect::<Vec<_>>());
        let last4 = kinds::main_secret(spec)
            .and_then(|f| secrets.get(f))
            .map(|s| kinds::last4(secrecy::ExposeSecret::expose_secret(s)))
            .unwrap_or_default();
        (fingerprint, last4)
    }

    /// Writes the credential's files into `dir` and returns the variables a hook gets.
    /// Records when it was last used.
    pub async fn materialize(
        &self,
        id: i32,
        kind: crate::engine::model::HookKind,
        dir: &Path,
    ) -> Result<Vec<(String, String)>, String> {
        let row = credentials::Entity::find_by_id(id)
            .one(&self.db)
            .await
            .map_err(|e| format!("cannot read credential {id}: {e}"))?
            .ok_or_else(|| format!("credential {id} no longer exists"))?;
        if row.revoked_at.is_some() && kind == crate::engine::model::HookKind::New {
            return Err(format!(
                "credential {} was revoked: no machine starts with it",
                row.name
            ));
        }
        let secrets = self
            .open_all(&row)
            .await
            .map_err(|e| format!("cannot read credential {}: {e}", row.name))?
            .map_err(|why| format!("credential {}: {why}", row.name))?;
        let env = kinds::materialize(&row.kind, &stored_fields(&row), &secrets, dir)
            .map_err(|e| format!("cannot write credential {}'s files: {e}", row.name))?;
        // At most once a minute: livechecks run often, and SQLite has one writer.
        let now = Utc::now();
        let used = credentials::Entity::update_many()
            .col_expr(credentials::Column::LastUsedAt, Expr::value(now))
            .filter(credentials::Column::Id.eq(id))
            .filter(
                sea_orm::Condition::any()
                    .add(credentials::Column::LastUsedAt.is_null())
                    .add(credentials::Column::LastUsedAt.lt(now - chrono::Duration::seconds(60))),
            )
            .exec(&self.db)
            .await;
        if let Err(e) = used {
            tracing::warn!(error = %e, credential = id, "cannot record the credential's use");
        }
        Ok(env)
    }
}

#[async_trait::async_trait]
impl crate::engine::hooks::HookCredentials for Vault {
    async fn materialize(
        &self,
        id: i32,
        kind: crate::engine::model::HookKind,
        dir: &Path,
    ) -> Result<Vec<(String, String)>, String> {
        Vault::materialize(self, id, kind, dir).await
    }
}

/// Machines that exist (not ENDED) in the pools that use a credential.
async fn machines_using(db: &impl ConnectionTrait, credential_id: i32) -> Result<u64, DbErr> {
    use sea_orm::PaginatorTrait;
    let pools: Vec<String> = pools::Entity::find()
        .filter(pools::Column::CredentialId.eq(credential_id))
        .all(db)
        .await?
        .into_iter()
        .map(|p| p.name)
        .collect();
    if pools.is_empty() {
        return Ok(0);
    }
    crate::entities::resources::Entity::find()
        .filter(crate::engine::store::live_resources())
        .filter(crate::entities::resources::Column::Pool.is_in(pools))
        .count(db)
        .await
}

fn stored_fields(row: &credentials::Model) -> BTreeMap<String, String> {
    serde_json::from_str(&row.fields).unwrap_or_default()
}

async fn live_named(
    db: &impl ConnectionTrait,
    team_id: i32,
    name: &str,
) -> Result<Option<credentials::Model>, DbErr> {
    credentials::Entity::find()
        .filter(credentials::Column::TeamId.eq(team_id))
        .filter(credentials::Column::Name.eq(name))
        .filter(credentials::Column::RevokedAt.is_null())
        .one(db)
        .await
}

async fn team_names(db: &impl ConnectionTrait) -> Result<BTreeMap<i32, String>, DbErr> {
    Ok(teams::Entity::find()
        .all(db)
        .await?
        .into_iter()
        .map(|t| (t.id, t.name))
        .collect())
}

/// A credential name: 1–64 letters, digits, `-`, `_` or `.`.
fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err("Name it with 1 to 64 letters, digits, '-', '_' or '.', e.g. aws-us-east.".into())
    }
}
