//! The server's configuration: one typed struct, read from an optional TOML file and then from
//! `COPR_POOLS_*` environment variables (which win), with every secret also readable from a file
//! named by `…_FILE`. Defaults run everything on one machine.
//!
//! A bad value stops startup with an error that names the key and says what is wrong. Secrets
//! never appear in `Debug` output or in error messages.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The prefix of every environment variable the server reads.
pub const ENV_PREFIX: &str = "COPR_POOLS_";
/// The variable that names the config file (same as `--config`).
pub const CONFIG_PATH_ENV: &str = "COPR_POOLS_CONFIG";

/// A value that must not be printed: `Debug` and `Display` show `[redacted]`.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Which FAS groups count as teams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TeamGroups {
    /// Every group of the user is a team.
    All,
    /// Only groups named here, or starting with one of the prefixes ending in `*`.
    Only(Vec<String>),
}

impl TeamGroups {
    pub fn is_team(&self, group: &str) -> bool {
        match self {
            TeamGroups::All => true,
            TeamGroups::Only(patterns) => patterns.iter().any(|p| match p.strip_suffix('*') {
                Some(prefix) => group.starts_with(prefix),
                None => group == p,
            }),
        }
    }
}

/// The file and environment form of the configuration, before validation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawConfig {
    listen: String,
    web_threads: usize,
    database_url: String,
    database_max_connections: u32,
    site_root: PathBuf,
    log: String,
    log_format: LogFormat,
    log_dir: PathBuf,
    shutdown_grace_secs: u64,
    xmlrpc_listen: String,
    xmlrpc_max_body_bytes: usize,
    engine: bool,
    engine_period_secs: u64,
    livecheck_concurrency: usize,
    hook_env_passthrough: Vec<String>,
    oidc_issuer: String,
    oidc_client_id: Option<String>,
    oidc_client_secret: Option<Secret>,
    oidc_client_secret_file: Option<PathBuf>,
    oidc_redirect_url: Option<String>,
    oidc_scopes: Vec<String>,
    oidc_username_claim: String,
    oidc_groups_claim: String,
    admin_groups: Vec<String>,
    team_groups: Vec<String>,
    dev_login: bool,
    session_inactivity_secs: u64,
    session_max_age_secs: u64,
    data_dir: PathBuf,
    team_max_machines: u32,
    community_priority: i64,
    routing_refresh_ms: u64,
    spawners_dir: PathBuf,
    spawner_templates: BTreeMap<String, TemplateOverride>,
    #[serde(deserialize_with = "one_or_many")]
    secret_keys: Vec<Secret>,
    secret_keys_file: Option<PathBuf>,
    demo_spawners: bool,
    metrics_allow: Vec<String>,
    metrics_token: Option<Secret>,
    metrics_token_file: Option<PathBuf>,
    pools_file: Option<PathBuf>,
}

impl Default for RawConfig {
    fn default() -> Self {
        RawConfig {
            listen: "127.0.0.1:3000".into(),
            web_threads: 0,
            database_url: "sqlite://data/copr-pools.sqlite?mode=rwc".into(),
            database_max_connections: 8,
            site_root: "target/site".into(),
            log: "info".into(),
            log_format: LogFormat::Text,
            log_dir: "data/logs".into(),
            shutdown_grace_secs: 10,
            xmlrpc_listen: "127.0.0.1:49100".into(),
            xmlrpc_max_body_bytes: 1024 * 1024,
            engine: true,
            engine_period_secs: 5,
            livecheck_concurrency: 8,
            hook_env_passthrough: Vec::new(),
            oidc_issuer: "https://id.fedoraproject.org/openidc/".into(),
            oidc_client_id: None,
            oidc_client_secret: None,
            oidc_client_secret_file: None,
            oidc_redirect_url: None,
            oidc_scopes: [
                "openid",
                "profile",
                "email",
                "https://id.fedoraproject.org/scope/groups",
            ]
            .map(String::from)
            .to_vec(),
            oidc_username_claim: "nickname".into(),
            oidc_groups_claim: "groups".into(),
            admin_groups: vec!["copr-admins".into()],
            team_groups: vec!["*".into()],
            dev_login: false,
            session_inactivity_secs: 8 * 3600,
            session_max_age_secs: 7 * 24 * 3600,
            data_dir: "data".into(),
            team_max_machines: 20,
            routing_refresh_ms: 1000,
            community_priority: -10,
            spawners_dir: "spawners".into(),
            spawner_templates: BTreeMap::new(),
            secret_keys: Vec::new(),
            secret_keys_file: None,
            demo_spawners: false,
            metrics_allow: Vec::new(),
            metrics_token: None,
            metrics_token_file: None,
            pools_file: None,
        }
    }
}

