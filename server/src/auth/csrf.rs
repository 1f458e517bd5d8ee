//! Cross-site request forgery protection, in two layers:
//!
//! 1. Every state-changing request (POST, PUT, PATCH, DELETE) that a browser could send with
//!    the session cookie must come from this site: `Sec-Fetch-Site: same-origin` (or `none`,
//!    typed by the user), or an `Origin` whose host is ours. Leptos server functions do no
//!    such check themselves, so this middleware does it for them too.
//! 2. Forms carry a token in a hidden field, checked by their handler: the session's token
//!    for a signed-in user; for an anonymous visitor (the development sign-in form) a
//!    double-submit cookie, `__Host-copr_pools_form`, so that an anonymous page view stores
//!    nothing. The `__Host-` prefix keeps other hosts (sibling subdomains) from planting the
//!    cookie, and a cross-site page can neither read it nor, with the check above, post.
//!
//! Nothing changes state through GET.

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;
use tower_sessions::Session;

use super::session::{COOKIE, CSRF_TOKEN, random_token};

/// The anonymous visitor's form token cookie.
pub const FORM_COOKIE: &str = "__Host-copr_pools_form";

/// Why a request was refused, in words for the person who sent it.
pub fn cross_site_reason(method: &Method, headers: &HeaderMap) -> Option<String> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return None;
    }
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return match site {
            "same-origin" | "none" => None,
            other => Some(format!(
                "it came from another site (Sec-Fetch-Site: {other})"
            )),
        };
    }
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let origin_host = url::Url::parse(origin).ok().and_then(|u| {
            u.host_str().map(|h| match u.port() {
                Some(p) => format!("{h}:{p}"),
                None => h.to_string(),
            })
        });
        return match (origin_host, host) {
            (Some(o), Some(h)) if o.eq_ignore_ascii_case(h) => None,
            _ => Some(format!("it came from another site (Origin: {origin})")),
        };
    }
    // Neither header: not a current browser. Without the session cookie there is nothing
    // ambient to abuse; with it, refuse.
    let has_session = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|c| {
            c.split(';')
                .any(|kv| kv.trim().starts_with(&format!("{COOKIE}=")))
        });
    has_session.then(|| "it carries the session cookie but no Origin header".to_string())
}

/// The middleware: refuses cross-site state changes with 403 and a reason.
pub async fn refuse_cross_site(req: Request<Body>, next: Next) -> Response {
    if let Some(reason) = cross_site_reason(req.method(), req.headers()) {
        tracing::warn!(method = %req.method(), path = %req.uri().path(), %reason, "cross-site request refused");
        return (
            StatusCode::FORBIDDEN,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("Refused: {reason}. Reload the page on this site and try again.\n"),
        )
            .into_response();
    }
    next.run(req).await
}

/// The token a page's forms carry, and the `Set-Cookie` value to send when the visitor's
/// form cookie must be (re)set. Reads the session but never writes it.
pub async fn form_token(session: &Session, headers: &HeaderMap) -> (String, Option<String>) {
    if let Ok(Some(token)) = session.get::<String>(CSRF_TOKEN).await {
        return (token, None);
    }
    if let Some(token) = cookie_token(headers) {
        return (token, None);
    }
    let token = random_token();
    let cookie = format!("{FORM_COOKIE}={token}; Path=/; Secure; HttpOnly; SameSite=Strict");
    (token, Some(cookie))
}

/// The form cookie's token, when it looks like one of ours.
fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|c| c.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == FORM_COOKIE)
        .map(|(_, v)| v.to_string())
        .filter(|v| {
            v.len() >= 32
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Checks a form's token in constant time: against the session's token when the session has
/// one, otherwise against the visitor's form cookie.
pub async fn token_matches(session: &Session, headers: &HeaderMap, submitted: &str) -> bool {
    let expected = match session.get::<String>(CSRF_TOKEN).await {
        Ok(Some(token)) => Some(token),
        Ok(None) => cookie_token(headers),
        Err(_) => None,
    };
    match expected {
        Some(expected) => {
            !submitted.is_empty() && expected.as_bytes().ct_eq(submitted.as_bytes()).into()
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn same_origin_passes_and_cross_site_is_refused() {
        let post = Method::POST;
        assert!(cross_site_reason(&post, &headers(&[("sec-fetch-site", "same-origin")])).is_none());
        assert!(cross_site_reason(&post, &headers(&[("sec-fetch-site", "cross-site")])).is_some());
        assert!(cross_site_reason(&post, &headers(&[("sec-fetch-site", "same-site")])).is_some());
        assert!(
            cross_site_reason(
                &post,
                &headers(&[
                    ("host", "pools.example.org"),
                    ("origin", "https://pools.example.org")
                ])
            )
            .is_none()
        );
        assert!(
            cross_site_reason(
                &post,
                &headers(&[
                    ("host", "127.0.0.1:3000"),
                    ("origin", "http://127.0.0.1:3000")
                ])
            )
            .is_none()
        );
        assert!(
            cross_site_reason(
                &post,
                &headers(&[
                    ("host", "pools.example.org"),
                    ("origin", "https://evil.example")
                ])
            )
            .is_some()
        );
        assert!(
            cross_site_reason(
                &post,
                &headers(&[("host", "pools.example.org"), ("origin", "null")])
            )
            .is_some()
        );
        assert!(
            cross_site_reason(&post, &headers(&[("cookie", "copr_pools_session=abc")])).is_some()
        );
        assert!(
            cross_site_reason(&post, &headers(&[])).is_none(),
            "no cookie, nothing to forge"
        );
        assert!(
            cross_site_reason(&Method::GET, &headers(&[("sec-fetch-site", "cross-site")]))
                .is_none()
        );
    }
}
