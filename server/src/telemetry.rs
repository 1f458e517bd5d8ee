//! Structured logs with `tracing`: the level from the `log` key (or `RUST_LOG`), text for
//! people or JSON for log collectors. The level can change while the server runs
//! ([`set_filter`], on SIGHUP).

use std::sync::OnceLock;

use tracing_subscriber::EnvFilter;

use crate::config::{Config, LogFormat};

type Reload = Box<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>;

/// Replaces the filter of the subscriber [`init`] installed.
static RELOAD: OnceLock<Reload> = OnceLock::new();

pub fn init(config: &Config) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(&config.log));
    // Colours only on a terminal: journald and log files get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    // A second init (tests, benches) keeps the first subscriber.
    let reload: Option<Reload> =
        match config.log_format {
            LogFormat::Text => {
                let builder = builder.with_filter_reloading();
                let handle = builder.reload_handle();
                builder.try_init().ok().map(|()| {
                    Box::new(move |f| handle.reload(f).map_err(|e| e.to_string())) as Reload
                })
            }
            LogFormat::Json => {
                let builder = builder.json().with_filter_reloading();
                let handle = builder.reload_handle();
                builder.try_init().ok().map(|()| {
                    Box::new(move |f| handle.reload(f).map_err(|e| e.to_string())) as Reload
                })
            }
        };
    if let Some(reload) = reload {
        let _ = RELOAD.set(reload);
    }
}

/// Applies a new `log` filter, unless `RUST_LOG` overrides it.
pub fn set_filter(log: &str) -> Result<(), String> {
    if std::env::var_os("RUST_LOG").is_some() {
        return Err("RUST_LOG is set and wins over `log`".into());
    }
    let filter = EnvFilter::try_new(log).map_err(|e| format!("`log` is not a filter: {e}"))?;
    match RELOAD.get() {
        Some(reload) => reload(filter),
        None => Err("the log subscriber was set up elsewhere".into()),
    }
}
