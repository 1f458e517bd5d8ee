//! The credential pages' server side: the [`CredentialsBackend`] port the pages read through,
//! and the form posts that change credentials (add, rename, new secret, revoke).
//!
//! Forms are plain HTML posts that work without JavaScript: a post answers with a redirect
//! (303) to the page, and the outcome travels in the session as a one-time "flash" that the
//! page reads once: a notice, or the errors by field with what was typed, minus every secret
//! (the form says the secrets were cleared). Nothing secret is ever put in the flash, a URL or
//! a log line.

use std::collections::BTreeMap;

use app::api::credentials::*;
use app::error::AppError;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::post;
use axum::{Form, Router};
use tower_sessions::Session;

use super::backend::{request_form_token, request_session, request_user};
use super::forms::{Flash, flash_and_redirect, poster, respond, take_flash};
use crate::audit::Actor;
use crate::auth::current::{MaybeUser, require, require_member};
use crate::credentials::{CredentialError, NewCredential};
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/teams/{team}/credentials", post(create))
        .route("/teams/{team}/credentials/{id}/rename", post(rename))
        .route(
            "/teams/{team}/credentials/{id}/secret",
            post(replace_secret),
        )
        .route("/teams/{team}/credentials/{id}/revoke", post(revoke))
}

/// The port's implementation, for the pages' server functions.
pub struct ServerCredentials {
    pub state: AppState,
}

impl ServerCredentials {
    async fn member(&self, team: &str) -> Result<crate::accounts::CurrentUser, AppError> {
        let user = require(request_user(&self.state).await?)?;
        require_member(&user, team)?;
        Ok(user)
    }
}

#[async_trait::async_trait]
impl CredentialsBackend for ServerCredentials {
    async fn list(&self, team: String) -> Result<Vec<CredentialView>, AppError> {
        self.member(&team).await?;
        Ok(self.state.vault.list(&team).await?)
    }

    async fn new_page(
        &self,
        team: String,
        kind: Option<String>,
        variant: Option<String>,
    ) -> Result<NewCredentialPage, AppError> {
        self.member(&team).await?;
        let session = request_session().await?;
        let forms = form_specs(self.state.config.demo_spawners);
        let chosen = kind.and_then(|k| {
            forms
                .iter()
                .find(|f| f.kind == k && f.variant == variant)
                .cloned()
        });
        let state = take_flash(&session, |f| f == "new")
            .await
            .map(|f| f.state)
            .unwrap_or_default();
        Ok(NewCredentialPage {
            csrf_token: request_form_token(&session).await?,
            team,
            forms,
            chosen,
            state,
        })
    }

    async fn page(&self, team: String, id: i32) -> Result<CredentialPage, AppError> {
        self.member(&team).await?;
        let session = request_session().await?;
        let credential = self.state.vault.view(&team, id).await?;
        let kind_spec =
            form_spec(&credential.kind, credential.variant.as_deref()).ok_or_else(|| {
                AppError::NotFound(format!("the form of a {} credential", credential.kind))
            })?;
        let replace = FormSpec {
            fields: kind_spec.secret_fields().cloned().collect(),
            ..kind_spec
        };
        let prefix = format!("{id}:");
        let (form, state, notice) = match take_flash(&session, |f| f.starts_with(&prefix)).await {
            Some(f) => {
                let form = f.form.split_once(':').map(|(_, which)| which.to_string());
                (form, f.state, f.notice)
            }
            None => (None, FormState::default(), None),
        };
        Ok(CredentialPage {
            csrf_token: request_form_token(&session).await?,
            credential,
            replace,
            form,
            state,
            notice,
        })
    }
}

/// The member (or admin) of `team` behind a credential form's post.
async fn member_poster(
    user: Option<crate::accounts::CurrentUser>,
    session: &Session,
    headers: &HeaderMap,
    form: &BTreeMap<String, String>,
    team: &str,
    back: &str,
) -> Result<Actor, Response> {
    let token = form.get("csrf_token").map(String::as_str);
    poster(user, session, headers, token, back, |u| {
        require_member(u, team)
    })
    .await
    .map(|u| Actor::User(u.username))
}

/// The field errors of a refusal as the vocabulary forms share.
fn outcome(result: Result<String, CredentialError>) -> Result<String, AppError> {
    result.map_err(AppError::from)
}

/// What a failed form keeps: the non-secret fields of its spec that were typed, nothing
/// else (a post that names no known form keeps nothing). Says whether secrets were typed.
fn kept_values(
    form: &BTreeMap<String, String>,
    spec: Option<&FormSpec>,
) -> (BTreeMap<String, String>, bool) {
    let Some(spec) = spec else {
        return (BTreeMap::new(), false);
    };
    let typed = |name: &str| form.get(name).filter(|v| !v.trim().is_empty());
    let values = spec
        .fields
        .iter()
        .filter(|f| !f.secret)
        .filter_map(|f| form.get(&f.name).map(|v| (f.name.clone(), v.clone())))
        .collect();
    let cleared = spec.secret_fields().any(|f| typed(&f.name).is_some());
    (values, cleared)
}

