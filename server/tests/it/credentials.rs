//! Teams' cloud credentials: the forms (errors by field, what was typed kept but secrets),
//! rename, new secret, revoke pausing pools; secrets sealed in the database and never on a
//! page, in a server function's answer or in the audit log; hooks get them only while they
//! run; a fake cloud that checks them.

use std::collections::BTreeMap;
use std::time::Duration;

use copr_pools::audit::Actor;
use copr_pools::engine::Engine;
use copr_pools::engine::model::{PoolConfig, PoolState, Tag};
use copr_pools::entities::{audit_events, credential_secrets, pools};
use sea_orm::{ConnectionTrait, EntityTrait, Statement};
use tokio_util::sync::CancellationToken;

use crate::auth::dev_config;
use crate::support::{Browser, TestApp, TestDb, each_db, engine_settings, eventually, vault};

pub const AWS_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
pub const OS_SECRET: &str = "app-cred-secret-Zq8vN3kR";
pub const OS_PASSWORD: &str = "os-password-Tm4pW9xL";
pub const IBM_KEY: &str = "ibm-api-key-0123456789abcdefghijKLMNOPQRSTUV";
/// A throwaway key made for these tests (ssh-keygen -t ed25519 -N '').
pub const SSH_KEY: &str = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
QyNTUxOQAAACBCA67dYkbbWqs6A36dndI0NrB64yqMOQ5M2mJQ/s6wkAAAAJh3EdC0dxHQ
tAAAAAtzc2gtZWQyNTUxOQAAACBCA67dYkbbWqs6A36dndI0NrB64yqMOQ5M2mJQ/s6wkA
AAAEC3huHkZV27YzoAIvf7SEsz8NAotFgDUAmdMs+7Q1uBOkIDrt1iRttaqzoDfp2d0jQ2
sHrjKow5DkzaYlD+zrCQAAAAD3Rlc3RAY29wci1wb29scwECAwQFBg==
-----END OPENSSH PRIVATE KEY-----";
pub const HOST_LINE: &str = "vmhost.example.org ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEIDrt1iRttaqzoDfp2d0jQ2sHrjKow5DkzaYlD+zrCQ";

/// Pieces of every secret above that must never show up outside the sealed column.
pub fn needles() -> Vec<&'static str> {
    vec![
        "wJalrXUtnFEMI",
        "app-cred-secret-Zq8vN3kR",
        "os-password-Tm4pW9xL",
        "ibm-api-key-0123456789",
        // The private part of the SSH key (its middle lines).
        "AAAAEC3huHkZV27YzoAIvf7SEsz8",
        "huHkZV27YzoAIvf7SEsz8NAotFgDUAmdMs",
    ]
}

/// A kind's form filled in: (kind, variant, name, fields).
pub type Filled = (
    &'static str,
    &'static str,
    &'static str,
    Vec<(&'static str, &'static str)>,
);

/// Every kind's form, filled in validly.
pub fn every_kind() -> Vec<Filled> {
    vec![
        (
            "aws",
            "",
            "aws-main",
            vec![
                ("access_key_id", "AKIAIOSFODNN7EXAMPLE"),
                ("secret_access_key", AWS_SECRET),
                ("region", "us-east-1"),
            ],
        ),
        (
            "openstack",
            "application_credential",
            "osuosl",
            vec![
                ("auth_url", "https://keystone.example.org:5000/v3"),
                ("region", "RegionOne"),
                (
                    "application_credential_id",
                    "0123456789abcdef0123456789abcdef",
                ),
                ("application_credential_secret", OS_SECRET),
            ],
        ),
        (
            "openstack",
            "password",
            "osuosl-password",
            vec![
                ("auth_url", "https://keystone.example.org:5000/v3"),
                ("region", "RegionOne"),
                ("username", "copr"),
                ("password", OS_PASSWORD),
                ("project_name", "copr"),
                ("user_domain_name", "Default"),
                ("project_domain_name", "Default"),
            ],
        ),
        (
            "ibmcloud",
            "",
            "ibm-us-east",
            vec![("api_key", IBM_KEY), ("region", "us-east")],
        ),
        (
            "libvirt",
            "",
            "vmhost",
            vec![
                ("uri", "qemu+ssh://copr@vmhost.example.org/system"),
                ("ssh_private_key", SSH_KEY),
                ("known_hosts", HOST_LINE),
            ],
        ),
    ]
}

