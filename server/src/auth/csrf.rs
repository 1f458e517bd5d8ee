//! Cross-site request forgery protection, in two layers:
//!
//! 1. Every state-changing request (POST, PUT, PATCH, DELETE) that a browser could send with
//!    the session cookie must come from this site: `Sec-Fetch-Site: same-origin` (or `none`,
//!    typed by the user), or an `Origin` whose host is ours. Leptos server functions do no
//!    such check themselves, so this middleware does it for them too.
//! 2. Forms carry the session's CSRF token in a hidden field, checked by their handler.
//!
//! Nothing changes state through GET.

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;
use tower_sessions::Session;

use super::session::{COOKIE, CSRF_TOKEN};

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

/// Checks a form's CSRF token against the session's, in constant time.
pub async fn token_matches(session: &Session, submitted: &str) -> bool {
    match session.get::<String>(CSRF_TOKEN).await {
        Ok(Some(expected)) => {
            !submitted.is_empty() && expected.as_bytes().ct_eq(submitted.as_bytes()).into()
        }
        _ => false,
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
