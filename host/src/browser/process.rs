//! Chromedriver and Chromium processes: starting them so that nothing can be
//! orphaned, ending them, and counting what is left.
//!
//! Each session starts its own chromedriver in a new process group, with an
//! environment the host builds from nothing: `HOME`, `TMPDIR` and the XDG
//! directories inside the session's private directory (so nothing Chromium
//! writes lands outside it), a fixed `PATH`, and a marker variable
//! [`OWNER_VAR`] = `<host pid>/<service>/<session>/`. Chromium is started by
//! chromedriver and stays in its process group; its crash handler leaves the
//! group (`setsid`) but keeps the marker. Zygote-forked Chromium processes
//! keep the group but not a readable marker (Chromium rewrites the memory
//! `/proc/<pid>/environ` shows), so a session's processes are those in its
//! process group **or** carrying its marker. The groups this host process
//! started are registered until teardown finds them empty; a registered
//! group's id cannot be reused while any member lives.
//!
//! Teardown kills the group, then every process found that way. Counting
//! uses the same rule, so it sees exactly this host's browsers and no one
//! else's.
//!
//! Zombies are not counted: a Chromium child whose parent chromedriver was
//! killed is re-parented to PID 1, and whether it is reaped then depends on
//! the machine's init (a container's init may never reap it); it holds no
//! memory, files or sockets.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;
use tokio::io::{AsyncBufReadExt, BufReader};

/// The environment variable that marks every browser process of this host.
pub const OWNER_VAR: &str = "PDPP_BROWSER_OWNER";

/// The marker prefix of every browser process this host process starts.
pub(crate) fn host_prefix() -> String {
    format!("{}/", std::process::id())
}

/// A running chromedriver.
pub(crate) struct Driver {
    pub child: tokio::process::Child,
    /// Its process group (= its pid), shared with the Chromium it starts.
    pub pgid: i32,
    /// The loopback port it listens on.
    pub port: u16,
}

/// Where a session's processes live and how they are marked.
pub(crate) struct DriverEnv<'a> {
    pub home: &'a Path,
    pub tmp: &'a Path,
    pub marker: &'a str,
}

/// Start chromedriver on a port of its choosing and read the port from its
/// banner. Its log level is SEVERE, so it never logs commands (whose
/// parameters include typed text). A driver that exits before it listens
/// (seen now and then on a loaded machine) is started once more while the
/// deadline allows; the second failure is the run's.
pub(crate) async fn spawn_driver(
    chromedriver: &Path,
    env: &DriverEnv<'_>,
    deadline: Instant,
) -> Result<Driver, String> {
    match spawn_driver_once(chromedriver, env, deadline).await {
        Err(why) if why.starts_with(EXITED_EARLY) && Instant::now() < deadline => {
            tracing::warn!("{why}; starting it once more");
            spawn_driver_once(chromedriver, env, deadline).await
        }
        result => result,
    }
}

const EXITED_EARLY: &str = "chromedriver exited before it listened";

async fn spawn_driver_once(chromedriver: &Path, env: &DriverEnv<'_>, deadline: Instant) -> Result<Driver, String> {
    let mut cmd = tokio::process::Command::new(chromedriver);
    cmd.arg("--port=0")
        .arg("--log-level=SEVERE")
        .env_clear()
        .env("HOME", env.home)
        .env("TMPDIR", env.tmp)
        .env("XDG_CONFIG_HOME", env.home.join(".config"))
        .env("XDG_CACHE_HOME", env.home.join(".cache"))
        .env("XDG_DATA_HOME", env.home.join(".local/share"))
        .env("PATH", "/usr/bin:/bin")
        .env(OWNER_VAR, env.marker)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", chromedriver.display()))?;
    let pgid = child.id().map(|p| p as i32).ok_or("chromedriver exited at once")?;
    register_group(pgid, env.marker);
    let stdout = child.stdout.take().ok_or("chromedriver has no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let remaining = deadline.saturating_duration_since(Instant::now());
    let port = tokio::time::timeout(remaining, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(rest) = line.split("started successfully on port ").nth(1) {
                return rest.trim().trim_end_matches('.').parse::<u16>().ok();
            }
        }
        None
    })
    .await;
    let port = match port {
        Ok(Some(p)) => p,
        Ok(None) => {
            kill_group(pgid);
            forget_group(pgid);
            let status = child.try_wait().ok().flatten();
            return Err(match status {
                Some(status) => format!("{EXITED_EARLY} ({status})"),
                None => EXITED_EARLY.to_owned(),
            });
        }
        Err(_) => {
            kill_group(pgid);
            forget_group(pgid);
            return Err("chromedriver did not start before the deadline".into());
        }
    };
    // Keep reading, so a chatty driver never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(Driver { child, pgid, port })
}