async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    session: Session,
    MaybeUser(user): MaybeUser,
    Path(team): Path<String>,
    Form(mut form): Form<BTreeMap<String, String>>,
) -> Response {
    let kind = form.remove("kind").unwrap_or_default();
    let variant = form.remove("variant").filter(|v| !v.is_empty());
    let name = form.remove("name").unwrap_or_default();
    let mut back = format!(
        "/teams/{team}/credentials/new?kind={}",
        url::form_urlencoded::byte_serialize(kind.as_bytes()).collect::<String>()
    );
    if let Some(v) = &variant {
        back.push_str(&format!(
            "&variant={}",
            url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>()
        ));
    }
    let actor = match member_poster(user, &session, &headers, &form, &team, &back).await {
        Ok(a) => a,
        Err(answer) => return answer,
    };
    let result = state
        .vault
        .create(
            &actor,
            &team,
            NewCredential {
                kind: &kind,
                variant: variant.as_deref(),
                name: &name,
                input: &form,
            },
            state.config.demo_spawners,
        )
        .await;
    match result {
        Ok(id) => {
            tracing::info!(%team, credential = %name, %kind, "credential added");
            let flash = Flash {
                form: format!("{id}:new"),
                notice: Some(format!(
                    "Added the {} credential {name}.",
                    kind_label(&kind)
                )),
                ..Flash::default()
            };
            flash_and_redirect(&session, flash, &format!("/teams/{team}/credentials/{id}")).await
        }
        Err(e) => {
            let spec = form_spec(&kind, variant.as_deref());
            let (mut values, secrets_cleared) = kept_values(&form, spec.as_ref());
            values.insert("name".into(), name);
            let kept = FormState {
                values,
                errors: Vec::new(),
                secrets_cleared,
            };
            respond(&session, "new".into(), Err(AppError::from(e)), kept, &back).await
        }
    }
}

async fn rename(
    State(state): State<AppState>,
    headers: HeaderMap,
    session: Session,
    MaybeUser(user): MaybeUser,
    Path((team, id)): Path<(String, i32)>,
    Form(form): Form<BTreeMap<String, String>>,
) -> Response {
    let back = format!("/teams/{team}/credentials/{id}");
    let actor = match member_poster(user, &session, &headers, &form, &team, &back).await {
        Ok(a) => a,
        Err(answer) => return answer,
    };
    let name = form.get("name").cloned().unwrap_or_default();
    let result = state
        .vault
        .rename(&actor, &team, id, &name)
        .await
        .map(|()| format!("Renamed to {}.", name.trim()));
    let kept = FormState::keeping(BTreeMap::from([("name".to_string(), name)]));
    respond(
        &session,
        format!("{id}:rename"),
        outcome(result),
        kept,
        &back,
    )
    .await
}

async fn replace_secret(
    State(state): State<AppState>,
    headers: HeaderMap,
    session: Session,
    MaybeUser(user): MaybeUser,
    Path((team, id)): Path<(String, i32)>,
    Form(form): Form<BTreeMap<String, String>>,
) -> Response {
    let back = format!("/teams/{team}/credentials/{id}");
    let actor = match member_poster(user, &session, &headers, &form, &team, &back).await {
        Ok(a) => a,
        Err(answer) => return answer,
    };
    let result = state
        .vault
        .replace_secret(&actor, &team, id, &form)
        .await
        .map(|()| "The secret was replaced; the old one is deleted.".to_string());
    let kept = FormState {
        secrets_cleared: form
            .iter()
            .any(|(k, v)| k != "csrf_token" && !v.trim().is_empty()),
        ..FormState::default()
    };
    respond(
        &session,
        format!("{id}:secret"),
        outcome(result),
        kept,
        &back,
    )
    .await
}

async fn revoke(
    State(state): State<AppState>,
    headers: HeaderMap,
    session: Session,
    MaybeUser(user): MaybeUser,
    Path((team, id)): Path<(String, i32)>,
    Form(form): Form<BTreeMap<String, String>>,
) -> Response {
    let back = format!("/teams/{team}/credentials/{id}");
    let actor = match member_poster(user, &session, &headers, &form, &team, &back).await {
        Ok(a) => a,
        Err(answer) => return answer,
    };
    let result = if form.get("confirm").map(String::as_str) != Some("yes") {
        Err(CredentialError::Invalid(vec![app::error::FieldError {
            field: "confirm".into(),
            message: "Tick the box to confirm: revoking cannot be undone.".into(),
        }]))
    } else {
        state
            .vault
            .revoke(&actor, &team, id)
            .await
            .map(|paused| match paused.as_slice() {
                [] => "Revoked: no machine starts with it again.".to_string(),
                pools => format!(
                    "Revoked. Paused {} (no new machines start; running ones stay until deleted).",
                    pools.join(", ")
                ),
            })
    };
    respond(
        &session,
        format!("{id}:revoke"),
        outcome(result),
        FormState::default(),
        &back,
    )
    .await
}
