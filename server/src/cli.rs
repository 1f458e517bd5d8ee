//! The command-line tools beside `serve`: migrations, pool import/export and the
//! `resalloc-maint`-style maintenance commands. They talk to the database directly, so they
//! work with the server stopped, and the running engine picks their changes up.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use sea_orm::DatabaseConnection;

use crate::audit::Actor;
use crate::config::Config;
use crate::db;
use crate::engine::pools::export_pools_yaml;
use crate::resources::{self, Selection};

#[derive(Subcommand, Debug)]
pub enum PoolsCommand {
    /// Create or update pools from a resalloc pools.yaml (`-` reads standard input).
    Import {
        file: PathBuf,
        /// Check the file and show what would change, without saving.
        #[arg(long)]
        dry_run: bool,
    },
    /// Write every pool as a resalloc pools.yaml (to standard output without FILE).
    Export { file: Option<PathBuf> },
    /// List the pools and their states.
    List,
}

#[derive(Subcommand, Debug)]
pub enum ResourceCommand {
    /// List machines that are not ENDED.
    List {
        /// Only UP machines.
        #[arg(long)]
        up: bool,
        #[arg(long)]
        json: bool,
    },
    /// Show one machine, by id or name, as JSON.
    Info { id_or_name: String },
    /// Delete machines: STARTING, UP (its ticket FAILS) or RELEASING.
    Delete {
        ids: Vec<i32>,
        /// Every machine.
        #[arg(long, conflicts_with_all = ["ids", "unused"])]
        all: bool,
        /// UP machines that nobody uses.
        #[arg(long, conflicts_with = "ids")]
        unused: bool,
    },
    /// Print a machine's hook logs (alloc, watch, release, terminate).
    Logs {
        id_or_name: String,
        /// Keep printing what the hooks write.
        #[arg(long, short)]
        follow: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Print a new key for `secret_keys` / `secret_keys_file`.
    Generate,
    /// Seal every stored secret again with the first configured key.
    Rotate,
}

#[derive(Subcommand, Debug)]
pub enum RoutingCommand {
    /// Print the enabled rules as Copr reads them (standard output).
    Export {
        /// `json` (what GET /api/v1/routing serves) or `python` (EXTRA_BUILDCHROOT_TAGS for
        /// Copr's copr.conf).
        #[arg(long, default_value = "json")]
        format: String,
    },
    /// Append rules from a JSON list or from Copr's copr.conf (the EXTRA_BUILDCHROOT_TAGS
    /// assignment, read as data), skipping rules already present (`-` reads standard input).
    Import {
        file: PathBuf,
        /// Check the file and show what would be added, without saving.
        #[arg(long)]
        dry_run: bool,
        /// Import even when there are warnings (broad patterns, too many tags for one build).
        #[arg(long)]
        accept_warnings: bool,
    },
    /// List every rule, disabled ones too.
    List,
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create an API token for the routing API and print it (once: it is not stored).
    Create { name: String },
    /// List the tokens: name, last four characters, who made them, last use.
    List,
    /// Revoke a token by name.
    Revoke { name: String },
}

#[derive(Subcommand, Debug)]
pub enum TicketCommand {
    /// List tickets that are not CLOSED.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one ticket: its state, tags, sandbox, age, machine, and why it waits.
    Info {
        id: i64,
        /// Print what GET /api/v1/tickets/ID answers.
        #[arg(long)]
        json: bool,
    },
}

/// Options of `copr-pools bench`.
#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// What to measure: `cycles` (N clients in Copr's call sequence), `backlog` (K tickets at
    /// once against a smaller max), `core` (one engine pass over a synthetic world), `routing`,
    /// `history` (what 90 days of 50 pools cost), `live` (500 live status pages during a
    /// 1,000-ticket run, against the same run without them), or `all`.
    #[arg(long, default_value = "all")]
    pub mode: String,
    /// Concurrent clients for `cycles`.
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// How long `cycles` runs, in seconds.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Tickets taken at once in `backlog` and `live`.
    #[arg(long, default_value_t = 1000)]
    pub tickets: usize,
    /// Status pages following the live stream in `live`.
    #[arg(long, default_value_t = 500)]
    pub pages: usize,
    /// Machines (total max) in `backlog` and `live`.
    #[arg(long, default_value_t = 200)]
    pub machines: u32,
    /// Database for the run: a URL, or `sqlite` (a temporary file, the default) or
    /// `postgres` (a fresh schema in postgres://postgres@127.0.0.1:5432/test).
    #[arg(long, default_value = "sqlite")]
    pub database: String,
}

