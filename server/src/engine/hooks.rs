//! Running pool hooks (`cmd_new`, `cmd_delete`, …) the way resalloc does, so existing spawner
//! scripts work unchanged: `sh -c` with the `RESALLOC_*` variables, standard output and error
//! appended to `hooks/<id, 6 digits>_<kind>` under the log directory, and the start of
//! `cmd_new`'s output captured as the machine's data.
//!
//! Unlike resalloc, a hook does not inherit the server's environment, which holds the
//! database URL, the OIDC client secret and every other `COPR_POOLS_*` setting: it starts from
//! an allow-list ([`HookEnv`]). Every hook has a timeout, and a hook can be cancelled; both
//! kill the hook's whole process group. Pool-wide hooks (`cmd_list`, deleting machines the
//! engine does not know) log to one rotated file per pool. Secrets reach hooks only through
//! their environment, never their command line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

use super::model::{HookKind, HookResult};

/// Set in every hook's environment to `copr-pools:<absolute log dir>`, so that the hooks (and
/// whatever they started) of a server that died can be found and stopped before its machines
/// are cleaned up.
pub const HOOK_MARKER: &str = "RESALLOC_SERVER";

/// How much of `cmd_new`'s standard output becomes the machine's data (resalloc: 512 bytes).
pub const NEW_CAPTURE_BYTES: usize = 512;
/// How much of `cmd_list`'s standard output is read (resalloc: 5120 bytes).
pub const LIST_CAPTURE_BYTES: usize = 5120;
/// A pool-wide hook log is rotated when it grows past this size.
pub const POOL_LOG_ROTATE_BYTES: u64 = 1024 * 1024;
/// How many rotated generations of a pool-wide hook log are kept (`.1` is the newest).
pub const POOL_LOG_GENERATIONS: u32 = 3;

/// Variables of the server's own environment that every hook gets: what a shell and the
/// standard spawner scripts need to find programs, a home, a locale and a temporary
/// directory. `LC_*` variables pass too.
pub const HOOK_ENV_ALLOWED: &[&str] = &["PATH", "HOME", "LANG", "LANGUAGE", "TMPDIR", "TZ"];

/// The part of the server's environment a hook starts from: the variables in
/// [`HOOK_ENV_ALLOWED`], `LC_*`, and the operator's `hook_env_passthrough` names (exact, or
/// `PREFIX*`). Nothing named `COPR_POOLS_*` ever passes, whatever the list says.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct HookEnv {
    vars: Vec<(String, String)>,
}

impl std::fmt::Debug for HookEnv {
    // Passed-through values may be proxies with passwords: show the names only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.vars.iter().map(|(k, _)| k))
            .finish()
    }
}

impl HookEnv {
    /// Picks the allowed variables out of this process's environment.
    pub fn from_process(passthrough: &[String]) -> HookEnv {
        HookEnv::select(
            std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
            passthrough,
        )
    }

    /// Picks the allowed variables out of `vars`.
    pub fn select(
        vars: impl IntoIterator<Item = (String, String)>,
        passthrough: &[String],
    ) -> HookEnv {
        let wanted = |name: &str| {
            HOOK_ENV_ALLOWED.contains(&name)
                || name.starts_with("LC_")
                || passthrough.iter().any(|p| match p.strip_suffix('*') {
                    Some(prefix) => name.starts_with(prefix),
                    None => name == p,
                })
        };
        let mut vars: Vec<(String, String)> = vars
            .into_iter()
            .filter(|(k, _)| !k.starts_with(crate::config::ENV_PREFIX) && wanted(k))
            .collect();
        vars.sort();
        HookEnv { vars }
    }

    /// The variables, sorted by name.
    pub fn vars(&self) -> &[(String, String)] {
        &self.vars
    }
}