/// Keys whose value is a list: in the environment they are comma-separated.
const LIST_KEYS: &[&str] = &[
    "oidc_scopes",
    "admin_groups",
    "team_groups",
    "hook_env_passthrough",
    "secret_keys",
    "metrics_allow",
];
/// Keys that hold secrets and may instead be read from `<KEY>_FILE`.
const SECRET_KEYS: &[&str] = &["oidc_client_secret", "secret_keys", "metrics_token"];

/// An admin's replacement of a spawner template's commands (see [`crate::spawners`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateOverride {
    pub cmd_new: Option<String>,
    pub cmd_delete: Option<String>,
    pub cmd_list: Option<String>,
    pub cmd_livecheck: Option<String>,
}

/// OpenID Connect client settings, present when sign-in with an external provider is set up.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub redirect_url: url::Url,
    pub scopes: Vec<String>,
    pub username_claim: String,
    pub groups_claim: String,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// Threads accepting connections on `listen`, each with its own runtime; 0: one per core.
    pub web_threads: usize,
    pub database_url: String,
    pub database_max_connections: u32,
    pub site_root: PathBuf,
    pub log: String,
    pub log_format: LogFormat,
    pub log_dir: PathBuf,
    pub shutdown_grace_secs: u64,
    pub xmlrpc_listen: SocketAddr,
    pub xmlrpc_max_body_bytes: usize,
    pub engine: bool,
    pub engine_period_secs: u64,
    pub livecheck_concurrency: usize,
    /// Names (or `PREFIX*`) of the server's environment variables that hooks also get, on
    /// top of `PATH`, `HOME`, `LANG`, `LC_*`, `TMPDIR` and `TZ`.
    pub hook_env_passthrough: Vec<String>,
    pub oidc: Option<OidcConfig>,
    pub admin_groups: Vec<String>,
    pub team_groups: TeamGroups,
    pub dev_login: bool,
    pub session_inactivity_secs: u64,
    pub session_max_age_secs: u64,
    /// copr-pools' own files: the generated `secret.key` (embedded default only) and the
    /// short-lived credential files of running hooks.
    pub data_dir: PathBuf,
    /// Keys that encrypt stored secrets (`<id>:<base64 of 32 bytes>`), the first one for new
    /// ciphertexts; from `secret_keys` or the lines of `secret_keys_file`. Empty: see
    /// [`crate::secrets::Keyring::load`].
    pub secret_keys: Vec<Secret>,
    /// The demo spawners (the `local` credential kind) are offered.
    pub demo_spawners: bool,
    /// Machines one team's pools may have in all before the approval queue warns.
    pub team_max_machines: u32,
    /// The priority of a community pool's tags, unless the admin chooses another (below
    /// Copr's own pools, like its on-demand pools at -10).
    pub community_priority: i64,
    /// How long the routing API serves the rules it has before checking the stored version
    /// again (changes made by this process are served at once).
    pub routing_refresh_ms: u64,
    /// Where the demo spawner scripts are (`{spawners}` in templates).
    pub spawners_dir: PathBuf,
    /// The admins' spawner templates, by credential kind, over the built-in ones.
    pub spawner_templates: BTreeMap<String, TemplateOverride>,
    /// Who may read `/metrics` besides loopback clients: addresses and networks.
    pub metrics_allow: Vec<ipnet::IpNet>,
    /// A bearer token that opens `/metrics` from anywhere.
    pub metrics_token: Option<Secret>,
    /// A resalloc `pools.yaml` that `serve` imports at start and on SIGHUP.
    pub pools_file: Option<PathBuf>,
}

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("configuration: {0}")]
    Parse(String),
    #[error("configuration key `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::from_raw(RawConfig::default()).expect("the built-in defaults are valid")
    }
}

