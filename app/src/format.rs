//! Small presentation helpers shared by several pages.

/// "3 s", "4 min", "2 h 5 min", "3 d": an age or duration for people, not for parsing.
pub fn human_duration(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        return "–".to_string();
    }
    let s = seconds.round() as u64;
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min", s / 60),
        3600..=86_399 => {
            let m = (s % 3600) / 60;
            if m == 0 {
                format!("{} h", s / 3600)
            } else {
                format!("{} h {m} min", s / 3600)
            }
        }
        _ => format!("{} d", s / 86_400),
    }
}

/// `seconds` cut to what [`human_duration`] shows, so that two ages that read the same are the
/// same number (the live pages send an age again only when what it shows changes).
pub fn shown_duration(seconds: f64) -> f64 {
    if !seconds.is_finite() || seconds < 0.0 {
        return seconds;
    }
    let s = seconds.round();
    if s < 60.0 {
        s
    } else if s < 86_400.0 {
        (s / 60.0).floor() * 60.0
    } else {
        (s / 86_400.0).floor() * 86_400.0
    }
}

/// A ratio in 0..=1 as a whole percentage, or a dash when there is nothing to measure yet.
pub fn percent(ratio: Option<f64>) -> String {
    match ratio {
        Some(r) if r.is_finite() => format!("{:.0} %", (r * 100.0).clamp(0.0, 100.0)),
        _ => "–".to_string(),
    }
}

/// Percent-encodes a query-string value (RFC 3986 unreserved characters stay as they are).
pub fn urlencode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The sign-in address that brings the user back to `path`. It is served by the server, not
/// the client-side router: links to it carry `rel="external"` so a hydrated page navigates.
pub fn login_url(path: &str) -> String {
    format!("/auth/login?next={}", urlencode(path))
}

/// Text for a `<textarea>`'s content. The server renderer writes a textarea's children
/// unescaped (it treats them like a script's), so typed text such as `</textarea><script>`
/// would become markup: on the server it is escaped here (the browser decodes the entities);
/// in the browser, text nodes are safe as they are.
pub fn textarea_text(text: &str) -> String {
    if cfg!(feature = "ssr") {
        text.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human_duration(0.4), "0 s");
        assert_eq!(human_duration(59.0), "59 s");
        assert_eq!(human_duration(61.0), "1 min");
        assert_eq!(human_duration(3600.0), "1 h");
        assert_eq!(human_duration(3900.0), "1 h 5 min");
        assert_eq!(human_duration(3.0 * 86_400.0), "3 d");
        assert_eq!(human_duration(-1.0), "–");
    }

    #[test]
    fn a_shown_duration_reads_the_same_and_moves_only_when_the_text_does() {
        for s in (0..200_000)
            .step_by(7)
            .map(f64::from)
            .chain([59.4, 59.6, 3599.7, 86_399.9])
        {
            assert_eq!(human_duration(shown_duration(s)), human_duration(s), "{s}");
        }
        assert_eq!(
            shown_duration(125.0),
            shown_duration(170.0),
            "both read 2 min"
        );
        assert_ne!(shown_duration(119.0), shown_duration(121.0));
        assert_eq!(shown_duration(4.0 * 86_400.0 + 7.0), 4.0 * 86_400.0);
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(
            urlencode("/teams/a b?x=1&y"),
            "%2Fteams%2Fa%20b%3Fx%3D1%26y"
        );
        assert_eq!(login_url("/admin"), "/auth/login?next=%2Fadmin");
    }

    #[test]
    fn percentages_clamp_and_dash() {
        assert_eq!(percent(Some(0.876)), "88 %");
        assert_eq!(percent(Some(1.2)), "100 %");
        assert_eq!(percent(None), "–");
    }
}