/// Hands a hook the credential its pool uses. Implemented by the credentials module; the
/// engine only knows credentials by id.
#[async_trait::async_trait]
pub trait HookCredentials: Send + Sync {
    /// Writes the credential's files into `dir` (a fresh 0700 directory the hook runner
    /// removes when the hook ends) and returns the variables the hook gets. The error says
    /// why not, in words fit for the hook's log (never a secret). A revoked credential is
    /// refused to `cmd_new` but still handed to the hooks that clean up after it.
    async fn materialize(
        &self,
        credential_id: i32,
        kind: HookKind,
        dir: &Path,
    ) -> Result<Vec<(String, String)>, String>;
}

/// What every hook of an engine shares.
#[derive(Clone)]
pub struct HookContext {
    /// Where `hooks/<id>_<kind>` logs go.
    pub log_dir: PathBuf,
    /// The part of the server's environment that hooks get.
    pub env: HookEnv,
    /// Where the short-lived credential files of running hooks go, one 0700 directory per
    /// hook; emptied at startup after a crash.
    pub secrets_dir: PathBuf,
    /// Where credentials come from, when pools use them.
    pub credentials: Option<Arc<dyn HookCredentials>>,
}

impl std::fmt::Debug for HookContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookContext")
            .field("log_dir", &self.log_dir)
            .field("env", &self.env)
            .field("secrets_dir", &self.secrets_dir)
            .field("credentials", &self.credentials.is_some())
            .finish()
    }
}

impl HookContext {
    /// Logs under `log_dir`, credential files in `hook-secrets` beside it, no credentials,
    /// and the allowed part of this process's environment.
    pub fn new(log_dir: impl Into<PathBuf>) -> HookContext {
        let log_dir = log_dir.into();
        let secrets_dir = log_dir
            .parent()
            .map_or_else(|| PathBuf::from("hook-secrets"), |p| p.join("hook-secrets"));
        HookContext {
            log_dir,
            env: HookEnv::from_process(&[]),
            secrets_dir,
            credentials: None,
        }
    }
}

/// Removes what hooks of a previous process left in `secrets_dir` (a crash or `kill -9`
/// skips their cleanup). Returns how many directories went.
pub fn sweep_secrets(secrets_dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(secrets_dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| std::fs::remove_dir_all(e.path()).is_ok())
        .count()
}

/// A hook's credential directory, removed however the hook ends.
struct SecretsDir(PathBuf);

impl SecretsDir {
    fn create(root: &Path) -> std::io::Result<SecretsDir> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)?;
        let dir = root.join(uuid::Uuid::new_v4().simple().to_string());
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        Ok(SecretsDir(dir))
    }
}

impl Drop for SecretsDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            tracing::error!(dir = %self.0.display(), error = %e, "cannot remove a hook's credential files");
        }
    }
}

/// Everything needed to run one hook.
#[derive(Debug, Clone)]
pub struct HookSpec {
    pub kind: HookKind,
    pub command: String,
    pub pool: String,
    /// The machine id; 0 for `cmd_list` and for deleting unknown machines (as resalloc).
    pub resource_id: i64,
    pub name: Option<String>,
    pub id_in_pool: Option<u32>,
    pub counters: Vec<(String, u32)>,
    /// `cmd_new`'s captured output, handed to later hooks base64-encoded.
    pub data: Option<Vec<u8>>,
    pub timeout: Duration,
    /// Extra environment, added after the `RESALLOC_*` ones.
    pub extra_env: BTreeMap<String, String>,
    /// The credential of the hook's pool, handed over by [`HookContext::credentials`].
    pub credential: Option<i32>,
}

/// What a hook did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookRun {
    pub result: HookRunResult,
    pub stdout: Vec<u8>,
    pub took: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookRunResult {
    Finished(HookResult),
    Cancelled,
    /// The hook could not be started at all (its log could not be opened, `sh` could not be
    /// spawned): nothing it would have done happened.
    NotStarted,
}