/// Posts the "add a credential" form as a browser does; returns the redirect target.
pub async fn add(
    b: &mut Browser<'_>,
    team: &str,
    kind: &str,
    variant: &str,
    name: &str,
    fields: &[(&str, &str)],
) -> String {
    let token = b
        .form_token(&format!("/teams/{team}/credentials/new"))
        .await;
    let mut form = vec![
        ("csrf_token", token.as_str()),
        ("kind", kind),
        ("variant", variant),
        ("name", name),
    ];
    form.extend_from_slice(fields);
    let (status, headers, body) = b
        .post_form(&format!("/teams/{team}/credentials"), &form)
        .await;
    assert_eq!(status, 303, "{body}");
    headers["location"].to_str().unwrap().to_string()
}

fn assert_clean(what: &str, text: &str) {
    for n in needles() {
        assert!(!text.contains(n), "a secret ({n}) is in {what}:\n{text}");
    }
}

#[tokio::test]
async fn a_member_adds_renames_replaces_and_revokes_a_credential_through_its_forms() {
    each_db(|t| async move {
        let app = TestApp::with_config(&t, dev_config()).await;
        let mut b = Browser::new(&app);
        b.dev_sign_in("alice", &["team-a"]).await;

        let (_, _, html) = b.get("/teams/team-a").await;
        assert!(
            html.contains(r#"data-testid="no-credentials""#),
            "the empty state says what to do"
        );
        let (_, _, html) = b.get("/teams/team-a/credentials/new").await;
        for title in [
            "Amazon Web Services",
            "OpenStack: application credential",
            "IBM Cloud",
            "libvirt over SSH",
        ] {
            assert!(html.contains(title), "{title} offered");
        }
        assert!(
            !html.contains("Local demo"),
            "the demo kind only where demo spawners are on"
        );

        // A bad submission: errors by field, what was typed kept, the secret not.
        let back = add(
            &mut b,
            "team-a",
            "aws",
            "",
            "aws main",
            &[
                ("access_key_id", "AKIA-not-a-key"),
                ("secret_access_key", AWS_SECRET),
                ("region", "Virginia"),
            ],
        )
        .await;
        assert_eq!(back, "/teams/team-a/credentials/new?kind=aws");
        let (_, _, html) = b.get(&back).await;
        assert!(html.contains(r#"data-testid="form-errors""#), "{html}");
        assert!(html.contains("3 fields need fixing"), "{html}");
        assert!(html.contains(r#"data-testid="secrets-cleared""#));
        for kept in [
            r#"value="aws main""#,
            r#"value="AKIA-not-a-key""#,
            r#"value="Virginia""#,
        ] {
            assert!(html.contains(kept), "{kept} was kept");
        }
        assert!(
            html.contains(r#"id="f-access_key_id-error""#) && html.contains("starting with AKIA")
        );
        assert!(html.contains(r#"aria-invalid="true""#));
        assert_clean("the form that came back", &html);
        // Shown once: a reload has a fresh form.
        let (_, _, html) = b.get(&back).await;
        assert!(!html.contains("form-errors"));

        let created = add(
            &mut b,
            "team-a",
            "aws",
            "",
            "aws-main",
            &[
                ("access_key_id", "AKIAIOSFODNN7EXAMPLE"),
                ("secret_access_key", AWS_SECRET),
                ("region", "us-east-1"),
            ],
        )
        .await;
        assert_eq!(created, "/teams/team-a/credentials/1");
        let (_, _, html) = b.get(&created).await;
        assert!(
            html.contains("Added the AWS credential aws-main."),
            "{html}"
        );
        assert!(html.contains("…EKEY") && html.contains("AKIAIOSFODNN7EXAMPLE"));
        assert_clean("the credential page", &html);
        let fingerprint = copr_pools::entities::credentials::Entity::find_by_id(1)
            .one(&t.db)
            .await
            .unwrap()
            .unwrap()
            .fingerprint;
        assert!(html.contains(&fingerprint));

        // The name is unique among live credentials.
        let dup = add(
            &mut b,
            "team-a",
            "ibmcloud",
            "",
            "aws-main",
            &[("api_key", IBM_KEY), ("region", "us-east")],
        )
        .await;
        let (_, _, html) = b.get(&dup).await;
        assert!(html.contains("already has a credential named"), "{html}");

        // Rename, then a new secret: the old ciphertext is gone.
        let token = b.form_token(&created).await;
        b.post_form(
            &format!("{created}/rename"),
            &[("csrf_token", &token), ("name", "aws-prod")],
        )
        .await;
        let before: Vec<_> = credential_secrets::Entity::find().all(&t.db).await.unwrap();
        let (_, h, _) = b
            .post_form(
                &format!("{created}/secret"),
                &[
                    ("csrf_token", &token),
                    (
                        "secret_access_key",
                        "Zy9xW8vU7tS6rQ5pO4nM3lK2jI1hG0fEdCbA+/zz",
                    ),
                ],
            )
            .await;
        assert_eq!(h["location"], created);
        let (_, _, html) = b.get(&created).await;
        assert!(
            html.contains("Renamed") || html.contains("The secret was replaced"),
            "{html}"
        );
        assert!(
            html.contains("aws-prod") && html.contains("…+/zz"),
            "{html}"
        );
        let after: Vec<_> = credential_secrets::Entity::find().all(&t.db).await.unwrap();
        assert_eq!(after.len(), 1);
        assert_ne!(
            before[0].sealed, after[0].sealed,
            "the old ciphertext is gone"
        );
        assert!(
            !html.contains(&fingerprint),
            "a new secret has a new fingerprint"
        );

        // A pool that uses it is paused by the revocation, with the reason on the team page.
        let mut pool = PoolConfig::new("team-a-aws", "true", "true");
        pool.credential_id = Some(1);
        copr_pools::pools::save(&t.db, &[pool], &Actor::System)
            .await
            .unwrap();
        let (_, h, _) = b
            .post_form(&format!("{created}/revoke"), &[("csrf_token", &token)])
            .await;
        let (_, _, html) = b.get(h["location"].to_str().unwrap()).await;
        assert!(
            html.contains("Tick the box to confirm"),
            "revoking asks first"
        );
        b.post_form(
            &format!("{created}/revoke"),
            &[("csrf_token", &token), ("confirm", "yes")],
        )
        .await;
        let (_, _, html) = b.get(&created).await;
        assert!(html.contains("Paused team-a-aws"), "{html}");
        assert!(html.contains(r#"data-testid="revoked""#));
        assert!(
            !html.contains(r#"data-testid="replace-form""#),
            "nothing to change on a revoked credential"
        );
        let p = pools::Entity::find_by_id("team-a-aws")
            .one(&t.db)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(p.state, "paused");
        assert!(
            p.state_reason
                .unwrap()
                .contains("aws-prod was revoked by alice")
        );
        assert!(
            credential_secrets::Entity::find()
                .all(&t.db)
                .await
                .unwrap()
                .is_empty()
        );
        let (_, _, html) = b.get("/teams/team-a").await;
        assert!(
            html.contains("was revoked by alice"),
            "the pool says why it is paused"
        );

        // Every step is in the audit log, without the secret.
        let events: Vec<String> = audit_events::Entity::find()
            .all(&t.db)
            .await
            .unwrap()
            .into_iter()
            .map(|e| format!("{} {} {}", e.action, e.object_id, e.details))
            .collect();
        for action in [
            "credential.create",
            "credential.rename",
            "credential.replace_secret",
            "credential.revoke",
            "pool.pause",
        ] {
            assert!(
                events.iter().any(|e| e.starts_with(action)),
                "{action} missing: {events:?}"
            );
        }
        assert_clean("the audit log", &events.join("\n"));
        assert!(!events.join("\n").contains("Zy9xW8vU7tS6rQ5pO4nM"));
    })
    .await;
}

/// Every table's rows as text (PostgreSQL: `row_to_json`; SQLite: the file itself is read).
async fn database_text(t: &TestDb) -> String {
    let mut out = String::new();
    match &t.settings.schema {
        None => {
            for f in std::fs::read_dir(t.dir.path()).unwrap().flatten() {
                if f.file_name().to_string_lossy().starts_with("test.sqlite") {
                    out.push_str(&String::from_utf8_lossy(&std::fs::read(f.path()).unwrap()));
                }
            }
        }
        Some(schema) => {
            let tables = t
                .db
                .query_all(Statement::from_string(
                    sea_orm::DbBackend::Postgres,
                    format!("SELECT table_name FROM information_schema.tables WHERE table_schema = '{schema}'"),
                ))
                .await
                .unwrap();
            for row in tables {
                let table: String = row.try_get("", "table_name").unwrap();
                for r in
                    t.db.query_all(Statement::from_string(
                        sea_orm::DbBackend::Postgres,
                        format!("SELECT row_to_json(x)::text AS j FROM {schema}.{table} x"),
                    ))
                    .await
                    .unwrap()
                {
                    out.push_str(&r.try_get::<String>("", "j").unwrap());
                    out.push('\n');
                }
            }
        }
    }
    out
}

#[tokio::test]
async fn secrets_of_every_kind_are_sealed_and_on_no_page_no_answer_and_no_audit_event() {
    each_db(|t| async move {
        let app = TestApp::with_config(&t, dev_config()).await;
        let mut alice = Browser::new(&app);
        alice.dev_sign_in("alice", &["team-a"]).await;
        for (kind, variant, name, fields) in every_kind() {
            let to = add(&mut alice, "team-a", kind, variant, name, &fields).await;
            assert!(to.starts_with("/teams/team-a/credentials/"), "{name}: {to}");
            let (_, _, html) = alice.get(&to).await;
            assert!(html.contains("Added the"), "{name}: {html}");
        }
        let (_, _, html) = alice.get("/teams/team-a").await;
        assert!(
            html.contains("SHA256:"),
            "the SSH key's public fingerprint is shown"
        );

        let text = database_text(&t).await;
        assert!(text.contains("aws-main"), "the search reads the data");
        assert_clean("the database", &text);
        let sealed = credential_secrets::Entity::find().all(&t.db).await.unwrap();
        assert_eq!(sealed.len(), 5, "one sealed field per secret");

        let mut admin = Browser::new(&app);
        admin.dev_sign_in("carol", &["copr-admins"]).await;
        for b in [&mut alice, &mut admin] {
            let mut pages = vec![
                "/".to_string(),
                "/teams".into(),
                "/teams/team-a".into(),
                "/teams/team-a/credentials/new".into(),
                "/admin".into(),
            ];
            for id in 1..=5 {
                pages.push(format!("/teams/team-a/credentials/{id}"));
            }
            for p in &pages {
                let (_, _, html) = b.get(p).await;
                assert_clean(p, &html);
            }
            for (path, form) in [
                ("/api/ui/team", vec![("name", "team-a")]),
                ("/api/ui/credentials", vec![("team", "team-a")]),
                (
                    "/api/ui/new_credential",
                    vec![("team", "team-a"), ("kind", "aws")],
                ),
                ("/api/ui/credential", vec![("team", "team-a"), ("id", "5")]),
                ("/api/ui/admin_overview", vec![]),
            ] {
                let (_, _, body) = b.post_form(path, &form).await;
                assert_clean(path, &body);
            }
        }
        let (_, _, html) = admin.get("/admin").await;
        assert!(
            html.contains("credential.create"),
            "the audit log shows the additions"
        );
    })
    .await;
}

#[tokio::test]
async fn another_team_can_neither_see_nor_change_nor_use_a_credential() {
    each_db(|t| async move {
        let app = TestApp::with_config(&t, dev_config()).await;
        let mut alice = Browser::new(&app);
        alice.dev_sign_in("alice", &["team-a"]).await;
        let (kind, variant, name, fields) = every_kind().remove(0);
        add(&mut alice, "team-a", kind, variant, name, &fields).await;
        let mut bob = Browser::new(&app);
        bob.dev_sign_in("bob", &["team-b"]).await;
        let token = bob.form_token("/teams/team-b/credentials/new").await;
        for (path, form) in [
            (
                "/teams/team-a/credentials/1/rename",
                vec![("csrf_token", token.as_str()), ("name", "mine")],
            ),
            (
                "/teams/team-a/credentials/1/revoke",
                vec![("csrf_token", token.as_str()), ("confirm", "yes")],
            ),
            (
                "/teams/team-a/credentials/1/secret",
                vec![
                    ("csrf_token", token.as_str()),
                    ("secret_access_key", AWS_SECRET),
                ],
            ),
        ] {
            let (status, _, _) = bob.post_form(path, &form).await;
            assert_eq!(status, 403, "{path}");
        }
        // Naming team-a's credential under his own team finds nothing.
        for path in [
            "/teams/team-b/credentials/1/rename",
            "/teams/team-b/credentials/1/revoke",
        ] {
            let (status, _, body) = bob
                .post_form(
                    path,
                    &[("csrf_token", &token), ("name", "mine"), ("confirm", "yes")],
                )
                .await;
            assert_eq!(status, 404, "{path}: {body}");
        }
        let (status, _, _) = bob.get("/teams/team-b/credentials/1").await;
        assert_eq!(status, 404);
        let (_, _, html) = alice.get("/teams/team-a/credentials/1").await;
        assert!(
            html.contains("aws-main") && !html.contains("data-testid=\"revoked\""),
            "unchanged"
        );
        // And a pool of team-b cannot be given team-a's credential.
        let mut pool = PoolConfig::new("team-b-pool", "true", "true");
        pool.owner_team_id = copr_pools::accounts::team(&t.db, "team-b")
            .await
            .unwrap()
            .map(|t| t.id);
        pool.credential_id = Some(1);
        let e = copr_pools::pools::save(&t.db, &[pool], &Actor::System)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("belongs to another team"), "{e}");
    })
    .await;
}

/// A pool on the fake cloud that uses credential `id`.
fn fake_pool_with(t: &TestDb, id: i32) -> PoolConfig {
    let mut p = crate::engine::fake_pool("team-a-aws", &t.dir.path().join("cloud"), "");
    p.tags = vec![Tag::new("copr_builder", 0)];
    p.max_prealloc = 1;
    p.max = 2;
    p.credential_id = Some(id);
    p
}

async fn run_engine(t: &TestDb) -> (Engine, CancellationToken) {
    let mut settings = engine_settings(t.dir.path());
    settings.hooks.credentials = Some(std::sync::Arc::new(vault(t)));
    settings.hooks.secrets_dir = t.dir.path().join("data/hook-secrets");
    let engine = Engine::new(t.db.clone(), settings);
    let stop = CancellationToken::new();
    let (e, s) = (engine.clone(), stop.clone());
    tokio::spawn(async move { e.run(s).await });
    (engine, stop)
}

/// alice of team-a, and team-a's AWS credential `aws-main` with this secret.
pub async fn create_aws(t: &TestDb, secret: &str) -> i32 {
    copr_pools::accounts::sign_in(
        &t.db,
        &copr_pools::accounts::Identity {
            sub: "dev:alice".into(),
            username: "alice".into(),
            display_name: None,
            email: None,
            groups: vec!["team-a".into()],
        },
        &copr_pools::accounts::GroupPolicy {
            admin_groups: vec![],
            team_groups: copr_pools::config::TeamGroups::All,
        },
    )
    .await
    .unwrap();
    let fields: BTreeMap<String, String> = [
        ("access_key_id", "AKIAIOSFODNN7EXAMPLE"),
        ("secret_access_key", secret),
        ("region", "us-east-1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    vault(t)
        .create(
            &Actor::User("alice".into()),
            "team-a",
            copr_pools::credentials::NewCredential {
                kind: "aws",
                variant: None,
                name: "aws-main",
                input: &fields,
            },
            false,
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn a_hook_gets_the_secret_only_while_it_runs_and_never_on_its_command_line_or_in_its_log() {
    let t = TestDb::new(crate::support::Kind::Sqlite).await;
    let id = create_aws(&t, AWS_SECRET).await;
    let dumps = t.dir.path().join("dumps");
    std::fs::create_dir_all(&dumps).unwrap();
    let gate = t.dir.path().join("gate");
    let mut pool = PoolConfig::new(
        "team-a-aws",
        format!(
            "echo $$ > {d}/pid; env > {d}/env; cat \"$AWS_SHARED_CREDENTIALS_FILE\" > {d}/file; \
             stat -c %a \"$AWS_SHARED_CREDENTIALS_FILE\" \"$(dirname \"$AWS_SHARED_CREDENTIALS_FILE\")\" > {d}/modes; \
             while [ ! -e {gate} ]; do sleep 0.05; done; echo 10.0.0.1",
            d = dumps.display(),
            gate = gate.display()
        ),
        "true",
    );
    pool.tags = vec![Tag::new("copr_builder", 0)];
    pool.max_prealloc = 1;
    pool.credential_id = Some(id);
    copr_pools::pools::save(&t.db, &[pool], &Actor::System)
        .await
        .unwrap();
    let (engine, stop) = run_engine(&t).await;

    let modes = dumps.join("modes");
    eventually("cmd_new to run", Duration::from_secs(30), || {
        let m = modes.clone();
        async move {
            std::fs::read_to_string(&m)
                .ok()
                .filter(|s| s.lines().count() == 2)
        }
    })
    .await;
    // While it runs: the secret is in its environment and a 0600 file in a 0700 directory,
    // but not on its command line.
    let pid = std::fs::read_to_string(dumps.join("pid")).unwrap();
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", pid.trim())).unwrap();
    assert!(
        !String::from_utf8_lossy(&cmdline).contains("wJalrXUtnFEMI"),
        "the secret is on the command line"
    );
    let env = std::fs::read_to_string(dumps.join("env")).unwrap();
    assert!(
        env.contains(&format!("AWS_SECRET_ACCESS_KEY={AWS_SECRET}")),
        "{env}"
    );
    assert!(env.contains("AWS_DEFAULT_REGION=us-east-1"));
    let file = std::fs::read_to_string(dumps.join("file")).unwrap();
    assert!(file.contains(&format!("aws_secret_access_key = {AWS_SECRET}")));
    assert_eq!(std::fs::read_to_string(&modes).unwrap(), "600\n700\n");

    std::fs::write(&gate, "").unwrap();
    let e = engine.clone();
    eventually("the hook to end", Duration::from_secs(30), || {
        let running = e.stats().hooks_running;
        let up = t.db.clone();
        async move {
            let machines = copr_pools::resources::list(&up, true).await.unwrap();
            (running == 0 && !machines.is_empty()).then_some(())
        }
    })
    .await;
    stop.cancel();
    // After it: nothing left in the data directory, nothing in the logs.
    let secrets_dir = t.dir.path().join("data/hook-secrets");
    assert_eq!(
        std::fs::read_dir(&secrets_dir).unwrap().count(),
        0,
        "the credential files are gone"
    );
    for dir in [t.dir.path().join("data"), t.dir.path().join("logs")] {
        for f in walk(&dir) {
            let text = String::from_utf8_lossy(&std::fs::read(&f).unwrap()).into_owned();
            assert_clean(&f.display().to_string(), &text);
        }
    }
    let c = vault(&t).view("team-a", id).await.unwrap();
    assert!(
        c.last_used_at.is_some(),
        "the page tells when a hook last used it"
    );
    t.cleanup().await;
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

#[tokio::test]
async fn the_cloud_refuses_starts_with_a_wrong_or_revoked_credential_and_the_log_says_why() {
    each_db(|t| async move {
        let id = create_aws(&t, AWS_SECRET).await;
        let cloud = t.dir.path().join("cloud");
        std::fs::create_dir_all(&cloud).unwrap();
        std::fs::write(
            cloud.join("account"),
            format!("AWS_SECRET_ACCESS_KEY={AWS_SECRET}"),
        )
        .unwrap();
        copr_pools::pools::save(&t.db, &[fake_pool_with(&t, id)], &Actor::System)
            .await
            .unwrap();
        let (_engine, stop) = run_engine(&t).await;
        let db = t.db.clone();
        eventually(
            "a machine on the team's account",
            Duration::from_secs(30),
            || {
                let db = db.clone();
                async move {
                    (!copr_pools::resources::list(&db, true)
                        .await
                        .unwrap()
                        .is_empty())
                    .then_some(())
                }
            },
        )
        .await;

        // The team rotates its key at the cloud but pastes a wrong one here.
        let fields: BTreeMap<String, String> = [(
            "secret_access_key".to_string(),
            "Zy9xW8vU7tS6rQ5pO4nM3lK2jI1hG0fEdCbA+/zz".to_string(),
        )]
        .into();
        vault(&t)
            .replace_secret(&Actor::User("alice".into()), "team-a", id, &fields)
            .await
            .unwrap();
        let mut bigger = fake_pool_with(&t, id);
        bigger.max_prealloc = 2;
        copr_pools::pools::save(&t.db, &[bigger], &Actor::System)
            .await
            .unwrap();
        let logs = t.dir.path().join("logs/hooks");
        let refused = eventually("a refused start", Duration::from_secs(30), || {
            let logs = logs.clone();
            async move {
                walk(&logs)
                    .into_iter()
                    .filter_map(|f| std::fs::read_to_string(f).ok())
                    .find(|l| l.contains("is not valid for this account"))
            }
        })
        .await;
        assert!(
            refused.contains("AWS_SECRET_ACCESS_KEY is not valid"),
            "{refused}"
        );

        // Revoked: the pool is paused; the secret stays only to delete the machine started
        // with it, and goes with that machine.
        let paused = vault(&t)
            .revoke(&Actor::User("alice".into()), "team-a", id)
            .await
            .unwrap();
        assert_eq!(paused, vec!["team-a-aws"]);
        let mut p = copr_pools::pools::load_all(&t.db)
            .await
            .unwrap()
            .0
            .remove(0);
        assert_eq!(p.state, PoolState::Paused);
        assert!(
            !credential_secrets::Entity::find()
                .all(&t.db)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            vault(&t).purge_revoked().await.unwrap(),
            Vec::<String>::new()
        );
        p.state = PoolState::Draining;
        copr_pools::pools::save(&t.db, &[p], &Actor::System)
            .await
            .unwrap();
        let db = t.db.clone();
        eventually(
            "the machines to be deleted",
            Duration::from_secs(30),
            || {
                let db = db.clone();
                async move {
                    copr_pools::resources::list(&db, false)
                        .await
                        .unwrap()
                        .is_empty()
                        .then_some(())
                }
            },
        )
        .await;
        assert_eq!(
            vault(&t).purge_revoked().await.unwrap(),
            vec!["team-a/aws-main"]
        );
        assert!(
            credential_secrets::Entity::find()
                .all(&t.db)
                .await
                .unwrap()
                .is_empty()
        );
        let deletes = walk(&logs)
            .into_iter()
            .filter(|f| f.to_string_lossy().ends_with("_terminate"))
            .map(|f| std::fs::read_to_string(f).unwrap())
            .collect::<String>();
        assert!(
            !deletes.contains("does not run"),
            "deletes got the credential: {deletes}"
        );
        stop.cancel();
    })
    .await;
}