async fn connect(config: &Config) -> anyhow::Result<DatabaseConnection> {
    let db = db::connect(&db::DbSettings {
        url: config.database_url.clone(),
        max_connections: config.database_max_connections.min(4),
        schema: None,
    })
    .await?;
    let pending = db::pending_migrations(&db).await?;
    if !pending.is_empty() {
        bail!(
            "the database schema is not current ({} pending); run `copr-pools migrate` first",
            pending.len()
        );
    }
    Ok(db)
}

pub async fn migrate(config: &Config) -> anyhow::Result<()> {
    let db = db::connect(&db::DbSettings {
        url: config.database_url.clone(),
        max_connections: 2,
        schema: None,
    })
    .await?;
    let pending = db::pending_migrations(&db).await?;
    db::migrate(&db).await?;
    if pending.is_empty() {
        println!("The database schema is current.");
    } else {
        for m in &pending {
            println!("applied {m}");
        }
    }
    Ok(())
}

/// A file's text, or standard input's for `-`.
fn read_input(file: &std::path::Path) -> anyhow::Result<String> {
    if file.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading standard input")?;
        Ok(s)
    } else {
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))
    }
}

pub async fn pools(config: &Config, command: PoolsCommand) -> anyhow::Result<()> {
    let db = connect(config).await?;
    match command {
        PoolsCommand::Import { file, dry_run } => {
            let text = read_input(&file)?;
            let imported = match crate::pools::check_pools_yaml(&db, &text).await? {
                Ok(i) => i,
                Err(errors) => {
                    for e in &errors {
                        eprintln!("{}: {e}", file.display());
                    }
                    bail!(
                        "{} problem(s) in {}; nothing was imported",
                        errors.len(),
                        file.display()
                    );
                }
            };
            for w in &imported.warnings {
                eprintln!("warning: {w}");
            }
            if dry_run {
                let (current, _) = crate::pools::load_all(&db).await?;
                for p in &imported.pools {
                    let verb = match current.iter().find(|c| c.name == p.name) {
                        None => "would create",
                        Some(c) if c == p => "unchanged",
                        Some(_) => "would update",
                    };
                    println!("{verb} {}", p.name);
                }
                return Ok(());
            }
            let saved = crate::pools::save(&db, &imported.pools, &Actor::from_cli_env()).await?;
            for n in &saved.created {
                println!("created {n}");
            }
            for n in &saved.updated {
                println!("updated {n}");
            }
            for n in &saved.unchanged {
                println!("unchanged {n}");
            }
        }
        PoolsCommand::Export { file } => {
            let (pools, broken) = crate::pools::load_all(&db).await?;
            for e in &broken {
                eprintln!("warning: not exported: {e}");
            }
            let names = crate::credentials::Vault::qualified_names(&db).await?;
            let yaml = export_pools_yaml(&pools, &names);
            match file {
                Some(path) => std::fs::write(&path, yaml)
                    .with_context(|| format!("cannot write {}", path.display()))?,
                None => std::io::stdout().write_all(yaml.as_bytes())?,
            }
        }
        PoolsCommand::List => {
            let (pools, broken) = crate::pools::load_all(&db).await?;
            for p in pools {
                println!(
                    "{} state={} max={} max_starting={} max_prealloc={} tags={}{}",
                    p.name,
                    p.state,
                    p.max,
                    p.max_starting,
                    p.max_prealloc,
                    p.tags
                        .iter()
                        .map(|t| t.name.as_str())
                        .collect::<Vec<_>>()
                        .join(","),
                    if p.tags_on_demand.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " on_demand={}",
                            p.tags_on_demand
                                .iter()
                                .map(|t| t.name.as_str())
                                .collect::<Vec<_>>()
                                .join(",")
                        )
                    }
                );
            }
            for e in broken {
                println!("BROKEN {e}");
            }
        }
    }
    Ok(())
}