impl HookSpec {
    /// The variables the hook gets on top of [`HookEnv`] (resalloc's `command_env`).
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("RESALLOC_ID".to_string(), self.resource_id.to_string()),
            (
                "RESALLOC_NAME".to_string(),
                self.name.clone().unwrap_or_else(|| "None".into()),
            ),
            ("RESALLOC_POOL_ID".to_string(), self.pool.clone()),
            (
                "RESALLOC_ID_IN_POOL".to_string(),
                self.id_in_pool
                    .map_or_else(|| "None".to_string(), |i| i.to_string()),
            ),
        ];
        if let Some(data) = &self.data {
            env.push((
                "RESALLOC_RESOURCE_DATA".to_string(),
                base64::engine::general_purpose::STANDARD.encode(data),
            ));
        }
        for (name, value) in &self.counters {
            env.push((format!("RESALLOC_NAMED_COUNTER_{name}"), value.to_string()));
        }
        env.extend(self.extra_env.iter().map(|(k, v)| (k.clone(), v.clone())));
        env
    }

    fn capture_limit(&self) -> Option<usize> {
        match self.kind {
            HookKind::New => Some(NEW_CAPTURE_BYTES),
            HookKind::List => Some(LIST_CAPTURE_BYTES),
            _ => None,
        }
    }

    /// Where the hook's output goes: the machine's own log, or for a pool-wide hook (no
    /// machine id) the pool's rotated `list_<pool>` or `delete-unknown_<pool>` log.
    pub fn log_file(&self, log_dir: &Path) -> PathBuf {
        if self.resource_id != 0 {
            return log_path(log_dir, self.resource_id, self.kind);
        }
        let what = match self.kind {
            HookKind::List => "list",
            HookKind::Delete => "delete-unknown",
            other => other.as_str(),
        };
        log_dir.join("hooks").join(format!("{what}_{}", self.pool))
    }
}

/// The log file of a machine's hook: `<log_dir>/hooks/<id:06>_<kind>`.
pub fn log_path(log_dir: &Path, resource_id: i64, kind: HookKind) -> PathBuf {
    log_dir
        .join("hooks")
        .join(format!("{resource_id:06}_{}", kind.as_str()))
}

