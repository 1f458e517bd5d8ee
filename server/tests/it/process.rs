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

/// `copr-pools serve` on a SQLite file in `dir`, on free ports; returns the web port.
fn serve_on_sqlite(dir: &std::path::Path) -> (u16, Command) {
    let (web, rpc) = (free_port(), free_port());
    let mut c = bin();
    c.env(
        "COPR_POOLS_DATABASE_URL",
        format!("sqlite://{}?mode=rwc", dir.join("s.sqlite").display()),
    )
    .env("COPR_POOLS_LISTEN", format!("127.0.0.1:{web}"))
    .env("COPR_POOLS_XMLRPC_LISTEN", format!("127.0.0.1:{rpc}"))
    .env("COPR_POOLS_DATA_DIR", dir.join("data"))
    .arg("serve");
    (web, c)
}

/// Runs `copr-pools serve` on a SQLite file in `dir` (info logs, the key file of the
/// embedded default) until it is ready, stops it with SIGTERM and returns how it exited and
/// what it logged.
async fn serve_until_ready(
    dir: &std::path::Path,
    env: &[(&str, &str)],
) -> (std::process::ExitStatus, String) {
    let (web, mut serve) = serve_on_sqlite(dir);
    let mut child = serve
        .env("COPR_POOLS_LOG_DIR", dir.join("logs"))
        .env("COPR_POOLS_LOG", "info")
        .env_remove("COPR_POOLS_SECRET_KEYS")
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
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
    let status = exited(
        &mut child,
        Duration::from_secs(15),
        "no exit 15 s after SIGTERM",
    )
    .await;
    let mut log = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut log).unwrap();
    (status, log)
}

