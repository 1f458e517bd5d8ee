//! The binary as operators meet it: `--help`, refusing bad settings, `migrate`, structured
//! logs and a graceful shutdown on SIGTERM.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{eventually, free_port};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_copr-pools"));
    c.env_remove("COPR_POOLS_CONFIG");
    c
}

#[test]
fn help_lists_the_subcommands() {
    let out = bin().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for cmd in ["serve", "migrate", "pools", "resource", "ticket", "bench"] {
        assert!(
            help.contains(&format!("  {cmd} ")),
            "{cmd} missing from:\n{help}"
        );
    }
}

#[test]
fn a_bad_setting_stops_startup_and_names_the_key() {
    let out = bin()
        .env("COPR_POOLS_XMLRPC_LISTEN", "everywhere")
        .arg("serve")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("`xmlrpc_listen`") && err.contains("everywhere"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(&file, "engine_period_secs = \"soon\"\n").unwrap();
    let out = bin()
        .arg("--config")
        .arg(&file)
        .arg("serve")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("engine_period_secs")
    );
}

#[test]
fn migrate_applies_then_reports_a_current_schema() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("m.sqlite").display()
    );
    let first = bin()
        .env("COPR_POOLS_DATABASE_URL", &url)
        .arg("migrate")
        .output()
        .unwrap();
    assert!(first.status.success());
    assert!(
        String::from_utf8(first.stdout)
            .unwrap()
            .contains("applied m20261128_000001_identity_and_audit")
    );
    let second = bin()
        .env("COPR_POOLS_DATABASE_URL", &url)
        .arg("migrate")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(second.stdout).unwrap().trim(),
        "The database schema is current."
    );
}

#[tokio::test]
async fn serve_logs_json_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (web, rpc) = (free_port(), free_port());
    let mut child = bin()
        .env(
            "COPR_POOLS_DATABASE_URL",
            format!(
                "sqlite://{}?mode=rwc",
                dir.path().join("s.sqlite").display()
            ),
        )
        .env("COPR_POOLS_LISTEN", format!("127.0.0.1:{web}"))
        .env("COPR_POOLS_XMLRPC_LISTEN", format!("127.0.0.1:{rpc}"))
        .env("COPR_POOLS_LOG_DIR", dir.path().join("logs"))
        .env("COPR_POOLS_LOG_FORMAT", "json")
        .env("COPR_POOLS_LOG", "info")
        .env_remove("RUST_LOG")
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    eventually(
        "the server to be ready",
        Duration::from_secs(30),
        || async move {
            reqwest::get(format!("http://127.0.0.1:{web}/readyz"))
                .await
                .ok()
                .filter(|r| r.status() == 200)
                .map(|_| ())
        },
    )
    .await;
    // SAFETY: signals our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "no exit 15 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}");
    let mut log = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut log).unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON log lines"))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "copr-pools is serving"),
        "{log}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "shutting down"),
        "{log}"
    );
}