pub async fn resource(config: &Config, command: ResourceCommand) -> anyhow::Result<()> {
    let db = connect(config).await?;
    match command {
        ResourceCommand::List { up, json } => {
            let list = resources::list(&db, up).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                for r in list {
                    println!("{}", r.line());
                }
            }
        }
        ResourceCommand::Info { id_or_name } => {
            let Some(m) = resources::find(&db, &id_or_name).await? else {
                bail!("no machine with id or name {id_or_name:?}");
            };
            println!(
                "{}",
                serde_json::to_string_pretty(&resources::ResourceInfo::from(m))?
            );
        }
        ResourceCommand::Delete { ids, all, unused } => {
            let selection = match (all, unused, ids.is_empty()) {
                (true, _, _) => Selection::All,
                (_, true, _) => Selection::Unused,
                (_, _, false) => Selection::Ids(ids),
                _ => bail!("name the machines to delete, or use --unused or --all"),
            };
            for o in resources::request_delete(&db, &selection, &Actor::from_cli_env()).await? {
                println!(
                    "{} ({}): {}",
                    o.id,
                    o.name.as_deref().unwrap_or("-"),
                    o.result
                );
            }
        }
        ResourceCommand::Logs { id_or_name, follow } => {
            let Some(m) = resources::find(&db, &id_or_name).await? else {
                bail!("no machine with id or name {id_or_name:?}");
            };
            print_logs(config, m.id, follow).await?;
        }
    }
    Ok(())
}

async fn print_logs(config: &Config, id: i32, follow: bool) -> anyhow::Result<()> {
    let mut offsets: std::collections::BTreeMap<PathBuf, u64> = Default::default();
    loop {
        let files = resources::log_files(&config.log_dir, id);
        if files.is_empty() && !follow {
            println!(
                "No hook logs for machine {id} under {}.",
                config.log_dir.join("hooks").display()
            );
            return Ok(());
        }
        for (kind, path) in files {
            let bytes =
                std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            let seen = offsets.entry(path.clone()).or_insert(0);
            if (bytes.len() as u64) > *seen {
                if *seen == 0 {
                    println!("==> {} ({kind}) <==", path.display());
                }
                std::io::stdout().write_all(&bytes[*seen as usize..])?;
                *seen = bytes.len() as u64;
            }
        }
        if !follow {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

pub async fn ticket(config: &Config, command: TicketCommand) -> anyhow::Result<()> {
    let db = connect(config).await?;
    match command {
        TicketCommand::List { json } => {
            let list = resources::tickets_not_closed(&db).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                for t in list {
                    println!("{}", t.line());
                }
            }
        }
        TicketCommand::Info { id, json } => {
            let cache = crate::waiting::WaitingCache::default();
            let Some(t) = crate::waiting::ticket(&db, &cache, id).await? else {
                bail!("there is no ticket {id} (ticket list shows the open ones)");
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&t)?);
            } else {
                print!("{}", ticket_text(&t));
            }
        }
    }
    Ok(())
}

/// `ticket info` for people.
fn ticket_text(t: &app::api::tickets::TicketDetail) -> String {
    let mut out = format!(
        "ticket {}: {}, taken {} ago ({})\n",
        t.id,
        t.state,
        app::format::human_duration(t.age),
        t.created_at
    );
    out += &format!("tags:     {}\n", t.tags.join(" "));
    out += &format!("sandbox:  {}\n", t.sandbox.as_deref().unwrap_or("-"));
    if let Some(m) = &t.machine {
        out += &format!("machine:  {} (id {}) in pool {}\n", m.name, m.id, m.pool);
    }
    if let Some(w) = &t.waiting_reason {
        out += &format!("waiting:  {}\n          ({})\n", w.text, w.code);
    }
    out
}

pub async fn key(config: &Config, command: KeyCommand) -> anyhow::Result<()> {
    match command {
        KeyCommand::Generate => {
            println!("{}", crate::secrets::generate_key());
            Ok(())
        }
        KeyCommand::Rotate => {
            let db = connect(config).await?;
            let (keyring, _) = crate::secrets::Keyring::load(config)?;
            let current = keyring.current_id().to_string();
            let vault = crate::credentials::Vault::new(db, std::sync::Arc::new(keyring));
            let report = vault.rotate().await?;
            println!(
                "re-encrypted {} secret(s) with key {current}; {} already were",
                report.resealed, report.already_current
            );
            for u in &report.unreadable {
                eprintln!(
                    "cannot re-encrypt credential {}/{} (id {}): {}",
                    u.team, u.name, u.id, u.why
                );
            }
            if !report.unreadable.is_empty() {
                bail!(
                    "{} secret(s) could not be opened with the configured keys; add the key they were sealed with and run again",
                    report.unreadable.len()
                );
            }
            Ok(())
        }
    }
}

