//! Routing patterns: Python regular expressions that Copr's frontend applies with `re.match`
//! (anchored at the start, not at the end) to `owner/project[:dirsuffix]/chroot/package`.
//!
//! copr-pools evaluates them with the `regex` crate, so a pattern is accepted only when it is
//! inside the part of Python's `re` syntax that both read the same way; anything else is
//! refused with the construct named, never evaluated differently. The part: literals,
//! `.`, `^`, `$`, groups `(…)`, `(?:…)` and `(?P<name>…)`, alternation, sets `[…]` (without
//! POSIX classes, nested sets or set operations), the repetitions `*`, `+`, `?`, `{m}`,
//! `{m,}`, `{m,n}` and their lazy forms, and the escapes `\d \D \w \W \s \S \b \B \A`,
//! `\n \t \r \f \v`, `\xHH` and escaped punctuation. `$` matches at the end in both (Python
//! also before a final newline, which a build never has).

use regex::{Regex, RegexSet, RegexSetBuilder};

/// Checks a pattern: inside the shared syntax, and it compiles. The error says which construct
/// is refused and what to write instead.
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    if pattern.trim().is_empty() {
        return Err("a pattern cannot be empty; use .* for every build".into());
    }
    if pattern.len() > 512 {
        return Err("keep a pattern under 512 characters".into());
    }
    if let Some(construct) = outside_shared_syntax(pattern) {
        return Err(format!(
            "{pattern:?} uses {construct}, which Python's re and copr-pools would not read the same way"
        ));
    }
    anchored(pattern).map(|_| ()).map_err(|e| {
        let first = e.to_string();
        let line = first
            .lines()
            .find(|l| l.starts_with("error:"))
            .unwrap_or("it is not a regular expression")
            .trim_start_matches("error: ")
            .to_string();
        format!("{pattern:?} is not a pattern Copr can use: {line}")
    })
}

fn anchored(pattern: &str) -> Result<Regex, regex::Error> {
    Regex::new(&format!("^(?:{pattern})"))
}