/// Runs the hook to completion, timeout or cancellation, in an environment made of the
/// context's allowed variables, the spec's own and its credential's only.
pub async fn run(ctx: &HookContext, spec: &HookSpec, cancel: &CancellationToken) -> HookRun {
    let log_dir = ctx.log_dir.as_path();
    let started = Instant::now();
    let path = spec.log_file(log_dir);
    if spec.resource_id == 0 {
        rotate_if_large(&path, POOL_LOG_ROTATE_BYTES, POOL_LOG_GENERATIONS).await;
    }
    let finish = |result: HookRunResult, stdout: Vec<u8>| HookRun {
        result,
        stdout,
        took: started.elapsed(),
    };

    let log = match open_log(&path).await {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "cannot open the hook log; the hook does not run");
            return finish(HookRunResult::NotStarted, Vec::new());
        }
    };
    let mut log = tokio::fs::File::from_std(log);
    let header = format!(
        "--- {} {} started\n",
        chrono::Utc::now().format("%Y-%m-%d %H:%M:%S UTC"),
        spec.kind.as_str()
    );
    let _ = log.write_all(header.as_bytes()).await;
    let _ = log.flush().await;
    let stderr = match log.try_clone().await {
        Ok(f) => f.into_std().await,
        Err(e) => {
            tracing::error!(error = %e, "cannot share the hook log with the hook");
            return finish(HookRunResult::NotStarted, Vec::new());
        }
    };

    // The credential's files live exactly as long as this function: the guard removes them
    // when the hook ends, is killed or cancelled. Without its credential a hook does not run
    // at all: it would act with whatever the server's own account allows.
    let mut credential_env = Vec::new();
    let mut _secrets = None;
    if let Some(id) = spec.credential {
        match hand_over(ctx, id, spec.kind).await {
            Ok((dir, env)) => {
                _secrets = Some(dir);
                credential_env = env;
            }
            Err(why) => {
                let _ = log
                    .write_all(format!("<{why}; the hook does not run>\n").as_bytes())
                    .await;
                let _ = log.flush().await;
                return finish(HookRunResult::NotStarted, Vec::new());
            }
        }
    }

    let capture = spec.capture_limit();
    let mut command = Command::new("/bin/sh");
    command
        .arg("-c")
        .arg(&spec.command)
        .env_clear()
        .envs(ctx.env.vars().iter().cloned())
        .envs(spec.env())
        .envs(credential_env)
        .env(HOOK_MARKER, marker(log_dir))
        .stdin(Stdio::null())
        .stderr(Stdio::from(stderr))
        .process_group(0)
        .kill_on_drop(true);
    if capture.is_some() {
        command.stdout(Stdio::piped());
    } else {
        match log.try_clone().await {
            Ok(f) => command.stdout(Stdio::from(f.into_std().await)),
            Err(_) => command.stdout(Stdio::null()),
        };
    }
    die_with_parent(&mut command);

    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(e) => {
            let _ = log
                .write_all(format!("<cannot start sh: {e}>\n").as_bytes())
                .await;
            let _ = log.flush().await;
            return finish(HookRunResult::NotStarted, Vec::new());
        }
    };
    let pgid = child.id();

    let stdout_pipe = child.stdout.take();
    let io = async {
        let mut captured = Vec::new();
        if let (Some(pipe), Some(limit)) = (stdout_pipe, capture) {
            read_captured(
                pipe,
                &mut log,
                limit,
                spec.kind == HookKind::List,
                &mut captured,
            )
            .await;
        }
        let status = child.wait().await;
        (status, captured)
    };

    let (result, stdout) = tokio::select! {
        (status, captured) = io => {
            let result = match status {
                Ok(s) if s.success() => HookResult::Success,
                _ => HookResult::Failed,
            };
            (HookRunResult::Finished(result), captured)
        }
        _ = tokio::time::sleep(spec.timeout) => (HookRunResult::Finished(HookResult::TimedOut), Vec::new()),
        _ = cancel.cancelled() => (HookRunResult::Cancelled, Vec::new()),
    };
    let note = match result {
        HookRunResult::Cancelled => Some("<cancelled: the machine is being deleted>\n".to_string()),
        HookRunResult::Finished(HookResult::TimedOut) => Some(format!(
            "<timed out after {}s, killed>\n",
            spec.timeout.as_secs()
        )),
        HookRunResult::Finished(_) | HookRunResult::NotStarted => None,
    };
    if let Some(note) = note {
        kill_group(pgid);
        if let Ok(mut f) = tokio::fs::OpenOptions::new().append(true).open(&path).await {
            let _ = f.write_all(note.as_bytes()).await;
            let _ = f.flush().await;
        }
    }
    finish(result, stdout)
}

/// Makes the hook's credential directory and fills it.
async fn hand_over(
    ctx: &HookContext,
    id: i32,
    kind: HookKind,
) -> Result<(SecretsDir, Vec<(String, String)>), String> {
    let Some(credentials) = &ctx.credentials else {
        return Err(format!(
            "credential {id}: this server hands no credentials to hooks"
        ));
    };
    let dir = SecretsDir::create(&ctx.secrets_dir)
        .map_err(|e| format!("cannot make a directory for the credential's files: {e}"))?;
    let env = credentials.materialize(id, kind, &dir.0).await?;
    Ok((dir, env))
}

/// Reads the hook's standard output line by line into the log, keeping the first `limit`
/// bytes as resalloc does: whole lines while they fit, the first line cut to the limit, and a
/// `<< trimmed >>` marker when output was dropped (not for `cmd_list`, whose lines are names).
async fn read_captured(
    pipe: tokio::process::ChildStdout,
    log: &mut tokio::fs::File,
    limit: usize,
    lines_only: bool,
    captured: &mut Vec<u8>,
) {
    let mut reader = BufReader::new(pipe);
    let mut line = Vec::new();
    let mut stopped = false;
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let _ = log.write_all(&line).await;
        let _ = log.flush().await;
        if stopped {
            continue;
        }
        if captured.len() + line.len() > limit {
            if captured.is_empty() && !lines_only {
                captured.extend_from_slice(&line[..limit]);
            }
            if !lines_only {
                captured.extend_from_slice(b"<< trimmed >>\n");
            }
            stopped = true;
            continue;
        }
        captured.extend_from_slice(&line);
    }
}