impl Config {
    /// Reads the file (if any) and the process environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        Config::load_from(file, std::env::vars())
    }

    /// Reads the file (if any) and the given environment; tests pass their own.
    pub fn load_from(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut builder = config::Config::builder();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
                path: path.to_path_buf(),
                message: format!("cannot be read: {e}"),
            })?;
            builder = builder.add_source(config::File::from_str(&text, config::FileFormat::Toml));
        }

        let mut vars = BTreeMap::new();
        let mut secret_files = BTreeMap::new();
        for (name, value) in env {
            let Some(key) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            if name == CONFIG_PATH_ENV {
                continue;
            }
            let key = key.to_ascii_lowercase();
            match key.strip_suffix("_file") {
                Some(secret) if SECRET_KEYS.contains(&secret) => {
                    secret_files.insert(secret.to_string(), PathBuf::from(value));
                }
                _ => {
                    vars.insert(key, value);
                }
            }
        }
        let mut environment = config::Environment::default()
            .try_parsing(true)
            .list_separator(",")
            .source(Some(vars.into_iter().collect()));
        for key in LIST_KEYS {
            environment = environment.with_list_parse_key(key);
        }
        builder = builder.add_source(environment);

        let merged = builder
            .build()
            .map_err(|e| ConfigError::Parse(without_secrets(&e.to_string())))?;
        let mut raw: RawConfig = merged
            .try_deserialize()
            .map_err(|e| ConfigError::Parse(without_secrets(&e.to_string())))?;
        if let Some(path) = secret_files.remove("oidc_client_secret") {
            raw.oidc_client_secret_file = Some(path);
        }
        if let Some(path) = secret_files.remove("secret_keys") {
            raw.secret_keys_file = Some(path);
        }
        if let Some(path) = secret_files.remove("metrics_token") {
            raw.metrics_token_file = Some(path);
        }
        Config::from_raw(raw)
    }

    fn from_raw(raw: RawConfig) -> Result<Config, ConfigError> {
        let listen = parse_addr("listen", &raw.listen)?;
        let xmlrpc_listen = parse_addr("xmlrpc_listen", &raw.xmlrpc_listen)?;
        if !(raw.database_url.starts_with("sqlite:")
            || raw.database_url.starts_with("postgres://")
            || raw.database_url.starts_with("postgresql://"))
        {
            return Err(invalid(
                "database_url",
                "must start with sqlite: (e.g. sqlite://data/copr-pools.sqlite?mode=rwc) \
                 or postgres:// (e.g. postgres://copr@localhost/copr_pools)",
            ));
        }
        if raw.web_threads > 256 {
            return Err(invalid(
                "web_threads",
                "must be at most 256 (0 means one per core)",
            ));
        }
        if raw.database_max_connections == 0 {
            return Err(invalid("database_max_connections", "must be at least 1"));
        }
        if raw.xmlrpc_max_body_bytes < 1024 {
            return Err(invalid(
                "xmlrpc_max_body_bytes",
                "must be at least 1024 bytes",
            ));
        }
        if raw.engine_period_secs == 0 {
            return Err(invalid("engine_period_secs", "must be at least 1 second"));
        }
        if raw.livecheck_concurrency == 0 {
            return Err(invalid("livecheck_concurrency", "must be at least 1"));
        }
        if raw.session_inactivity_secs < 60 {
            return Err(invalid(
                "session_inactivity_secs",
                "must be at least 60 seconds",
            ));
        }
        if raw.session_max_age_secs < raw.session_inactivity_secs {
            return Err(invalid(
                "session_max_age_secs",
                "must be at least session_inactivity_secs",
            ));
        }
        if tracing_subscriber::EnvFilter::try_new(&raw.log).is_err() {
            return Err(invalid(
                "log",
                format!(
                    "{:?} is not a log filter; use e.g. info, debug or copr_pools=debug,info",
                    raw.log
                ),
            ));
        }
        validate_passthrough(&raw.hook_env_passthrough)?;
        let team_groups = if raw.team_groups.iter().any(|g| g == "*") {
            TeamGroups::All
        } else {
            TeamGroups::Only(raw.team_groups.clone())
        };

        let oidc = oidc_config(&raw)?;
        let secret_keys = secret_keys(&raw)?;
        crate::spawners::check_overrides(&raw.spawner_templates)
            .map_err(|message| invalid("spawner_templates", message))?;
        if raw.dev_login && oidc.is_some() {
            return Err(invalid(
                "dev_login",
                "is on together with a real OpenID provider (oidc_client_id); the development \
                 sign-in is for machines without one: turn it off",
            ));
        }
        if raw.dev_login && !listen.ip().is_loopback() {
            return Err(invalid(
                "dev_login",
                format!(
                    "the development sign-in lets anyone act as anyone, so it only runs on a \
                     loopback address; listen is {listen}. Turn dev_login off or listen on 127.0.0.1"
                ),
            ));
        }

        Ok(Config {
            listen,
            web_threads: raw.web_threads,
            database_url: raw.database_url,
            database_max_connections: raw.database_max_connections,
            site_root: raw.site_root,
            log: raw.log,
            log_format: raw.log_format,
            log_dir: raw.log_dir,
            shutdown_grace_secs: raw.shutdown_grace_secs,
            xmlrpc_listen,
            xmlrpc_max_body_bytes: raw.xmlrpc_max_body_bytes,
            engine: raw.engine,
            engine_period_secs: raw.engine_period_secs,
            livecheck_concurrency: raw.livecheck_concurrency,
            hook_env_passthrough: raw.hook_env_passthrough,
            oidc,
            admin_groups: raw.admin_groups,
            team_groups,
            dev_login: raw.dev_login,
            session_inactivity_secs: raw.session_inactivity_secs,
            session_max_age_secs: raw.session_max_age_secs,
            data_dir: raw.data_dir,
            secret_keys,
            demo_spawners: raw.demo_spawners,
            team_max_machines: raw.team_max_machines,
            routing_refresh_ms: raw.routing_refresh_ms,
            community_priority: raw.community_priority,
            spawners_dir: raw.spawners_dir,
            spawner_templates: raw.spawner_templates,
            metrics_allow: metrics_allow(&raw.metrics_allow)?,
            metrics_token: match one_secret(
                "metrics_token",
                &raw.metrics_token,
                &raw.metrics_token_file,
            )? {
                Some(t) if t.expose().trim().len() < 16 => {
                    return Err(invalid(
                        "metrics_token",
                        "is shorter than 16 characters; use a long random value (e.g. from `copr-pools key generate`)",
                    ));
                }
                other => other,
            },
            pools_file: raw.pools_file,
        })
    }

    /// The keys whose new value in `new` only a restart applies (a reload applies `log`,
    /// `metrics_allow`, `metrics_token` and `pools_file`).
    pub fn needs_restart_for(&self, new: &Config) -> Vec<&'static str> {
        let mut keys = Vec::new();
        macro_rules! compare {
            ($($key:ident),+ $(,)?) => {
                $(if format!("{:?}", self.$key) != format!("{:?}", new.$key) {
                    keys.push(stringify!($key));
                })+
            };
        }
        compare!(
            listen,
            web_threads,
            database_url,
            database_max_connections,
            site_root,
            log_format,
            log_dir,
            shutdown_grace_secs,
            xmlrpc_listen,
            xmlrpc_max_body_bytes,
            engine,
            engine_period_secs,
            livecheck_concurrency,
            hook_env_passthrough,
            oidc,
            admin_groups,
            team_groups,
            dev_login,
            session_inactivity_secs,
            session_max_age_secs,
            data_dir,
            demo_spawners,
            team_max_machines,
            community_priority,
            routing_refresh_ms,
            spawners_dir,
            spawner_templates,
        );
        // Secrets print as [redacted]: compare what they hold.
        let exposed = |keys: &[Secret]| {
            keys.iter()
                .map(|k| k.expose().to_string())
                .collect::<Vec<_>>()
        };
        if exposed(&self.secret_keys) != exposed(&new.secret_keys) {
            keys.push("secret_keys");
        }
        let client_secret = |c: &Config| {
            c.oidc
                .as_ref()
                .map(|o| o.client_secret.expose().to_string())
        };
        if client_secret(self) != client_secret(new) && !keys.contains(&"oidc") {
            keys.push("oidc");
        }
        keys
    }

    /// True when the database is SQLite (the embedded default).
    pub fn is_sqlite(&self) -> bool {
        self.database_url.starts_with("sqlite:")
    }
}