pub async fn routing(config: &Config, command: RoutingCommand) -> anyhow::Result<()> {
    let db = connect(config).await?;
    match command {
        RoutingCommand::Export { format } => {
            let snapshot = crate::routing::served::load(&db).await?;
            let out = match format.as_str() {
                "json" => {
                    let v: serde_json::Value = serde_json::from_slice(&snapshot.json)?;
                    let mut text = serde_json::to_string_pretty(&v)?;
                    text.push('\n');
                    text
                }
                "python" => String::from_utf8_lossy(&snapshot.python).into_owned(),
                other => bail!("--format {other}: use json or python"),
            };
            std::io::stdout().write_all(out.as_bytes())?;
            Ok(())
        }
        RoutingCommand::Import {
            file,
            dry_run,
            accept_warnings,
        } => {
            let text = read_input(&file)?;
            let rules = crate::routing::formats::parse_rules(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let actor = Actor::from_cli_env();
            match crate::routing::import(&db, &actor, rules, accept_warnings, dry_run).await {
                Ok(report) => {
                    for w in &report.warnings {
                        eprintln!("warning: {w}");
                    }
                    let verb = if dry_run { "would add" } else { "added" };
                    for r in &report.added {
                        println!("{verb}: {} -> {}", r.pattern, r.tags.join(", "));
                    }
                    println!(
                        "{} rule(s) {verb}, {} already present",
                        report.added.len(),
                        report.present
                    );
                    Ok(())
                }
                Err(crate::routing::RoutingError::Invalid(errors)) => {
                    for e in &errors {
                        eprintln!("error: {}: {}", e.field, e.message);
                    }
                    bail!("{} error(s); nothing was imported", errors.len())
                }
                Err(crate::routing::RoutingError::Warnings(warnings)) => {
                    for w in &warnings {
                        eprintln!("warning: {w}");
                    }
                    bail!(
                        "{} warning(s); nothing was imported. Run again with --accept-warnings to import anyway",
                        warnings.len()
                    )
                }
                Err(e) => Err(e.into()),
            }
        }
        RoutingCommand::List => {
            let (version, changed) = crate::routing::version(&db).await?;
            println!(
                "routing version {version}, changed {}",
                changed.to_rfc3339()
            );
            for r in crate::routing::list(&db).await? {
                println!(
                    "{:>3} {:8} {} -> {}  ({}{})",
                    r.position,
                    if r.enabled { "enabled" } else { "disabled" },
                    r.pattern,
                    r.tags.join(", "),
                    r.origin,
                    r.note.map(|n| format!("; {n}")).unwrap_or_default()
                );
            }
            Ok(())
        }
    }
}

pub async fn token(config: &Config, command: TokenCommand) -> anyhow::Result<()> {
    let db = connect(config).await?;
    let actor = Actor::from_cli_env();
    match command {
        TokenCommand::Create { name } => {
            let token = crate::tokens::create(&db, &actor, &name).await?;
            eprintln!("API token {name} (shown once; copr-pools keeps only its hash):");
            println!("{token}");
            Ok(())
        }
        TokenCommand::List => {
            for t in crate::tokens::list(&db).await? {
                println!(
                    "{:24} …{}  created by {} {}  last used {}{}",
                    t.name,
                    t.hint,
                    t.created_by,
                    t.created_at.format("%Y-%m-%d"),
                    t.last_used_at
                        .map(|u| u.format("%Y-%m-%d %H:%M").to_string())
                        .unwrap_or_else(|| "never".into()),
                    t.revoked_at
                        .map(|r| format!("  REVOKED {}", r.format("%Y-%m-%d")))
                        .unwrap_or_default()
                );
            }
            Ok(())
        }
        TokenCommand::Revoke { name } => {
            crate::tokens::revoke(&db, &actor, &name).await?;
            println!("revoked {name}");
            Ok(())
        }
    }
}