/// SIGKILL a process group. A group that is already gone is fine.
pub(crate) fn kill_group(pgid: i32) {
    if pgid > 1 {
        // SAFETY: killpg only sends a signal; it has no memory effects.
        unsafe {
            libc::killpg(pgid, libc::SIGKILL);
        }
    }
}

/// SIGKILL every live process whose marker starts with `prefix`; returns how
/// many were signalled.
pub(crate) fn kill_marked(prefix: &str) -> usize {
    let pids = marked_processes(prefix);
    for pid in &pids {
        // SAFETY: kill only sends a signal; it has no memory effects.
        unsafe {
            libc::kill(*pid, libc::SIGKILL);
        }
    }
    pids.len()
}

/// Process groups this host process started, with their session marker.
fn groups() -> &'static Mutex<HashMap<i32, String>> {
    static GROUPS: OnceLock<Mutex<HashMap<i32, String>>> = OnceLock::new();
    GROUPS.get_or_init(Default::default)
}

fn register_group(pgid: i32, marker: &str) {
    groups()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(pgid, marker.to_owned());
}

/// Forget a group once no member of it is left.
pub(crate) fn forget_group(pgid: i32) {
    groups().lock().unwrap_or_else(|p| p.into_inner()).remove(&pgid);
}

/// The live (not zombie) processes of the sessions whose marker starts with
/// `prefix`: members of their process groups, and processes carrying the marker.
pub(crate) fn marked_processes(prefix: &str) -> Vec<i32> {
    let needle = format!("{OWNER_VAR}={prefix}");
    let owned_groups: Vec<i32> = groups()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|(_, marker)| marker.starts_with(prefix))
        .map(|(pgid, _)| *pgid)
        .collect();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        // `/proc/<pid>/stat`: `pid (comm) state ppid pgrp …`; comm may hold spaces.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().unwrap_or("Z");
        let pgrp = fields.nth(1).and_then(|g| g.parse::<i32>().ok()).unwrap_or(0);
        if matches!(state, "Z" | "X") {
            continue;
        }
        let mine = owned_groups.contains(&pgrp)
            || std::fs::read(entry.path().join("environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|var| var.starts_with(needle.as_bytes())));
        if mine {
            found.push(pid);
        }
    }
    found
}

/// Whether a process with this id exists.
fn alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The host pid at the start of a marker or a session directory name.
fn owner_pid(text: &str) -> Option<i32> {
    text.split(['/', '-']).next()?.parse().ok()
}

/// What [`sweep_orphans`] cleaned up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sweep {
    /// Browser processes of host processes that no longer exist, killed.
    pub processes: usize,
    /// Their session directories (profiles included), removed.
    pub directories: usize,
}

/// The name of a service's directory in the work directory starts with
/// this, then `<host pid>-<service number>-<random>`. Short on purpose:
/// Chromium's socket paths live below it (see [`MAX_WORK_DIR_CHARS`]).
pub(crate) const WORK_DIR_PREFIX: &str = "pdpp-b-";

