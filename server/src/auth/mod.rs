//! Signing in: Fedora Accounts over OpenID Connect (and, on loopback only, a development
//! sign-in), sessions in the application's database, the current user, and CSRF protection.
//!
//! Authorization lives here too: [`current`] yields the signed-in user or the reason there is
//! none, and every handler and server function that needs a user goes through it.

pub mod csrf;
pub mod current;
pub mod handlers;
pub mod oidc;
pub mod session;

/// A relative URL that is safe to send the user back to after signing in: a path on this
/// site, never another host (`//evil`, `/\evil`, `https:`), never the sign-in pages again.
pub fn safe_next(next: Option<&str>) -> String {
    let Some(next) = next.map(str::trim) else {
        return "/".into();
    };
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && !next.starts_with("/\\")
        && !next.starts_with("/auth/")
        && next.len() <= 2000
        && !next.chars().any(|c| c.is_control() || c == '\\');
    if ok { next.to_string() } else { "/".into() }
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn only_local_paths_are_followed() {
        assert_eq!(safe_next(Some("/teams/llvm?x=1")), "/teams/llvm?x=1");
        for bad in [
            "//evil.example",
            "https://evil.example/",
            "/\\evil.example",
            "javascript:alert(1)",
            "/auth/login",
            "teams",
            "/a\nb",
        ] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad:?}");
        }
        assert_eq!(safe_next(None), "/");
    }
}