fn parse_addr(key: &'static str, value: &str) -> Result<SocketAddr, ConfigError> {
    value.parse().map_err(|_| {
        invalid(
            key,
            format!("{value:?} is not an address; write IP:PORT, e.g. 127.0.0.1:3000"),
        )
    })
}

/// The configured encryption keys: `secret_keys`, or one per line of `secret_keys_file`
/// (blank lines and `#` comments skipped). Their shape is checked when the keyring is built.
fn secret_keys(raw: &RawConfig) -> Result<Vec<Secret>, ConfigError> {
    match (&raw.secret_keys_file, raw.secret_keys.is_empty()) {
        (Some(_), false) => Err(invalid(
            "secret_keys",
            "is set both directly and through secret_keys_file; keep one",
        )),
        (Some(path), true) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                invalid(
                    "secret_keys_file",
                    format!("{} cannot be read: {e}", path.display()),
                )
            })?;
            let keys = key_lines(&text);
            if keys.is_empty() {
                return Err(invalid(
                    "secret_keys_file",
                    format!(
                        "{} holds no key; put one per line (copr-pools key generate prints one)",
                        path.display()
                    ),
                ));
            }
            Ok(keys)
        }
        (None, _) => Ok(raw.secret_keys.clone()),
    }
}

/// A list, or one string holding comma-separated values (how an environment variable or a
/// TOML line may well write the keys).
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Secret>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => s
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(Secret::new)
            .collect(),
        OneOrMany::Many(v) => v.into_iter().map(Secret::new).collect(),
    })
}

