//! The routing pages' server side: the [`RoutingBackend`] port (the admins' rules and
//! tokens pages, and "where would my builds go" for teams), and the form posts that add,
//! edit, move, enable, disable and delete rules and create and revoke API tokens. Rules and
//! tokens are for admins; a team's members preview their own team's builds.

use std::collections::BTreeMap;

use app::api::credentials::FormState;
use app::api::requests::FormValues;
use app::api::routing::*;
use app::error::AppError;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Form, Router};
use tower_sessions::Session;

use super::backend::{request_form_token, request_session, request_user};
use super::forms::{poster, respond, take_flash};
use crate::audit::Actor;
use crate::auth::current::{MaybeUser, require, require_admin, require_member};
use crate::routing::{self, RoutingError, RuleSpec};
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/routing", post(add_rule))
        .route("/admin/routing/{id}", post(edit_rule))
        .route("/admin/routing/{id}/move", post(move_rule))
        .route("/admin/routing/{id}/enabled", post(enable_rule))
        .route("/admin/routing/{id}/delete", post(delete_rule))
        .route("/admin/tokens", post(create_token))
        .route("/admin/tokens/{name}/revoke", post(revoke_token))
}

/// The port's implementation, for the pages' server functions.
pub struct ServerRouting {
    pub state: AppState,
}

fn db_error(e: sea_orm::DbErr) -> AppError {
    AppError::from(RoutingError::Db(e))
}

