//! The authorization-code flow against Fedora's Ipsilon (or any OpenID provider) with
//! `openidconnect`: discovery, `client_secret_post`, state + nonce + PKCE per attempt (single
//! use, kept in the session), ID-token verification, then UserInfo for the username and groups
//! (Ipsilon puts them only there). `sub` is the stable key.
//!
//! Every failure becomes a [`LoginError`] whose message tells the user what happened; nothing
//! here panics on what a provider or a browser sends.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreGenderClaim, CoreProviderMetadata,
};
use openidconnect::{
    AdditionalClaims, AuthType, AuthorizationCode, ClientId, ClientSecret, CsrfToken,
    EndpointMaybeSet, EndpointNotSet, EndpointSet, IssuerUrl, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RequestTokenError, Scope, TokenResponse,
    UserInfoClaims,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use subtle::ConstantTimeEq;
use tokio::sync::Mutex;

use crate::accounts::Identity;
use crate::config::OidcConfig;

/// How long discovered metadata (endpoints and signing keys) is trusted before it is fetched
/// again.
const METADATA_TTL: Duration = Duration::from_secs(15 * 60);
/// How long a started sign-in may take.
pub const ATTEMPT_TTL_MS: i64 = 10 * 60 * 1000;

type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// Claims beyond the standard ones (`groups`, or whatever the config names).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExtraClaims {
    #[serde(flatten)]
    claims: HashMap<String, Value>,
}

impl AdditionalClaims for ExtraClaims {}

/// One sign-in attempt, kept in the session until the callback uses it once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Attempt {
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
    pub next: String,
    pub started_at_ms: i64,
}

/// Why signing in failed. The code travels in the URL of the failure page.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    #[error("the sign-in was cancelled or refused at Fedora Accounts{}", detail(.0))]
    Denied(String),
    #[error("this sign-in attempt is unknown, expired or was already used")]
    Attempt,
    #[error("the answer from Fedora Accounts did not match this sign-in attempt (state)")]
    State,
    #[error("the answer came from an unexpected provider ({0})")]
    Issuer(String),
    #[error("Fedora Accounts refused the sign-in code{}", detail(.0))]
    Provider(String),
    #[error("Fedora Accounts could not be reached{}", detail(.0))]
    Unreachable(String),
    #[error("the identity Fedora Accounts sent could not be verified{}", detail(.0))]
    Token(String),
    #[error("your account details could not be read from Fedora Accounts{}", detail(.0))]
    UserInfo(String),
    #[error("the server's sign-in settings are wrong{}", detail(.0))]
    Config(String),
}

fn detail(d: &str) -> String {
    if d.is_empty() {
        String::new()
    } else {
        format!(": {d}")
    }
}

impl LoginError {
    /// A stable word for the failure page's URL.
    pub fn code(&self) -> &'static str {
        match self {
            LoginError::Denied(_) => "denied",
            LoginError::Attempt => "attempt",
            LoginError::State => "state",
            LoginError::Issuer(_) => "issuer",
            LoginError::Provider(_) => "provider",
            LoginError::Unreachable(_) => "unreachable",
            LoginError::Token(_) => "token",
            LoginError::UserInfo(_) => "userinfo",
            LoginError::Config(_) => "config",
        }
    }
}

/// A provider's text, cut and cleaned for a page.
fn clean(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(200).collect()
}

/// The configured provider, with its metadata cached.
pub struct Provider {
    config: OidcConfig,
    http: reqwest::Client,
    metadata: Mutex<Option<(Instant, CoreProviderMetadata)>>,
}

impl Provider {
    pub fn new(config: OidcConfig) -> Provider {
        let http = reqwest::Client::builder()
            // Following redirects would let a token endpoint bounce secrets elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(15))
            .build()
            .expect("an HTTP client with fixed settings");
        Provider {
            config,
            http,
            metadata: Mutex::new(None),
        }
    }

    pub fn config(&self) -> &OidcConfig {
        &self.config
    }