/// A parse error without the value that caused it when the key holds a secret: serde's
/// messages quote strings they could not use.
fn without_secrets(message: &str) -> String {
    let secret_key = SECRET_KEYS.iter().any(|k| message.contains(k));
    if !secret_key {
        return message.to_string();
    }
    message
        .split('"')
        .enumerate()
        .map(|(i, part)| if i % 2 == 1 { "\"[redacted]\"" } else { part })
        .collect()
}

/// The keys of a key file: one per line, blank lines and `#` comments skipped.
pub fn key_lines(text: &str) -> Vec<Secret> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(Secret::new)
        .collect()
}

/// Passthrough entries are variable names or `PREFIX*`; the server's own settings never pass.
fn validate_passthrough(names: &[String]) -> Result<(), ConfigError> {
    for name in names {
        let bare = name.strip_suffix('*').unwrap_or(name);
        if bare.is_empty() {
            return Err(invalid(
                "hook_env_passthrough",
                format!(
                    "{name:?} would hand hooks the server's whole environment; list the \
                     variables hooks need (e.g. HTTPS_PROXY) or a prefix such as AWS_*"
                ),
            ));
        }
        if !bare.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(invalid(
                "hook_env_passthrough",
                format!(
                    "{name:?} is not a variable name; use letters, digits and '_', optionally ending in '*'"
                ),
            ));
        }
        let is_prefix = name.ends_with('*');
        if bare.starts_with(ENV_PREFIX) || (is_prefix && ENV_PREFIX.starts_with(bare)) {
            return Err(invalid(
                "hook_env_passthrough",
                format!(
                    "{name:?} would hand hooks the server's own settings and secrets \
                     (COPR_POOLS_*); those never reach hooks"
                ),
            ));
        }
    }
    Ok(())
}

/// A secret given directly or through `<key>_file` (one line; the newline dropped).
fn one_secret(
    key: &'static str,
    direct: &Option<Secret>,
    file: &Option<PathBuf>,
) -> Result<Option<Secret>, ConfigError> {
    match (direct, file) {
        (Some(_), Some(_)) => Err(invalid(
            key,
            format!("is set both directly and through {key}_file; keep one"),
        )),
        (Some(secret), None) => Ok(Some(secret.clone())),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                invalid(
                    key,
                    format!("{key}_file {} cannot be read: {e}", path.display()),
                )
            })?;
            Ok(Some(Secret::new(text.trim_end_matches(['\n', '\r']))))
        }
        (None, None) => Ok(None),
    }
}