fn when(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

#[async_trait::async_trait]
impl RoutingBackend for ServerRouting {
    async fn page(&self, test: FormValues) -> Result<RoutingPage, AppError> {
        let user = require(request_user(&self.state).await?)?;
        require_admin(&user)?;
        let db = &self.state.db;
        let session = request_session().await?;
        let flash = take_flash(&session, |f| f == "add" || f.starts_with("rule-")).await;
        let (form, values, errors, notice) = match flash {
            Some(f) => (Some(f.form), f.state.values, f.state.errors, f.notice),
            None => (None, FormValues::new(), Vec::new(), None),
        };
        let (version, changed) = routing::version(db).await.map_err(db_error)?;
        let rules = routing::list(db)
            .await
            .map_err(db_error)?
            .into_iter()
            .map(|r| RuleView {
                id: r.id,
                position: r.position,
                pattern: r.pattern,
                tags: r.tags,
                origin: r.origin,
                enabled: r.enabled,
                note: r.note,
                updated_at: when(r.updated_at),
            })
            .collect();
        let asked = ["owner", "project", "chroot", "package"]
            .iter()
            .any(|k| test.get(*k).is_some_and(|v| !v.trim().is_empty()));
        let (mut tested, mut test_errors) = (None, Vec::new());
        if asked {
            let get = |k: &str| test.get(k).map_or("", |v| v.as_str());
            match routing::build_string(get("owner"), get("project"), get("chroot"), get("package"))
            {
                Ok(build) => {
                    let snapshot = self.state.routing.current(db).await.map_err(db_error)?;
                    let ask = PreviewAsk {
                        builds: build,
                        ..PreviewAsk::default()
                    };
                    tested = routing::preview::preview(db, &snapshot, &ask)
                        .await
                        .map_err(db_error)?
                        .pop();
                }
                Err(errors) => test_errors = errors,
            }
        }
        Ok(RoutingPage {
            version,
            changed_at: when(changed),
            rules,
            checks: routing::checks(db).await.map_err(db_error)?,
            csrf_token: request_form_token(&session).await?,
            notice,
            form,
            values,
            errors,
            tested,
            test_errors,
        })
    }

    async fn tokens(&self) -> Result<TokensPage, AppError> {
        let user = require(request_user(&self.state).await?)?;
        require_admin(&user)?;
        let session = request_session().await?;
        let flash = take_flash(&session, |f| f == "tokens").await;
        let (values, errors, notice) = match flash {
            Some(f) => (f.state.values, f.state.errors, f.notice),
            None => (FormValues::new(), Vec::new(), None),
        };
        let tokens = crate::tokens::list(&self.state.db)
            .await
            .map_err(db_error)?
            .into_iter()
            .map(|t| TokenView {
                name: t.name,
                hint: t.hint,
                created_by: t.created_by,
                created_at: when(t.created_at),
                last_used_at: t.last_used_at.map(when),
                revoked_at: t.revoked_at.map(when),
            })
            .collect();
        Ok(TokensPage {
            tokens,
            csrf_token: request_form_token(&session).await?,
            notice,
            values,
            errors,
        })
    }

    async fn preview(&self, ask: PreviewAsk) -> Result<Vec<Route>, AppError> {
        let user = require(request_user(&self.state).await?)?;
        require_member(&user, &ask.team)?;
        let db = &self.state.db;
        let snapshot = self.state.routing.current(db).await.map_err(db_error)?;
        routing::preview::preview(db, &snapshot, &ask)
            .await
            .map_err(db_error)
    }
}

/// The admin behind a rules form post, or the answer to give.
async fn admin(
    user: Option<crate::accounts::CurrentUser>,
    session: &Session,
    headers: &HeaderMap,
    form: &mut BTreeMap<String, String>,
    back: &str,
) -> Result<Actor, Response> {
    let token = form.remove("csrf_token");
    poster(
        user,
        session,
        headers,
        token.as_deref(),
        back,
        require_admin,
    )
    .await
    .map(|u| Actor::User(u.username))
}

/// A rule as the form typed it.
fn spec_of(form: &BTreeMap<String, String>) -> Result<RuleSpec, AppError> {
    let pattern = form.get("pattern").map_or("", |p| p.trim()).to_string();
    let mut errors = Vec::new();
    if let Err(m) = routing::check_pattern(&pattern) {
        errors.push(app::error::FieldError {
            field: "pattern".into(),
            message: m,
        });
    }
    let tags = match routing::parse_tags(form.get("tags").map_or("", |t| t.as_str())) {
        Ok(t) => t,
        Err(m) => {
            errors.push(app::error::FieldError {
                field: "tags".into(),
                message: m,
            });
            Vec::new()
        }
    };
    if !errors.is_empty() {
        return Err(AppError::Invalid(errors));
    }
    Ok(RuleSpec {
        pattern,
        tags,
        note: form.get("note").cloned(),
    })
}

fn accepted(form: &BTreeMap<String, String>) -> bool {
    form.get("accept_warnings").is_some_and(|v| !v.is_empty())
}

/// "Saved." with the warnings that were accepted.
fn saved(what: &str, warnings: &[String]) -> String {
    if warnings.is_empty() {
        format!("{what} Copr gets it at its next poll.")
    } else {
        format!(
            "{what} Copr gets it at its next poll. Accepted: {}",
            warnings.join(" ")
        )
    }
}

const BACK: &str = "/admin/routing";

async fn add_rule(
    State(state): State<AppState>,
    headers: HeaderMap,
    session: Session,
    MaybeUser(user): MaybeUser,
    Form(mut form): Form<BTreeMap<String, String>>,
) -> Response {
    let actor = match admin(user, &session, &headers, &mut form, BACK).await {
        Ok(a) => a,
        Err(answer) => return answer,
    };
    let position = form
        .get("position")
        .and_then(|p| p.trim().parse::<i32>().ok());
    let result = match spec_of(&form) {
        Ok(spec) => routing::add(&state.db, &actor, spec, position, accepted(&form))
            .await
            .map(|(_, w)| {
                state.routing.invalidate();
                saved("Rule added.", &w)
            })
            .map_err(AppError::from),
        Err(e) => Err(e),
    };
    respond(
        &session,
        "add".into(),
        result,
        FormState::keeping(form),
        BACK,
    )
    .await
}

/// What one rule's form asks for.
enum RuleChange {
    Edit,
    Move,
    Enable,
    Delete,
}

/// Applies a rule form's change; the answer's notice, or why not.
async fn change_rule(
    state: &AppState,
    actor: &Actor,
    id: i32,
    change: RuleChange,
    form: &BTreeMap<String, String>,
) -> Result<String, AppError> {
    let result = match change {
        RuleChange::Edit => {
            let spec = spec_of(form)?;
            routing::edit(&state.db, actor, id, spec, accepted(form))
                .await
                .map(|w| saved(&format!("Rule {id} saved."), &w))
        }
        RuleChange::Move => {
            let Some(position) = form
                .get("position")
                .and_then(|p| p.trim().parse::<i32>().ok())
            else {
                return Err(AppError::invalid(
                    "position",
                    "Enter the place to move it to, 1 for first.",
                ));
            };
            routing::move_to(&state.db, actor, id, position)
                .await
                .map(|()| format!("Rule moved to place {}.", position.max(1)))
        }
        RuleChange::Enable => {
            let enabled = form
                .get("enabled")
                .is_some_and(|v| v == "on" || v == "true");
            routing::set_enabled(&state.db, actor, id, enabled, accepted(form))
                .await
                .map(|w| {
                    saved(
                        if enabled {
                            "Rule enabled."
                        } else {
                            "Rule disabled."
                        },
                        &w,
                    )
                })
        }
        RuleChange::Delete => routing::delete(&state.db, actor, id)
            .await
            .map(|()| "Rule deleted. Copr gets it at its next poll.".to_string()),
    };
    if result.is_ok() {
        state.routing.invalidate();
    }
    result.map_err(AppError::from)
}

/// The posts on one rule: `/admin/routing/{id}[/move|/enabled|/delete]`.
async fn rule_post(
    state: AppState,
    headers: HeaderMap,
    session: Session,
    user: Option<crate::accounts::CurrentUser>,
    id: i32,
    mut form: BTreeMap<String, String>,
    change: RuleChange,
) -> Response {
    let actor = match admin(user, &session, &headers, &mut form, BACK).await {
        Ok(a) => a,
        Err(answer) => return answer,
    };
    let result = change_rule(&state, &actor, id, change, &form).await;
    respond(
        &session,
        format!("rule-{id}"),
        result,
        FormState::keeping(form),
        BACK,
    )
    .await
}

async fn edit_rule(
    State(state): State<AppState>,
    headers: HeaderMap,
    session: Session,
    MaybeUser(user): MaybeUser,
    Path(id): Path<i32>,
    Form(form): Form<BTreeMap<String, String>>,
) -> Response {
    rule_post(state, headers, session, user, id, form, RuleChange::Edit).await
}

async fn move_rule(
    State(state): State<AppState>,
    headers: HeaderMap,
    session: Session,
    MaybeUser(user): MaybeUser,
    Path(id): Path<i32>,
    Form(form): Form<BTreeMap<String, String>>,
) -> Response {
    rule_post(state, headers, session, user, id, form, RuleChange::Move).await
}

async fn enable_rule(
    State(state): State<AppState>,
    headers: HeaderMap,
    session: Session,
    MaybeUser(user): MaybeUser,
    Path(id): Path<i32>,
    Form(form): Form<BTreeMap<String, String>>,
) -> Response {
    rule_post(state, headers, session, user, id, form, RuleChange::Enable).await
}

async fn delete_rule(
    State(state): State<AppState>,
    headers: HeaderMap,
    session: Session,
    MaybeUser(user): MaybeUser,
    Path(id): Path<i32>,
    Form(form): Form<BTreeMap<String, String>>,
) -> Response {
    rule_post(state, headers, session, user, id, form, RuleChange::Delete).await
}

/// Creates a token and shows it once, in this response: it is never stored, not even in the
/// session, so it cannot go through a redirect.
async fn create_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    session: Session,
    MaybeUser(user): MaybeUser,
    Form(mut form): Form<BTreeMap<String, String>>,
) -> Response {
    let back = "/admin/tokens";
    let actor = match admin(user, &session, &headers, &mut form, back).await {
        Ok(a) => a,
        Err(answer) => return answer,
    };
    let name = form.get("name").map_or("", |n| n.trim()).to_string();
    match crate::tokens::create(&state.db, &actor, &name).await {
        Ok(token) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            token_page(&name, &token),
        )
            .into_response(),
        Err(crate::tokens::TokenError::Invalid(m)) => {
            respond(
                &session,
                "tokens".into(),
                Err(AppError::invalid("name", m)),
                FormState::keeping(form),
                back,
            )
            .await
        }
        Err(e) => {
            tracing::error!(error = %e, "creating an API token failed");
            respond(
                &session,
                "tokens".into(),
                Err(AppError::Internal),
                FormState::default(),
                back,
            )
            .await
        }
    }
}