/// The longest work directory path Chromium can run below. Chromium puts a
/// Unix socket (`.org.chromium.Chromium.XXXXXX/SingletonSocket`, 45
/// characters) in the session's `TMPDIR`, and a socket path holds at most
/// 107 bytes on Linux. Below the work directory come `/pdpp-b-` (8), a pid
/// (at most 7 digits), `-`, a service number (3), `-`, 8 hex digits, the
/// session directory `/s` and its number (5), and `/t/` (3): 36, with the
/// socket 81, which leaves 26 for the work directory itself.
pub const MAX_WORK_DIR_CHARS: usize = 107 - 81;

/// Clean up after host processes that ended without tearing their browsers
/// down (a crash, SIGKILL, power loss): kill the browser processes whose
/// marker names a host pid that no longer exists, with their process groups,
/// and remove the `pdpp-b-<pid>-…` directories such hosts left in
/// `work_dir`. Browsers of live hosts — other host processes on the same
/// machine — are not touched.
pub fn sweep_orphans(work_dir: &Path) -> Sweep {
    let me = std::process::id() as i32;
    let needle = format!("{OWNER_VAR}=");
    let mut sweep = Sweep::default();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
                continue;
            };
            let owner = environ
                .split(|b| *b == 0)
                .find_map(|var| var.strip_prefix(needle.as_bytes()))
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(owner_pid);
            let Some(owner) = owner else { continue };
            if owner == me || alive(owner) {
                continue;
            }
            let pgrp = std::fs::read_to_string(entry.path().join("stat"))
                .ok()
                .and_then(|stat| {
                    let (_, rest) = stat.rsplit_once(')')?;
                    rest.split_whitespace().nth(2)?.parse::<i32>().ok()
                });
            // SAFETY: kill and killpg only send signals; no memory effects.
            unsafe {
                if let Some(g) = pgrp.filter(|g| *g > 1 && *g != me) {
                    libc::killpg(g, libc::SIGKILL);
                }
                libc::kill(pid, libc::SIGKILL);
            }
            sweep.processes += 1;
        }
    }
    if let Ok(dir) = std::fs::read_dir(work_dir) {
        for entry in dir.flatten() {
            let name = entry.file_name();
            let Some(owner) = name
                .to_str()
                .and_then(|n| n.strip_prefix(WORK_DIR_PREFIX))
                .and_then(owner_pid)
            else {
                continue;
            };
            if owner != me && !alive(owner) && std::fs::remove_dir_all(entry.path()).is_ok() {
                sweep.directories += 1;
            }
        }
    }
    sweep
}

/// How many Chromium and chromedriver processes started by this host process
/// (any service, any session) are still alive. Tests use it to prove that
/// teardown leaves nothing behind.
pub fn live_browser_processes() -> usize {
    marked_processes(&host_prefix()).len()
}

/// How many Chromium and chromedriver processes started by the host process
/// `host_pid` (another one, say a `pdpp-host serve` being stopped) are still
/// alive, found by the marker in their environment.
pub fn live_browser_processes_of(host_pid: u32) -> usize {
    marked_processes(&format!("{host_pid}/")).len()
}

/// Memory held by a set of processes, from `/proc`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ProcessMemory {
    pub processes: usize,
    /// Sum of resident set sizes (counts shared pages once per process).
    pub rss_bytes: u64,
    /// Sum of proportional set sizes (shared pages divided among their
    /// users): what the processes cost the machine together.
    pub pss_bytes: u64,
}

/// The memory of the live processes whose marker starts with `prefix`.
pub(crate) fn memory_of(prefix: &str) -> ProcessMemory {
    let kib = |text: &str, field: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    let mut memory = ProcessMemory::default();
    for pid in marked_processes(prefix) {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
        memory.processes += 1;
        memory.rss_bytes += kib(&status, "VmRSS:");
        memory.pss_bytes += kib(&rollup, "Pss:");
    }
    memory
}