/// `metrics_allow`: addresses (`10.0.0.5`, `::1`) and networks (`10.0.0.0/24`).
fn metrics_allow(values: &[String]) -> Result<Vec<ipnet::IpNet>, ConfigError> {
    values
        .iter()
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
        .map(|v| {
            v.parse::<ipnet::IpNet>()
                .or_else(|_| v.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    invalid(
                        "metrics_allow",
                        format!("{v:?} is neither an address nor a network; write e.g. 10.0.0.5 or 10.0.0.0/24"),
                    )
                })
        })
        .collect()
}

fn oidc_config(raw: &RawConfig) -> Result<Option<OidcConfig>, ConfigError> {
    let secret = one_secret(
        "oidc_client_secret",
        &raw.oidc_client_secret,
        &raw.oidc_client_secret_file,
    )?;
    let Some(client_id) = raw.oidc_client_id.clone() else {
        if secret.is_some() || raw.oidc_redirect_url.is_some() {
            return Err(invalid(
                "oidc_client_id",
                "is required once oidc_client_secret or oidc_redirect_url is set",
            ));
        }
        return Ok(None);
    };
    let client_secret = secret.ok_or_else(|| {
        invalid(
            "oidc_client_secret",
            "is required with oidc_client_id (or set oidc_client_secret_file)",
        )
    })?;
    let redirect = raw.oidc_redirect_url.as_deref().ok_or_else(|| {
        invalid(
            "oidc_redirect_url",
            "is required with oidc_client_id, e.g. https://pools.example.org/auth/callback",
        )
    })?;
    let redirect_url = url::Url::parse(redirect).map_err(|e| {
        invalid(
            "oidc_redirect_url",
            format!("{redirect:?} is not a URL: {e}"),
        )
    })?;
    if !matches!(redirect_url.scheme(), "https" | "http")
        || !redirect_url.path().ends_with("/auth/callback")
    {
        return Err(invalid(
            "oidc_redirect_url",
            "must be an http(s) URL ending in /auth/callback, e.g. https://pools.example.org/auth/callback",
        ));
    }
    if redirect_url.scheme() == "http" && !is_loopback_host(&redirect_url) {
        return Err(invalid(
            "oidc_redirect_url",
            format!(
                "{redirect:?} is http:// on a host other than this machine: browsers drop the \
                 session cookie (it is Secure) on plain http, so every sign-in would fail. Serve \
                 copr-pools over https and use https://…/auth/callback"
            ),
        ));
    }
    let issuer = url::Url::parse(&raw.oidc_issuer).map_err(|e| {
        invalid(
            "oidc_issuer",
            format!("{:?} is not a URL: {e}", raw.oidc_issuer),
        )
    })?;
    if !matches!(issuer.scheme(), "https" | "http") {
        return Err(invalid("oidc_issuer", "must be an http(s) URL"));
    }
    if !raw.oidc_scopes.iter().any(|s| s == "openid") {
        return Err(invalid("oidc_scopes", "must include openid"));
    }
    Ok(Some(OidcConfig {
        issuer: raw.oidc_issuer.clone(),
        client_id,
        client_secret,
        redirect_url,
        scopes: raw.oidc_scopes.clone(),
        username_claim: raw.oidc_username_claim.clone(),
        groups_claim: raw.oidc_groups_claim.clone(),
    }))
}