/// Waits for the child to exit; kills it and fails with `why` after `limit`.
async fn exited(
    child: &mut std::process::Child,
    limit: Duration,
    why: &str,
) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("{why}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
    let (status, log) = serve_until_ready(dir.path(), &[("COPR_POOLS_LOG_FORMAT", "json")]).await;
    assert!(status.success(), "{status:?}");
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

#[tokio::test]
async fn hooks_get_no_server_settings_or_secrets_in_their_environment() {
    crate::support::each_db(|t| async move {
        use crate::support::{Server, copr_pools};
        let (web, rpc) = (free_port(), free_port());
        let dumps = t.dir.path().join("dumps");
        std::fs::create_dir_all(&dumps).unwrap();
        let pools = t.dir.path().join("pools.yaml");
        std::fs::write(
            &pools,
            format!(
                "envdump:\n  max_prealloc: 1\n  tags: [copr_builder]\n  \
                 cmd_new: env > {d}/new.env; env >&2; echo 10.0.0.1\n  \
                 cmd_delete: env > {d}/delete.env\n",
                d = dumps.display()
            ),
        )
        .unwrap();
        let secret_file = t.dir.path().join("oidc-secret");
        std::fs::write(&secret_file, "oidc-secret-from-a-file\n").unwrap();
        // On PostgreSQL the database URL carries a password (trust auth ignores it).
        let mut env: Vec<(String, String)> = t
            .env()
            .into_iter()
            .map(|(k, v)| {
                let v = v.replacen(
                    "postgres://postgres@",
                    "postgres://postgres:db-password-x7@",
                    1,
                );
                (k, v)
            })
            .collect();
        for (k, v) in [
            ("COPR_POOLS_LISTEN", format!("127.0.0.1:{web}")),
            ("COPR_POOLS_XMLRPC_LISTEN", format!("127.0.0.1:{rpc}")),
            ("COPR_POOLS_OIDC_ISSUER", "http://127.0.0.1:9/".to_string()),
            ("COPR_POOLS_OIDC_CLIENT_ID", "copr-pools".to_string()),
            (
                "COPR_POOLS_OIDC_CLIENT_SECRET_FILE",
                secret_file.display().to_string(),
            ),
            (
                "COPR_POOLS_OIDC_REDIRECT_URL",
                format!("http://127.0.0.1:{web}/auth/callback"),
            ),
            ("COPR_POOLS_HOOK_ENV_PASSTHROUGH", "SPAWNER_*".to_string()),
            ("SPAWNER_REGION", "eu-west-1".to_string()),
            (
                "AWS_SECRET_ACCESS_KEY",
                "servers-own-aws-secret".to_string(),
            ),
        ] {
            env.push((k.to_string(), v));
        }
        let out = copr_pools(&t, &env)
            .args(["pools", "import"])
            .arg(&pools)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let client = copr_pools::bench::RpcClient::new(&format!("http://127.0.0.1:{rpc}/RPC2"));
        let server = Server::start(&t, &env, &client).await;
        let dump = dumps.join("new.env");
        eventually("cmd_new to run", Duration::from_secs(30), || {
            let dump = dump.clone();
            async move {
                std::fs::read_to_string(&dump)
                    .ok()
                    .filter(|s| s.contains("RESALLOC_NAME"))
            }
        })
        .await;
        server.stop();
        let seen = std::fs::read_to_string(&dump).unwrap();
        let log = std::fs::read_to_string(t.dir.path().join("logs/hooks/000001_alloc")).unwrap();
        for text in [&seen, &log] {
            for secret in [
                "COPR_POOLS_",
                "db-password-x7",
                "oidc-secret-from-a-file",
                "servers-own-aws-secret",
                // The key that seals stored credentials.
                crate::support::TEST_KEY.split(':').nth(1).unwrap(),
            ] {
                assert!(!text.contains(secret), "{secret} reached a hook:\n{text}");
            }
        }
        for wanted in [
            "SPAWNER_REGION=eu-west-1",
            "RESALLOC_POOL_ID=envdump",
            "PATH=",
        ] {
            assert!(
                seen.lines().any(|l| l.starts_with(wanted)),
                "{wanted} missing:\n{seen}"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn an_engine_that_cannot_run_stops_the_server_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    // The hook log directory cannot be created: its parent is a file.
    let not_a_dir = dir.path().join("file");
    std::fs::write(&not_a_dir, "").unwrap();
    let (_, mut serve) = serve_on_sqlite(dir.path());
    let mut child = serve
        .env("COPR_POOLS_LOG_DIR", not_a_dir.join("logs"))
        .env("COPR_POOLS_LOG", "info")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = exited(
        &mut child,
        Duration::from_secs(30),
        "the server kept running without its engine",
    )
    .await;
    assert!(!status.success(), "{status:?}");
    let mut log = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut log).unwrap();
    assert!(
        log.contains("the allocation engine stopped") && log.contains("log_dir"),
        "{log}"
    );
}

#[test]
fn a_plain_http_redirect_off_this_machine_stops_startup() {
    let out = bin()
        .env("COPR_POOLS_OIDC_CLIENT_ID", "copr-pools")
        .env("COPR_POOLS_OIDC_CLIENT_SECRET", "x")
        .env(
            "COPR_POOLS_OIDC_REDIRECT_URL",
            "http://pools.example.org/auth/callback",
        )
        .arg("serve")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("`oidc_redirect_url`") && err.contains("https"),
        "{err}"
    );
}

#[tokio::test]
async fn importing_a_command_with_an_inline_secret_warns_and_keeps_it_as_written() {
    let t = crate::support::TestDb::new(crate::support::Kind::Sqlite).await;
    let file = t.dir.path().join("pools.yaml");
    std::fs::write(
        &file,
        "os:\n  tags: [copr_builder]\n  cmd_new: spawn --os-password hunter2\n  cmd_delete: delete\n",
    )
    .unwrap();
    let out = crate::support::copr_pools(&t, &[])
        .args(["pools", "import"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("warning: pool \"os\": cmd_new appears to carry a secret inline (the option --os-password)"),
        "{err}"
    );
    let (pools, _) = copr_pools::pools::load_all(&t.db).await.unwrap();
    assert_eq!(pools[0].cmd_new, "spawn --os-password hunter2");
    t.cleanup().await;
}

#[tokio::test]
async fn the_embedded_default_makes_its_key_once_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..2 {
        let (_, log) = serve_until_ready(dir.path(), &[]).await;
        let created = log.contains("created a key for stored secrets");
        assert_eq!(created, round == 0, "round {round}: {log}");
        let key = std::fs::read_to_string(dir.path().join("data/secret.key")).unwrap();
        let key = key.lines().find(|l| !l.starts_with('#')).unwrap();
        assert!(
            !log.contains(key.split(':').nth(1).unwrap()),
            "the key is not logged"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("data/secret.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[tokio::test]
async fn postgres_without_a_key_does_not_start_and_names_the_setting() {
    if !crate::support::postgres_available().await {
        return;
    }
    let t = crate::support::TestDb::new(crate::support::Kind::Postgres).await;
    let out = crate::support::copr_pools(&t, &[])
        .env_remove("COPR_POOLS_SECRET_KEYS")
        .arg("serve")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("secret_keys_file") && err.contains("copr-pools key generate"),
        "{err}"
    );
    t.cleanup().await;
}

#[tokio::test]
async fn keys_are_generated_unreadable_secrets_reported_at_startup_and_rotation_counts() {
    crate::support::each_db(|t| async move {
        use crate::support::{Server, copr_pools};
        // A credential sealed with the test key.
        crate::credentials::create_aws(&t, crate::credentials::AWS_SECRET).await;

        let generated = copr_pools(&t, &[])
            .args(["key", "generate"])
            .output()
            .unwrap();
        let new_key = String::from_utf8(generated.stdout)
            .unwrap()
            .trim()
            .to_string();
        assert!(
            new_key.starts_with('k') && new_key.contains(':'),
            "{new_key}"
        );
        let new_id = new_key.split(':').next().unwrap().to_string();

        // Started with only the new key: the server says which credential it cannot read.
        let (web, rpc) = (free_port(), free_port());
        let env = vec![
            ("COPR_POOLS_LISTEN".to_string(), format!("127.0.0.1:{web}")),
            (
                "COPR_POOLS_XMLRPC_LISTEN".to_string(),
                format!("127.0.0.1:{rpc}"),
            ),
            ("COPR_POOLS_SECRET_KEYS".to_string(), new_key.clone()),
            ("COPR_POOLS_LOG".to_string(), "error".to_string()),
        ];
        let mut child = copr_pools(&t, &env)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let client = copr_pools::bench::RpcClient::new(&format!("http://127.0.0.1:{rpc}/RPC2"));
        crate::support::answering(&client).await;
        // SAFETY: signals our own child.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        exited(&mut child, Duration::from_secs(15), "no exit after SIGTERM").await;
        let mut log = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut log).unwrap();
        assert!(
            log.contains("cannot be decrypted")
                && log.contains("team-a/aws-main")
                && log.contains("key_id=test"),
            "{log}"
        );

        // Rotation with the new key first re-seals it; then the new key alone reads it.
        let both = format!("{new_key},{}", crate::support::TEST_KEY);
        let out = copr_pools(&t, &[("COPR_POOLS_SECRET_KEYS".into(), both.clone())])
            .args(["key", "rotate"])
            .output()
            .unwrap();
        let said = String::from_utf8(out.stdout).unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            said.trim(),
            format!("re-encrypted 1 secret(s) with key {new_id}; 0 already were")
        );
        let again = copr_pools(&t, &[("COPR_POOLS_SECRET_KEYS".into(), both)])
            .args(["key", "rotate"])
            .output()
            .unwrap();
        assert!(
            String::from_utf8(again.stdout)
                .unwrap()
                .contains("re-encrypted 0 secret(s)")
        );
        let env_new = vec![
            ("COPR_POOLS_LISTEN".to_string(), format!("127.0.0.1:{web}")),
            (
                "COPR_POOLS_XMLRPC_LISTEN".to_string(),
                format!("127.0.0.1:{rpc}"),
            ),
            ("COPR_POOLS_SECRET_KEYS".to_string(), new_key.clone()),
        ];
        let server = Server::start(&t, &env_new, &client).await;
        server.stop();
        let keyring =
            copr_pools::secrets::Keyring::parse(&[copr_pools::config::Secret::new(new_key)])
                .unwrap();
        let v = copr_pools::credentials::Vault::new(t.db.clone(), std::sync::Arc::new(keyring));
        assert!(v.unreadable().await.unwrap().is_empty());
    })
    .await;
}

#[tokio::test]
async fn sighup_reloads_pools_file_without_dropping_tickets() {
    crate::support::each_db(|t| async move {
        use copr_pools::engine::tickets;

        use crate::support::{Server, copr_pools};
        let (web, rpc) = (free_port(), free_port());
        let pools = t.dir.path().join("pools.yaml");
        let one = "reload:\n  max: 1\n  max_prealloc: 1\n  tags: [copr_builder]\n  \
                   cmd_new: echo 10.0.0.1\n  cmd_delete: 'true'\n";
        std::fs::write(&pools, one).unwrap();
        let conf = t.dir.path().join("copr-pools.toml");
        std::fs::write(&conf, format!("pools_file = {:?}\n", pools.display().to_string())).unwrap();
        let env: Vec<(String, String)> = vec![
            ("COPR_POOLS_LISTEN".into(), format!("127.0.0.1:{web}")),
            ("COPR_POOLS_XMLRPC_LISTEN".into(), format!("127.0.0.1:{rpc}")),
            ("COPR_POOLS_CONFIG".into(), conf.display().to_string()),
        ];
        let client = copr_pools::bench::RpcClient::new(&format!("http://127.0.0.1:{rpc}/RPC2"));
        let mut server = Server::start(&t, &env, &client).await;
        let ticket = i64::from(client.take(&["copr_builder"], "a/b--c").await.unwrap());
        let db = t.db.clone();
        let ready = || {
            let db = db.clone();
            async move {
                tickets::collect(&db, ticket)
                    .await
                    .unwrap()
                    .filter(|v| v.ready())
            }
        };
        eventually("the ticket to get a machine", Duration::from_secs(30), ready).await;

        // A new pool and a higher max, on SIGHUP.
        std::fs::write(
            &pools,
            one.replace("max: 1", "max: 2")
                + "second:\n  max: 1\n  tags: [copr_builder]\n  cmd_new: 'true'\n  cmd_delete: 'true'\n",
        )
        .unwrap();
        let hup = || {
            // SAFETY: sends SIGHUP to our own child process.
            unsafe { libc::kill(server.child.id() as i32, libc::SIGHUP) };
        };
        hup();
        let max_of = |name: &'static str| {
            let db = db.clone();
            async move {
                let (pools, _) = copr_pools::pools::load_all(&db).await.unwrap();
                pools.iter().find(|p| p.name == name).map(|p| p.max)
            }
        };
        eventually("the reload to import the pools", Duration::from_secs(30), || async {
            (max_of("reload").await == Some(2) && max_of("second").await == Some(1)).then_some(())
        })
        .await;
        let view = tickets::collect(&db, ticket).await.unwrap().unwrap();
        assert!(view.ready(), "the ticket keeps its machine across the reload");

        // An admin paused it: a reload changes its definition, not its state.
        copr_pools::pools::set_state(
            &db,
            &copr_pools::audit::Actor::System,
            "reload",
            copr_pools::engine::model::PoolState::Paused,
            Some("incident".into()),
        )
        .await
        .unwrap();
        std::fs::write(&pools, one.replace("max: 1", "max: 3")).unwrap();
        hup();
        eventually("the second reload", Duration::from_secs(30), || async {
            (max_of("reload").await == Some(3)).then_some(())
        })
        .await;
        let (stored, _) = copr_pools::pools::load_all(&db).await.unwrap();
        let reloaded = stored.iter().find(|p| p.name == "reload").unwrap();
        assert_eq!(
            reloaded.state,
            copr_pools::engine::model::PoolState::Paused,
            "still paused"
        );

        // A broken file changes nothing and stops nothing.
        std::fs::write(&pools, "reload:\n  max: [not a number]\n").unwrap();
        hup();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(server.child.try_wait().unwrap().is_none(), "still serving");
        assert_eq!(max_of("reload").await, Some(3));
        let out = copr_pools(&t, &env).args(["ticket", "info", &ticket.to_string()]).output().unwrap();
        assert!(String::from_utf8_lossy(&out.stdout).contains("machine:"));
        server.stop();
    })
    .await;
}