/// The page that shows a new token. `name` is checked (letters, digits, `-_.`) and the token
/// is URL-safe base64, so neither needs escaping.
fn token_page(name: &str, token: &str) -> String {
    format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>API token {name} · copr-pools</title><link rel="stylesheet" href="/pkg/copr-pools.css"></head>
<body><main class="container" id="main">
<h1>API token {name}</h1>
<p class="alert alert-info" role="status">Copy it now: copr-pools keeps only its hash, so it is never shown again.</p>
<p><label for="token">Token</label><br><input id="token" class="token-once" readonly value="{token}" data-testid="new-token" size="50"></p>
<p>Copr's frontend sends it as <code>Authorization: Bearer …</code> to <code>/api/v1/routing</code> or <code>/api/v1/routing/copr.conf</code>.</p>
<p><a class="button" href="/admin/tokens">Back to API tokens</a></p>
</main></body></html>
"#
    )
}

async fn revoke_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    session: Session,
    MaybeUser(user): MaybeUser,
    Path(name): Path<String>,
    Form(mut form): Form<BTreeMap<String, String>>,
) -> Response {
    let back = "/admin/tokens";
    let actor = match admin(user, &session, &headers, &mut form, back).await {
        Ok(a) => a,
        Err(answer) => return answer,
    };
    let result = match crate::tokens::revoke(&state.db, &actor, &name).await {
        Ok(()) => {
            state.tokens.forget();
            Ok(format!("Revoked {name}: it no longer reads the rules."))
        }
        Err(crate::tokens::TokenError::NotFound(n)) => {
            Err(AppError::NotFound(format!("live token {n}")))
        }
        Err(e) => {
            tracing::error!(error = %e, "revoking an API token failed");
            Err(AppError::Internal)
        }
    };
    respond(
        &session,
        "tokens".into(),
        result,
        FormState::default(),
        back,
    )
    .await
}