/// `localhost`, `*.localhost` or a loopback address: where browsers accept Secure cookies
/// over plain http.
fn is_loopback_host(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            d == "localhost" || d.ends_with(".localhost")
        }
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_serve_one_machine() {
        let c = Config::load_from(None, env(&[])).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:3000");
        assert_eq!(c.xmlrpc_listen.to_string(), "127.0.0.1:49100");
        assert_eq!(c.database_url, "sqlite://data/copr-pools.sqlite?mode=rwc");
        assert!(c.oidc.is_none());
        assert!(!c.dev_login);
        assert_eq!(c.team_groups, TeamGroups::All);
    }

    #[test]
    fn metrics_access_is_checked() {
        let e = Config::load_from(None, env(&[("COPR_POOLS_METRICS_TOKEN", "x7q9")])).unwrap_err();
        assert!(e.to_string().contains("metrics_token"), "{e}");
        assert!(
            !e.to_string().contains("x7q9"),
            "the secret is not repeated: {e}"
        );
        let e = Config::load_from(None, env(&[("COPR_POOLS_METRICS_ALLOW", "10.0.0.0/33")]))
            .unwrap_err();
        assert!(e.to_string().contains("metrics_allow"), "{e}");
        let c = Config::load_from(
            None,
            env(&[
                ("COPR_POOLS_METRICS_ALLOW", "10.0.0.5,192.168.0.0/24"),
                ("COPR_POOLS_METRICS_TOKEN", "a-long-enough-scrape-token"),
            ]),
        )
        .unwrap();
        assert_eq!(c.metrics_allow.len(), 2);
        assert!(format!("{c:?}").contains("[redacted]"));
        assert!(!format!("{c:?}").contains("a-long-enough-scrape-token"));
    }

    #[test]
    fn reloads_name_what_needs_a_restart() {
        let base = Config::load_from(None, env(&[])).unwrap();
        let same = Config::load_from(None, env(&[])).unwrap();
        assert!(base.needs_restart_for(&same).is_empty());
        let grace =
            Config::load_from(None, env(&[("COPR_POOLS_SHUTDOWN_GRACE_SECS", "99")])).unwrap();
        assert_eq!(base.needs_restart_for(&grace), ["shutdown_grace_secs"]);
        let log = Config::load_from(None, env(&[("COPR_POOLS_LOG", "debug")])).unwrap();
        assert!(base.needs_restart_for(&log).is_empty(), "log is reloaded");
        // The OIDC client secret prints as [redacted]: a change of it alone is still seen.
        let mut a = base.clone();
        a.oidc = Some(OidcConfig {
            issuer: "https://id.example.org".into(),
            client_id: "copr-pools".into(),
            client_secret: Secret::new("first-secret"),
            redirect_url: url::Url::parse("https://pools.example.org/auth/callback").unwrap(),
            scopes: vec!["openid".into()],
            username_claim: "nickname".into(),
            groups_claim: "groups".into(),
        });
        let mut b = a.clone();
        if let Some(o) = b.oidc.as_mut() {
            o.client_secret = Secret::new("second-secret");
        }
        assert_eq!(a.needs_restart_for(&b), ["oidc"]);
    }

    #[test]
    fn environment_overrides_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:4000\"\ndatabase_max_connections = 3\n",
        )
        .unwrap();
        let c = Config::load_from(
            Some(&path),
            env(&[
                ("COPR_POOLS_LISTEN", "127.0.0.1:5000"),
                ("COPR_POOLS_ADMIN_GROUPS", "a,b"),
            ]),
        )
        .unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:5000");
        assert_eq!(c.database_max_connections, 3);
        assert_eq!(c.admin_groups, vec!["a", "b"]);
    }

    #[test]
    fn bad_values_name_their_key() {
        let e = Config::load_from(None, env(&[("COPR_POOLS_LISTEN", "localhost")])).unwrap_err();
        assert!(e.to_string().contains("`listen`"), "{e}");
        let e = Config::load_from(
            None,
            env(&[("COPR_POOLS_DATABASE_MAX_CONNECTIONS", "many")]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("database_max_connections"), "{e}");
        let e =
            Config::load_from(None, env(&[("COPR_POOLS_DATABASE_URL", "mysql://x")])).unwrap_err();
        assert!(e.to_string().contains("`database_url`"), "{e}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "lisen = \"127.0.0.1:4000\"\n").unwrap();
        let e = Config::load_from(Some(&path), env(&[])).unwrap_err();
        assert!(e.to_string().contains("lisen"), "{e}");
    }

    #[test]
    fn secrets_come_from_files_and_stay_redacted() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "s3cr3t-value\n").unwrap();
        let c = Config::load_from(
            None,
            env(&[
                ("COPR_POOLS_OIDC_CLIENT_ID", "copr-pools"),
                (
                    "COPR_POOLS_OIDC_CLIENT_SECRET_FILE",
                    secret.to_str().unwrap(),
                ),
                (
                    "COPR_POOLS_OIDC_REDIRECT_URL",
                    "https://pools.example.org/auth/callback",
                ),
            ]),
        )
        .unwrap();
        let oidc = c.oidc.as_ref().unwrap();
        assert_eq!(oidc.client_secret.expose(), "s3cr3t-value");
        assert!(!format!("{c:?}").contains("s3cr3t"));
    }

    #[test]
    fn dev_login_refuses_public_addresses() {
        let e = Config::load_from(
            None,
            env(&[
                ("COPR_POOLS_DEV_LOGIN", "true"),
                ("COPR_POOLS_LISTEN", "0.0.0.0:3000"),
            ]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("`dev_login`"), "{e}");
        assert!(
            Config::load_from(None, env(&[("COPR_POOLS_DEV_LOGIN", "true")]))
                .unwrap()
                .dev_login
        );
    }

    fn oidc_env(redirect: &str) -> Vec<(String, String)> {
        env(&[
            ("COPR_POOLS_OIDC_CLIENT_ID", "copr-pools"),
            ("COPR_POOLS_OIDC_CLIENT_SECRET", "s"),
            ("COPR_POOLS_OIDC_REDIRECT_URL", redirect),
        ])
    }

    #[test]
    fn plain_http_redirects_are_refused_off_this_machine() {
        for bad in [
            "http://pools.example.org/auth/callback",
            "http://10.0.0.5:3000/auth/callback",
        ] {
            let e = Config::load_from(None, oidc_env(bad)).unwrap_err();
            let e = e.to_string();
            assert!(
                e.contains("`oidc_redirect_url`") && e.contains("https"),
                "{e}"
            );
        }
        for good in [
            "https://pools.example.org/auth/callback",
            "http://localhost:3000/auth/callback",
            "http://127.0.0.1:3000/auth/callback",
            "http://[::1]:3000/auth/callback",
        ] {
            assert!(
                Config::load_from(None, oidc_env(good)).is_ok(),
                "{good} was refused"
            );
        }
    }

    #[test]
    fn hook_env_passthrough_takes_names_and_prefixes_but_never_the_servers_settings() {
        let c = Config::load_from(
            None,
            env(&[("COPR_POOLS_HOOK_ENV_PASSTHROUGH", "HTTPS_PROXY,AWS_*")]),
        )
        .unwrap();
        assert_eq!(c.hook_env_passthrough, vec!["HTTPS_PROXY", "AWS_*"]);
        for bad in ["COPR_POOLS_DATABASE_URL", "COPR_*", "*", "A B", "X=1"] {
            let e = Config::load_from(None, env(&[("COPR_POOLS_HOOK_ENV_PASSTHROUGH", bad)]))
                .unwrap_err();
            assert!(
                e.to_string().contains("`hook_env_passthrough`"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn secret_keys_come_as_a_list_or_a_string_and_errors_never_quote_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "secret_keys = \"a:AAAA, b:BBBB\"\n").unwrap();
        let c = Config::load_from(Some(&path), env(&[])).unwrap();
        assert_eq!(c.secret_keys.len(), 2);
        std::fs::write(&path, "secret_keys = [\"a:AAAA\"]\n").unwrap();
        assert_eq!(
            Config::load_from(Some(&path), env(&[]))
                .unwrap()
                .secret_keys
                .len(),
            1
        );
        std::fs::write(&path, "secret_keys = { k = \"hunter2-key\" }\n").unwrap();
        let e = Config::load_from(Some(&path), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(!e.contains("hunter2"), "{e}");
        assert_eq!(
            without_secrets("invalid type: string \"s3cret\" for key `oidc_client_secret`"),
            "invalid type: string \"[redacted]\" for key `oidc_client_secret`"
        );
    }

    #[test]
    fn team_groups_match_names_and_prefixes() {
        let t = TeamGroups::Only(vec!["copr-team-*".into(), "packit".into()]);
        assert!(t.is_team("copr-team-llvm"));
        assert!(t.is_team("packit"));
        assert!(!t.is_team("packager"));
    }
}