/// The first construct of `pattern` outside the syntax both engines share, described for a
/// person; `None` when there is none.
fn outside_shared_syntax(pattern: &str) -> Option<String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    let mut in_set = false;
    // Whether the previous item was a repetition (`*`, `+`, `?`, `{…}`): a `+` after one is
    // possessive in Python 3.11+, an error in Rust.
    let mut after_repeat = false;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '\\' {
            let Some(e) = next else {
                return Some("a trailing backslash".into());
            };
            let ok = match e {
                'd' | 'D' | 'w' | 'W' | 's' | 'S' => true,
                'b' | 'B' | 'A' => !in_set,
                'n' | 't' | 'r' | 'f' | 'v' => true,
                'x' => {
                    let hex = chars.get(i + 2..i + 4);
                    if hex.is_some_and(|h| h.iter().all(char::is_ascii_hexdigit)) {
                        i += 2;
                        true
                    } else {
                        return Some("\\x without two hex digits (write \\x41)".into());
                    }
                }
                '0'..='9' => {
                    return Some(format!("\\{e} (a back-reference or an octal escape)"));
                }
                'Z' | 'z' => return Some(format!("\\{e} (write $ for the end)")),
                '<' | '>' => {
                    return Some(format!(
                        "\\{e} (a word boundary in Rust, a literal in Python)"
                    ));
                }
                c if c.is_ascii_alphanumeric() => return Some(format!("the escape \\{c}")),
                c if c.is_ascii() => true,
                c => return Some(format!("a backslash before {c:?}")),
            };
            let _ = ok;
            after_repeat = false;
            i += 2;
            continue;
        }
        if in_set {
            match (c, next) {
                (']', _) => in_set = false,
                ('[', Some(':' | '=' | '.')) => {
                    return Some("a POSIX class like [:alpha:] (write the characters out)".into());
                }
                ('[', _) => return Some("[ inside a set (escape it: \\[)".into()),
                ('&', Some('&')) | ('-', Some('-')) | ('~', Some('~')) | ('|', Some('|')) => {
                    return Some(format!("{c}{c} inside a set (a set operation in Rust)"));
                }
                _ => {}
            }
            i += 1;
            continue;
        }
        match c {
            '[' => {
                in_set = true;
                // `[]…]` and `[^]…]`: a leading `]` is a literal in both.
                let mut j = i + 1;
                if chars.get(j) == Some(&'^') {
                    j += 1;
                }
                if chars.get(j) == Some(&']') {
                    j += 1;
                }
                after_repeat = false;
                i = j;
                continue;
            }
            '(' if next == Some('?') => {
                let rest: String = chars[i + 2..].iter().take(3).collect();
                if rest.starts_with(':') || rest.starts_with("P<") {
                    // A group without capture, or a named one: the same in both.
                } else if rest.starts_with("P=") {
                    return Some("(?P=name) (a back-reference)".into());
                } else if rest.starts_with('=') || rest.starts_with('!') {
                    return Some("look-ahead (?=…) or (?!…)".into());
                } else if rest.starts_with("<=") || rest.starts_with("<!") {
                    return Some("look-behind (?<=…) or (?<!…)".into());
                } else if rest.starts_with('>') {
                    return Some("an atomic group (?>…)".into());
                } else if rest.starts_with('#') {
                    return Some("a comment group (?#…)".into());
                } else if rest.starts_with('(') {
                    return Some("a conditional group (?(…)…)".into());
                } else if rest.starts_with('<') {
                    return Some("(?<name>…) (write (?P<name>…))".into());
                } else {
                    return Some(
                        "inline flags like (?i) (write the cases out, e.g. [Kk]ernel)".into(),
                    );
                }
                after_repeat = false;
                i += 2;
                continue;
            }
            '*' | '+' | '?' => {
                if after_repeat && c == '+' {
                    return Some("a possessive repetition (*+, ++, ?+ or {…}+)".into());
                }
                if after_repeat && c == '?' {
                    // Lazy: `*?`, `+?`, `??`, `{…}?`. What follows may not be `+`.
                    after_repeat = false;
                    i += 1;
                    continue;
                }
                after_repeat = true;
                i += 1;
                continue;
            }
            '{' => {
                let close = chars[i..].iter().position(|&c| c == '}').map(|p| i + p);
                let body: Option<String> = close.map(|e| chars[i + 1..e].iter().collect());
                let valid = body.as_deref().is_some_and(|b| {
                    let (min, max) = b.split_once(',').unwrap_or((b, b));
                    !min.is_empty()
                        && min.chars().all(|c| c.is_ascii_digit())
                        && max.chars().all(|c| c.is_ascii_digit())
                });
                if !valid {
                    return Some("a literal { or {,n} (escape it as \\{, or write {0,n})".into());
                }
                after_repeat = true;
                i = close.unwrap_or(i) + 1;
                continue;
            }
            _ => {}
        }
        after_repeat = false;
        i += 1;
    }
    None
}

/// Whether `text` matches `pattern` as Python's `re.match` does (anchored at the start).
pub fn matches(pattern: &str, text: &str) -> bool {
    anchored(pattern).is_ok_and(|r| r.is_match(text))
}

/// A set of patterns compiled once, answering which of them match a build.
pub struct PatternSet {
    set: RegexSet,
}

impl PatternSet {
    /// Compiles checked patterns together; a pattern that does not compile alone never
    /// matches. Fails only when the set is too large to compile.
    pub fn new(patterns: &[&str]) -> Result<PatternSet, String> {
        let anchored: Vec<String> = patterns
            .iter()
            .map(|p| {
                if anchored(p).is_ok() {
                    format!("^(?:{p})")
                } else {
                    // A word boundary that is not one: never matches.
                    "\\b\\B".to_string()
                }
            })
            .collect();
        let set = RegexSetBuilder::new(&anchored)
            .size_limit(256 << 20)
            .dfa_size_limit(64 << 20)
            .build()
            .map_err(|e| {
                format!(
                    "the {} rules together are too large to compile: {e}",
                    patterns.len()
                )
            })?;
        Ok(PatternSet { set })
    }

    /// The indices of the patterns that match `text`, in order.
    pub fn matching(&self, text: &str) -> Vec<usize> {
        self.set.matches(text).into_iter().collect()
    }
}

/// The part of a pattern before its first special character: what every build it matches
/// starts with.
fn literal_prefix(pattern: &str) -> String {
    pattern
        .chars()
        .take_while(|c| !".^$*+?()[]{}|\\".contains(*c))
        .collect()
}