    async fn client(&self) -> Result<Client, LoginError> {
        let mut cached = self.metadata.lock().await;
        let fresh = cached
            .as_ref()
            .is_some_and(|(at, _)| at.elapsed() < METADATA_TTL);
        if !fresh {
            let issuer = IssuerUrl::new(self.config.issuer.clone())
                .map_err(|e| LoginError::Config(e.to_string()))?;
            let metadata = CoreProviderMetadata::discover_async(issuer, &self.http).await.map_err(|e| {
                tracing::warn!(error = %e, issuer = %self.config.issuer, "OIDC discovery failed");
                match e {
                    openidconnect::DiscoveryError::Request(r) => LoginError::Unreachable(clean(&r.to_string())),
                    other => LoginError::Config(clean(&other.to_string())),
                }
            })?;
            *cached = Some((Instant::now(), metadata));
        }
        let metadata = cached.as_ref().expect("filled above").1.clone();
        let redirect = RedirectUrl::new(self.config.redirect_url.to_string())
            .map_err(|e| LoginError::Config(e.to_string()))?;
        Ok(CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(self.config.client_id.clone()),
            Some(ClientSecret::new(
                self.config.client_secret.expose().to_string(),
            )),
        )
        .set_redirect_uri(redirect)
        .set_auth_type(AuthType::RequestBody))
    }

    /// Starts a sign-in: the provider URL to redirect to, and the attempt to keep.
    pub async fn start(&self, next: String) -> Result<(String, Attempt), LoginError> {
        let client = self.client().await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client.authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        );
        for scope in self.config.scopes.iter().filter(|s| s.as_str() != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state, nonce) = request.set_pkce_challenge(challenge).url();
        let attempt = Attempt {
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
            next,
            started_at_ms: chrono::Utc::now().timestamp_millis(),
        };
        Ok((url.to_string(), attempt))
    }

    /// Finishes a sign-in from the callback's parameters and the attempt the session held.
    pub async fn finish(
        &self,
        params: &CallbackParams,
        attempt: Option<Attempt>,
    ) -> Result<Identity, LoginError> {
        if let Some(error) = &params.error {
            let description = params
                .error_description
                .as_deref()
                .map(clean)
                .unwrap_or_default();
            return Err(LoginError::Denied(if description.is_empty() {
                clean(error)
            } else {
                description
            }));
        }
        let attempt = attempt.ok_or(LoginError::Attempt)?;
        if chrono::Utc::now().timestamp_millis() - attempt.started_at_ms > ATTEMPT_TTL_MS {
            return Err(LoginError::Attempt);
        }
        let state = params.state.as_deref().unwrap_or_default();
        if !bool::from(state.as_bytes().ct_eq(attempt.state.as_bytes())) {
            return Err(LoginError::State);
        }
        if let Some(iss) = &params.iss
            && iss != &self.config.issuer
        {
            return Err(LoginError::Issuer(clean(iss)));
        }
        let code = params
            .code
            .clone()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| LoginError::Provider("no code was sent".into()))?;
        let client = self.client().await?;
        let token = client
            .exchange_code(AuthorizationCode::new(code))
            .map_err(|e| LoginError::Config(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(attempt.pkce_verifier.clone()))
            .request_async(&self.http)
            .await
            .map_err(|e| match e {
                RequestTokenError::ServerResponse(r) => {
                    let d = r.error_description().map(|d| clean(d)).unwrap_or_default();
                    LoginError::Provider(if d.is_empty() {
                        r.error().to_string()
                    } else {
                        d
                    })
                }
                RequestTokenError::Request(r) => LoginError::Unreachable(clean(&r.to_string())),
                RequestTokenError::Parse(_, body) => {
                    // Ipsilon answers some errors with HTTP 200 and {"error": …}.
                    let v: Value = serde_json::from_slice(&body).unwrap_or_default();
                    match v.get("error").and_then(Value::as_str) {
                        Some(err) => LoginError::Provider(clean(
                            v.get("error_description")
                                .and_then(Value::as_str)
                                .unwrap_or(err),
                        )),
                        None => LoginError::Provider("its answer could not be read".into()),
                    }
                }
                RequestTokenError::Other(o) => LoginError::Provider(clean(&o)),
            })?;
        let id_token = token
            .id_token()
            .ok_or_else(|| LoginError::Token("no ID token was sent".into()))?;
        let claims = id_token
            .claims(
                &client.id_token_verifier(),
                &Nonce::new(attempt.nonce.clone()),
            )
            .map_err(|e| LoginError::Token(clean(&e.to_string())))?;
        let subject = claims.subject().clone();
        let info: UserInfoClaims<ExtraClaims, CoreGenderClaim> = client
            .user_info(token.access_token().clone(), Some(subject.clone()))
            .map_err(|e| LoginError::Config(e.to_string()))?
            .request_async(&self.http)
            .await
            .map_err(|e| LoginError::UserInfo(clean(&e.to_string())))?;
        identity_from(&self.config, subject.as_str(), &info)
    }
}

/// The username and groups from UserInfo, by the configured claim names.
fn identity_from(
    config: &OidcConfig,
    sub: &str,
    info: &UserInfoClaims<ExtraClaims, CoreGenderClaim>,
) -> Result<Identity, LoginError> {
    let extra = &info.additional_claims().claims;
    let standard = |name: &str| -> Option<String> {
        match name {
            "nickname" => info
                .nickname()
                .and_then(|n| n.get(None))
                .map(|n| n.to_string()),
            "preferred_username" => info.preferred_username().map(|n| n.to_string()),
            "email" => info.email().map(|e| e.to_string()),
            "name" => info.name().and_then(|n| n.get(None)).map(|n| n.to_string()),
            "sub" => Some(sub.to_string()),
            _ => None,
        }
    };
    let username = standard(&config.username_claim)
        .or_else(|| {
            extra
                .get(&config.username_claim)
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .filter(|u| !u.is_empty())
        .ok_or_else(|| {
            LoginError::UserInfo(format!("the {} claim is missing", config.username_claim))
        })?;
    let groups = match extra.get(&config.groups_claim) {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        Some(_) => {
            return Err(LoginError::UserInfo(format!(
                "the {} claim is not a list",
                config.groups_claim
            )));
        }
        None => Vec::new(),
    };
    Ok(Identity {
        sub: sub.to_string(),
        username,
        display_name: info.name().and_then(|n| n.get(None)).map(|n| n.to_string()),
        email: info.email().map(|e| e.to_string()),
        groups,
    })
}

/// What the provider sends back to `/auth/callback`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CallbackParams {
    pub code: Option<String>,
    pub state: Option<String>,
    /// RFC 9207's issuer identification.
    pub iss: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}