/// Moves `path` to `path.1` (and older generations one further, dropping the oldest) once it
/// is larger than `limit`. Failures only mean the log grows on.
async fn rotate_if_large(path: &Path, limit: u64, generations: u32) {
    let Ok(meta) = tokio::fs::metadata(path).await else {
        return;
    };
    if meta.len() <= limit || generations == 0 {
        return;
    }
    let generation = |n: u32| {
        let mut p = path.as_os_str().to_owned();
        p.push(format!(".{n}"));
        PathBuf::from(p)
    };
    let _ = tokio::fs::remove_file(generation(generations)).await;
    for n in (1..generations).rev() {
        let _ = tokio::fs::rename(generation(n), generation(n + 1)).await;
    }
    let _ = tokio::fs::rename(path, generation(1)).await;
}

async fn open_log(path: &Path) -> std::io::Result<std::fs::File> {
    if let Some(dir) = path.parent() {
        tokio::fs::create_dir_all(dir).await?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

/// Kills the hook's process group: the shell and everything it started.
fn kill_group(pgid: Option<u32>) {
    if let Some(pgid) = pgid.and_then(|p| i32::try_from(p).ok()) {
        // SAFETY: killpg only sends a signal; the group is the one the hook was started in.
        unsafe {
            libc::killpg(pgid, libc::SIGKILL);
        }
    }
}

/// Asks the kernel to kill the hook's shell when the server dies, so a hook never outlives a
/// crashed server and races the cleanup the restarted server does.
fn die_with_parent(command: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec and only calls prctl, which is
    // async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

fn marker(log_dir: &Path) -> String {
    let dir = std::path::absolute(log_dir).unwrap_or_else(|_| log_dir.to_path_buf());
    format!("copr-pools:{}", dir.display())
}

/// Kills every process still carrying this log directory's hook marker: hooks of a previous
/// server process (and their children, which the kernel's parent-death signal does not
/// reach). Run before the restart cleanup deletes machines, so no `cmd_new` finishes a
/// machine after its `cmd_delete` ran. Returns how many processes were killed.
pub fn kill_orphans(log_dir: &Path) -> usize {
    let wanted = format!("{HOOK_MARKER}={}", marker(log_dir));
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut killed = 0;
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if environ
            .split(|b| *b == 0)
            .any(|var| var == wanted.as_bytes())
        {
            // SAFETY: only sends a signal, to a process that carries our hook marker.
            if unsafe { libc::kill(pid as i32, libc::SIGKILL) } == 0 {
                killed += 1;
            }
        }
    }
    killed
}

/// Names printed by `cmd_list`, one per whitespace-separated word (resalloc splits likewise).
pub fn listed_names(stdout: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: HookKind, command: &str) -> HookSpec {
        HookSpec {
            kind,
            command: command.to_string(),
            pool: "p".into(),
            resource_id: 7,
            name: Some("p_00000007".into()),
            id_in_pool: Some(2),
            counters: vec![("ip".into(), 5)],
            data: Some(b"10.0.0.1\n".to_vec()),
            timeout: Duration::from_secs(10),
            extra_env: BTreeMap::new(),
            credential: None,
        }
    }

    fn ctx(dir: &Path) -> HookContext {
        HookContext {
            env: HookEnv::default(),
            ..HookContext::new(dir)
        }
    }

    #[tokio::test]
    async fn hooks_get_resallocs_environment_and_log() {
        let dir = tempfile::tempdir().unwrap();
        let s = spec(
            HookKind::Livecheck,
            "echo $RESALLOC_ID $RESALLOC_NAME $RESALLOC_POOL_ID $RESALLOC_ID_IN_POOL $RESALLOC_NAMED_COUNTER_ip; \
             echo $RESALLOC_RESOURCE_DATA | base64 -d; echo oops >&2",
        );
        let run = run(&ctx(dir.path()), &s, &CancellationToken::new()).await;
        assert_eq!(run.result, HookRunResult::Finished(HookResult::Success));
        let log = std::fs::read_to_string(dir.path().join("hooks/000007_watch")).unwrap();
        assert!(log.contains("7 p_00000007 p 2 5\n10.0.0.1\n"), "{log}");
        assert!(log.contains("oops"), "{log}");
    }

    #[tokio::test]
    async fn new_captures_512_bytes_like_resalloc() {
        let dir = tempfile::tempdir().unwrap();
        let run1 = run(
            &ctx(dir.path()),
            &spec(HookKind::New, "echo 10.0.0.9; echo second"),
            &CancellationToken::new(),
        )
        .await;
        assert_eq!(run1.stdout, b"10.0.0.9\nsecond\n");
        let long = run(
            &ctx(dir.path()),
            &spec(HookKind::New, "head -c 600 /dev/zero | tr '\\0' a; echo"),
            &CancellationToken::new(),
        )
        .await;
        assert_eq!(long.stdout.len(), 512 + "<< trimmed >>\n".len());
        assert!(long.stdout.ends_with(b"<< trimmed >>\n"));
    }

    #[tokio::test]
    async fn failures_timeouts_and_cancels_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let failed = run(
            &ctx(dir.path()),
            &spec(HookKind::Release, "exit 3"),
            &CancellationToken::new(),
        )
        .await;
        assert_eq!(failed.result, HookRunResult::Finished(HookResult::Failed));

        let mut slow = spec(HookKind::New, "echo started; sleep 30; echo never");
        slow.timeout = Duration::from_millis(300);
        let timed = run(&ctx(dir.path()), &slow, &CancellationToken::new()).await;
        assert_eq!(timed.result, HookRunResult::Finished(HookResult::TimedOut));
        assert!(timed.took < Duration::from_secs(5));
        let log = std::fs::read_to_string(dir.path().join("hooks/000007_alloc")).unwrap();
        assert!(log.contains("timed out"), "{log}");

        let cancel = CancellationToken::new();
        let c2 = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            c2.cancel();
        });
        let mut hung = spec(HookKind::New, "sleep 30");
        hung.timeout = Duration::from_secs(60);
        let cancelled = run(&ctx(dir.path()), &hung, &cancel).await;
        assert_eq!(cancelled.result, HookRunResult::Cancelled);
    }

    #[tokio::test]
    async fn orphans_of_a_dead_server_are_found_and_killed() {
        let dir = tempfile::tempdir().unwrap();
        // A hook that leaves a child behind, as `$(spawner)` inside a wrapper does when the
        // wrapper is killed.
        let run = run(
            &ctx(dir.path()),
            &spec(HookKind::New, "sleep 300 >/dev/null 2>&1 & echo $!"),
            &CancellationToken::new(),
        )
        .await;
        let pid: i32 = String::from_utf8(run.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // SAFETY: probing a process we started.
        assert_eq!(
            unsafe { libc::kill(pid, 0) },
            0,
            "the child outlived its hook"
        );
        let other = tempfile::tempdir().unwrap();
        assert_eq!(
            kill_orphans(other.path()),
            0,
            "another server's marker is left alone"
        );
        assert!(kill_orphans(dir.path()) >= 1);
        // Reap it (it is our grandchild's orphan, adopted by init or a subreaper).
        // Up to 5 s: on a loaded 2-core machine (the test binary runs its property tests
        // beside this one) the kill and the reaping can take longer than a second.
        let mut gone = false;
        for _ in 0..250 {
            // SAFETY: probing a process id.
            if unsafe { libc::kill(pid, 0) } != 0 {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(
            gone || stat.contains(") Z "),
            "the orphan was killed: /proc/{pid}/stat = {stat:?}"
        );
    }

    #[tokio::test]
    async fn hooks_see_only_allowed_variables_of_the_servers_environment() {
        let dir = tempfile::tempdir().unwrap();
        let server_env = [
            ("PATH", "/usr/bin:/bin"),
            ("HOME", "/var/lib/copr-pools"),
            ("LANG", "C.UTF-8"),
            ("LC_TIME", "en_GB.UTF-8"),
            ("TZ", "UTC"),
            ("TMPDIR", "/tmp"),
            (
                "COPR_POOLS_DATABASE_URL",
                "postgres://copr:db-password-123@db/copr",
            ),
            ("COPR_POOLS_OIDC_CLIENT_SECRET", "oidc-secret-456"),
            ("COPR_POOLS_PROXY", "not for hooks either"),
            ("AWS_SECRET_ACCESS_KEY", "servers-own-aws-key-789"),
            ("HTTPS_PROXY", "http://proxy:3128"),
            ("SPAWNER_REGION", "eu-west-1"),
            ("RESALLOC_ID", "from-the-server"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let passthrough = vec![
            "HTTPS_PROXY".to_string(),
            "SPAWNER_*".to_string(),
            "COPR_POOLS_*".to_string(),
        ];
        let base = HookEnv::select(server_env, &passthrough);
        let mut s = spec(HookKind::Livecheck, "env");
        s.extra_env
            .insert("OS_CLOUD".to_string(), "team-cloud".to_string());
        let ran = run(
            &HookContext {
                env: base,
                ..ctx(dir.path())
            },
            &s,
            &CancellationToken::new(),
        )
        .await;
        assert_eq!(ran.result, HookRunResult::Finished(HookResult::Success));
        let log = std::fs::read_to_string(dir.path().join("hooks/000007_watch")).unwrap();
        let names: Vec<&str> = log
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once('=').map(|(k, _)| k))
            .collect();
        for gone in [
            "COPR_POOLS_",
            "db-password-123",
            "oidc-secret-456",
            "servers-own-aws-key",
        ] {
            assert!(!log.contains(gone), "{gone} reached the hook:\n{log}");
        }
        for kept in [
            "PATH=/usr/bin:/bin",
            "HOME=/var/lib/copr-pools",
            "LANG=C.UTF-8",
            "LC_TIME=en_GB.UTF-8",
            "TZ=UTC",
            "TMPDIR=/tmp",
            "HTTPS_PROXY=http://proxy:3128",
            "SPAWNER_REGION=eu-west-1",
            "OS_CLOUD=team-cloud",
            "RESALLOC_ID=7",
            "RESALLOC_POOL_ID=p",
        ] {
            assert!(log.lines().any(|l| l == kept), "{kept} missing:\n{log}");
        }
        // Nothing but the allow-list, RESALLOC_* and what sh itself sets.
        for name in names {
            assert!(
                name.starts_with("RESALLOC_")
                    || name.starts_with("LC_")
                    || matches!(
                        name,
                        "PATH"
                            | "HOME"
                            | "LANG"
                            | "TZ"
                            | "TMPDIR"
                            | "HTTPS_PROXY"
                            | "SPAWNER_REGION"
                            | "OS_CLOUD"
                            | "PWD"
                            | "SHLVL"
                            | "_"
                    ),
                "unexpected variable {name} in a hook's environment:\n{log}"
            );
        }
    }

    #[tokio::test]
    async fn pool_wide_hooks_log_per_pool_and_rotate() {
        let dir = tempfile::tempdir().unwrap();
        let mut list = spec(
            HookKind::List,
            "head -c 300000 /dev/zero | tr '\\0' x; echo",
        );
        list.resource_id = 0;
        list.pool = "aws_x86".into();
        let mut other = list.clone();
        other.pool = "aws_arm".into();
        let mut unknown = spec(HookKind::Delete, "echo deleting $RESALLOC_NAME");
        unknown.resource_id = 0;
        unknown.pool = "aws_x86".into();
        let hooks = dir.path().join("hooks");
        for spec in std::iter::repeat_n(&list, 8).chain([&other, &unknown]) {
            run(&ctx(dir.path()), spec, &CancellationToken::new()).await;
        }
        assert!(hooks.join("list_aws_arm").exists());
        assert!(!hooks.join("000000_list").exists(), "no shared list log");
        let unknown_log = std::fs::read_to_string(hooks.join("delete-unknown_aws_x86")).unwrap();
        assert!(unknown_log.contains("deleting p_00000007"), "{unknown_log}");
        // 8 runs of 300 kB: rotated at 1 MiB, so the current file and `.1` both exist and
        // neither grows past the limit by more than one run.
        let current = std::fs::metadata(hooks.join("list_aws_x86")).unwrap().len();
        let first = std::fs::metadata(hooks.join("list_aws_x86.1"))
            .unwrap()
            .len();
        assert!(current <= POOL_LOG_ROTATE_BYTES + 310_000, "{current}");
        assert!(first > POOL_LOG_ROTATE_BYTES, "{first}");
        assert!(!hooks.join("list_aws_x86.4").exists());
    }

    /// Hands out credential 1 as a variable and a file; refuses every other id.
    struct FakeCredentials;

    #[async_trait::async_trait]
    impl HookCredentials for FakeCredentials {
        async fn materialize(
            &self,
            id: i32,
            _kind: HookKind,
            dir: &Path,
        ) -> Result<Vec<(String, String)>, String> {
            if id != 1 {
                return Err(format!("credential {id} was revoked"));
            }
            let file = dir.join("token");
            std::fs::write(&file, "file-secret").unwrap();
            Ok(vec![
                ("TOKEN_FILE".into(), file.display().to_string()),
                ("TOKEN".into(), "env-secret".into()),
            ])
        }
    }

    #[tokio::test]
    async fn credentials_live_only_as_long_as_their_hook() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = HookContext {
            credentials: Some(Arc::new(FakeCredentials)),
            ..ctx(dir.path())
        };
        let out = dir.path().join("seen");
        let mut s = spec(
            HookKind::Livecheck,
            &format!("echo $TOKEN $(cat $TOKEN_FILE) > {}", out.display()),
        );
        s.credential = Some(1);
        let ran = run(&ctx, &s, &CancellationToken::new()).await;
        assert_eq!(ran.result, HookRunResult::Finished(HookResult::Success));
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "env-secret file-secret\n"
        );
        assert_eq!(
            std::fs::read_dir(&ctx.secrets_dir).unwrap().count(),
            0,
            "removed after"
        );

        // Killed by its timeout: removed all the same.
        let mut slow = spec(HookKind::New, "sleep 30");
        slow.credential = Some(1);
        slow.timeout = Duration::from_millis(200);
        run(&ctx, &slow, &CancellationToken::new()).await;
        assert_eq!(std::fs::read_dir(&ctx.secrets_dir).unwrap().count(), 0);

        // A credential that cannot be handed over: the hook does not run, and says why.
        let mut revoked = spec(HookKind::Release, "echo ran");
        revoked.credential = Some(2);
        let ran = run(&ctx, &revoked, &CancellationToken::new()).await;
        assert_eq!(ran.result, HookRunResult::NotStarted);
        let log = std::fs::read_to_string(dir.path().join("hooks/000007_release")).unwrap();
        assert!(
            log.contains("<credential 2 was revoked; the hook does not run>"),
            "{log}"
        );
        assert!(!log.contains("ran\n"));

        // Left over by a crash: swept.
        std::fs::create_dir_all(ctx.secrets_dir.join("left-over")).unwrap();
        assert_eq!(sweep_secrets(&ctx.secrets_dir), 1);
    }

    #[test]
    fn list_output_is_split_into_names() {
        assert_eq!(
            listed_names(b"a_1\nb_2  c_3\n\n"),
            vec!["a_1", "b_2", "c_3"]
        );
    }
}