/// The owner every build a pattern matches belongs to (`@team` or a user), when the pattern
/// names one literally: `@llvm/.*` → `@llvm`; `.*/clang` → none.
pub fn owner_of(pattern: &str) -> Option<String> {
    let pattern = pattern.strip_prefix('^').unwrap_or(pattern);
    let prefix = literal_prefix(pattern);
    prefix
        .split_once('/')
        .map(|(owner, _)| owner.to_string())
        .filter(|o| !o.is_empty())
}

/// Whether a pattern matches any build at all, e.g. `.*` or `.*/.*`: routed to one pool,
/// it would take every build away from every other pool.
pub fn matches_everything(pattern: &str) -> bool {
    [
        "zz-anyone/zz-project/fedora-rawhide-x86_64/zz-package",
        "@zz-group/zz-project/epel-9-aarch64/zz-other",
    ]
    .iter()
    .all(|probe| matches(pattern, probe))
}

/// Whether a pattern sends many unrelated builds to one pool (Copr #3373): it starts with
/// `.*`, or matches every package of its owner on every chroot.
pub fn is_broad(pattern: &str) -> bool {
    let bare = pattern.strip_prefix('^').unwrap_or(pattern);
    if bare.starts_with(".*") || matches_everything(pattern) {
        return true;
    }
    owner_of(pattern).is_some_and(|owner| {
        [
            format!("{owner}/zz-project/fedora-rawhide-x86_64/zz-package"),
            format!("{owner}/zz-other:pr:7/epel-9-aarch64/zz-other"),
        ]
        .iter()
        .all(|probe| matches(pattern, probe))
    })
}

/// Whether two patterns may match a build in common: one's literal beginning matches the
/// other (a heuristic: regular-expression overlap is undecidable in general, and this is for
/// a warning, not a refusal).
pub fn overlap(a: &str, b: &str) -> bool {
    Overlaps::new(&[a, b]).overlap(0, 1)
}

/// [`overlap`] between many patterns, each compiled once and each pair decided once: the
/// checks of a few hundred rules cost milliseconds, not a regex compilation per pair.
pub struct Overlaps {
    compiled: Vec<Option<Regex>>,
    prefixes: Vec<String>,
    known: std::collections::HashMap<(usize, usize), bool>,
}

impl Overlaps {
    pub fn new(patterns: &[&str]) -> Overlaps {
        Overlaps {
            compiled: patterns.iter().map(|p| anchored(p).ok()).collect(),
            prefixes: patterns.iter().map(|p| literal_prefix(p)).collect(),
            known: std::collections::HashMap::new(),
        }
    }

