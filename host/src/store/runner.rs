//! Which process runs a run: `<machine>:<pid>:<nonce>`, stored with each run
//! and refreshed by a heartbeat, so that a host can tell a run whose process
//! died from one that another live process (a `serve` next to a CLI command,
//! another host on the same PostgreSQL) is still running.

use std::sync::OnceLock;

/// A run on another machine is presumed dead after this long without a heartbeat.
pub const STALE_AFTER_MS: i64 = 60_000;
/// How often a heartbeat is refreshed: a serving host's (one for all the
/// runs it holds), or the run's of a process that does not serve.
pub const HEARTBEAT_EVERY_MS: u64 = 10_000;

/// Servers in this process keeping a host heartbeat (usually 0 or 1).
static SERVING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Whether this process keeps a host heartbeat (in `hosts`, under [`id`])
/// that vouches for every run it holds, so its runs need no timer each.
pub fn serving() -> bool {
    SERVING.load(std::sync::atomic::Ordering::Acquire) > 0
}

/// A server of this process starts (`true`) or stops (`false`) keeping the
/// host heartbeat.
pub fn set_serving(on: bool) {
    use std::sync::atomic::Ordering::{AcqRel, Acquire};
    if on {
        SERVING.fetch_add(1, AcqRel);
    } else {
        let _ = SERVING.fetch_update(AcqRel, Acquire, |n| n.checked_sub(1));
    }
}

fn machine() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty() && !s.contains(':'))
        .unwrap_or_else(|| "localhost".into())
}

/// This process's runner id.
pub fn id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        let mut nonce = [0u8; 4];
        getrandom::fill(&mut nonce).expect("system randomness");
        format!(
            "{}:{}:{}",
            machine(),
            std::process::id(),
            nonce.iter().map(|b| format!("{b:02x}")).collect::<String>()
        )
    })
}

fn pid_exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Whether the process behind a running run may still be running it.
pub fn alive(runner: Option<&str>, heartbeat_at: Option<i64>, now: i64) -> bool {
    let Some(runner) = runner else {
        return false;
    };
    if runner == id() {
        return true;
    }
    let mut parts = runner.rsplitn(3, ':');
    let (_nonce, pid, host) = (parts.next(), parts.next(), parts.next());
    let this_machine = host == Some(machine().as_str());
    match pid.and_then(|p| p.parse::<u32>().ok()) {
        // Same machine, other process: it is alive while its pid exists.
        Some(pid) if this_machine && pid != std::process::id() => pid_exists(pid),
        // Same machine and pid, other nonce: an earlier life of this pid.
        Some(_) if this_machine => false,
        _ => heartbeat_at.is_some_and(|h| now - h < STALE_AFTER_MS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runner_liveness_follows_the_process_or_the_heartbeat() {
        let now = 1_000_000;
        assert!(alive(Some(id()), None, now), "this process's own runs");
        assert!(
            !alive(None, Some(now), now),
            "a run without a runner cannot be vouched for"
        );
        let parent = format!("{}:{}:00", machine(), std::os::unix::process::parent_id());
        assert!(alive(Some(&parent), None, now), "a live process on this machine");
        let gone = format!("{}:{}:00", machine(), u32::MAX - 1);
        assert!(!alive(Some(&gone), Some(now), now), "a dead process on this machine");
        let earlier = format!("{}:{}:ffffffff", machine(), std::process::id());
        assert!(
            !alive(Some(&earlier), Some(now), now),
            "an earlier process with this pid"
        );
        assert!(
            alive(Some("other-host:1:aa"), Some(now - 1_000), now),
            "a fresh heartbeat"
        );
        assert!(
            !alive(Some("other-host:1:aa"), Some(now - STALE_AFTER_MS - 1), now),
            "a stale heartbeat from another machine"
        );
    }
}