    /// Whether patterns `i` and `j` may match a build in common.
    pub fn overlap(&mut self, i: usize, j: usize) -> bool {
        let key = (i.min(j), i.max(j));
        if let Some(&known) = self.known.get(&key) {
            return known;
        }
        let (pa, pb) = (&self.prefixes[i], &self.prefixes[j]);
        let hits = |r: &Option<Regex>, text: &str| r.as_ref().is_some_and(|r| r.is_match(text));
        let answer = pa.starts_with(pb.as_str())
            || pb.starts_with(pa.as_str())
            || hits(&self.compiled[i], pb)
            || hits(&self.compiled[j], pa);
        self.known.insert(key, answer);
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_from_the_start_like_pythons_re_match() {
        assert!(matches("@team/.*", "@team/llvm/fedora-41-x86_64/clang"));
        assert!(!matches("team/.*", "@team/llvm/fedora-41-x86_64/clang"));
        assert!(
            matches("@asahi/kernel", "@asahi/kernel-edge/x/y"),
            "not anchored at the end"
        );
        assert!(check_pattern("^@python/python3\\.\\d+/.*/root$").is_ok());
        assert!(check_pattern("").is_err());
    }

    #[test]
    fn constructs_python_and_rust_read_differently_are_refused_by_name() {
        for (pattern, says) in [
            ("(?<=a)b", "look-behind"),
            ("a(?=b)", "look-ahead"),
            ("(a)\\1", "back-reference"),
            ("(?P<x>a)(?P=x)", "back-reference"),
            ("a*+", "possessive"),
            ("a{2}+", "possessive"),
            ("(?>ab)", "atomic"),
            ("kernel\\Z", "\\Z"),
            ("(?i)kernel", "inline flags"),
            ("[[:alpha:]]", "POSIX"),
            ("[a&&b]", "set operation"),
            ("\\<word", "word boundary"),
            ("a{,3}", "{,n}"),
            ("x{", "literal {"),
            ("\\p{L}", "escape \\p"),
        ] {
            let e = check_pattern(pattern).unwrap_err();
            assert!(e.contains(says), "{pattern}: {e}");
        }
        for ok in [
            "@asahi/kernel/.*(x86_64|aarch64)/kernel",
            "@fedora-llvm-team/llvm-snapshots[^/]*/.*x86_64/(llvm|clang)",
            "^@python/python3\\.\\d+/.*/root$",
            "@copr/measure-hypervisor.*/.*ppc64le/.*",
            "a{2,3}?b+?",
            "[]a]x",
            "(?P<o>@[^/]+)/.*",
            "\\x41\\.\\-",
        ] {
            assert!(check_pattern(ok).is_ok(), "{ok}: {:?}", check_pattern(ok));
        }
    }

    #[test]
    fn a_set_answers_like_each_pattern_alone() {
        let patterns = ["@a/.*", ".*/clang", "@a/p/.*/clang$", "never(x"];
        let set = PatternSet::new(&patterns).unwrap();
        assert_eq!(set.matching("@a/p/fedora-41-x86_64/clang"), vec![0, 1, 2]);
        assert_eq!(set.matching("@b/p/fedora-41-x86_64/clang-libs"), vec![1]);
        assert!(set.matching("nobody").is_empty());
    }

    /// Every case of `tests/data/routing-cases.json`, whose answers Python's `re` computed
    /// (`scripts/routing-cases.py`): each pattern is accepted, matches exactly when Python's
    /// `re.match` does, and a rule list gives a build the tags Copr's frontend would.
    #[test]
    fn answers_are_pythons() {
        let cases: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/data/routing-cases.json")).unwrap();
        let mut checked = 0;
        for case in cases["matches"].as_array().unwrap() {
            let (pattern, build) = (
                case["pattern"].as_str().unwrap(),
                case["build"].as_str().unwrap(),
            );
            assert!(
                check_pattern(pattern).is_ok(),
                "{pattern}: {:?}",
                check_pattern(pattern)
            );
            assert_eq!(
                matches(pattern, build),
                case["matches"].as_bool().unwrap(),
                "re.match({pattern:?}, {build:?})"
            );
            checked += 1;
        }
        for case in cases["routes"].as_array().unwrap() {
            let rules = case["rules"].as_array().unwrap();
            let patterns: Vec<&str> = rules
                .iter()
                .map(|r| r["pattern"].as_str().unwrap())
                .collect();
            let set = PatternSet::new(&patterns).unwrap();
            let tags: Vec<&str> = set
                .matching(case["build"].as_str().unwrap())
                .into_iter()
                .flat_map(|i| {
                    rules[i]["tags"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|t| t.as_str().unwrap())
                })
                .collect();
            let expected: Vec<&str> = case["tags"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_str().unwrap())
                .collect();
            assert_eq!(tags, expected, "{}", case["build"]);
            checked += 1;
        }
        assert!(checked > 600, "the table holds {checked} cases");
    }

    #[test]
    fn broad_patterns_are_told() {
        assert!(is_broad(".*/.*/.*/chromium"));
        assert!(is_broad("@llvm/.*"));
        assert!(!is_broad("@llvm/llvm-snapshots[^/]*/.*x86_64/(llvm|clang)"));
        assert!(!is_broad("@asahi/kernel/.*(x86_64|aarch64)/kernel"));
    }

    #[test]
    fn owners_and_catch_all_patterns_are_told_apart() {
        assert_eq!(owner_of("@llvm/.*").as_deref(), Some("@llvm"));
        assert_eq!(owner_of("^frostyx/copr-.*").as_deref(), Some("frostyx"));
        assert_eq!(owner_of(".*/clang"), None);
        assert_eq!(owner_of("@ll.*/x"), None);
        assert!(matches_everything(".*"));
        assert!(matches_everything(".*/.*/.*"));
        assert!(!matches_everything(".*/.*/.*/chromium"));
        assert!(!matches_everything("@llvm/.*"));
    }

    #[test]
    fn overlapping_scopes_are_noticed() {
        assert!(overlap("@team/.*", "@team/llvm/.*"));
        assert!(overlap(".*", "@team/.*"));
        assert!(!overlap("@team-a/.*", "@team-b/.*"));
        assert!(overlap(
            "@fedora-llvm-team/llvm-snapshots[^/]*/.*",
            "@fedora-llvm-team/.*"
        ));
    }
}
