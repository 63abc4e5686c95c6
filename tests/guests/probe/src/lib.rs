//! A test guest. `settings.behavior` picks what it does; every behaviour
//! reports what it saw as a RECORD on the `observations` stream, so tests
//! assert on the sandbox from the outside.

use pdpp_sdk::{
    Account, Answer, Connector, Failure, Interaction, Probe as ProbeCtx, ProbeError, Run, Value, export_connector,
    json, serde_json,
};
use std::hint::black_box;

struct Probe;

fn observe(run: &mut Run, id: &str, what: Value) -> Result<(), Failure> {
    run.record("observations", id, &json!({ "id": id, "what": what }))
}

fn err_text<T: std::fmt::Debug, E: std::fmt::Display>(r: Result<T, E>) -> Value {
    match r {
        Ok(v) => json!({ "ok": format!("{v:?}") }),
        Err(e) => json!({ "err": e.to_string() }),
    }
}

impl Connector for Probe {
    /// The credential probe: the revealable `signing_key` decides. A key
    /// starting `reject` is refused, `scope` lacks permission, `down` finds
    /// the provider unreachable; anything else is accepted as the account
    /// named by the `account` setup field.
    fn validate_credential(probe: &ProbeCtx) -> Result<Account, ProbeError> {
        probe.secret("token")?;
        let key = probe
            .secret("signing_key")?
            .reveal()
            .map_err(|e| ProbeError::Rejected(e.to_string()))?;
        if key.starts_with("reject") {
            return Err(ProbeError::Rejected("the provider refused this key".into()));
        }
        if key.starts_with("scope") {
            return Err(ProbeError::InsufficientScope("the key cannot read items".into()));
        }
        if key.starts_with("down") {
            return Err(ProbeError::Unavailable("the provider did not answer".into()));
        }
        Ok(Account {
            identity: probe.setting("account").unwrap_or("probe-account").to_owned(),
            detail: Some("Probe account".into()),
        })
    }

    fn run(run: &mut Run) -> Result<(), Failure> {
        let behavior = run
            .settings()
            .get("behavior")
            .and_then(Value::as_str)
            .unwrap_or("items")
            .to_owned();
        match behavior.as_str() {
            "isolation" => {
                let vars: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
                let args: Vec<String> = std::env::args().collect();
                let passwd = err_text(std::fs::read_to_string("/etc/passwd").map(|s| s.len()));
                let root = err_text(std::fs::read_dir("/").map(|d| d.count()));
                let cwd_file = err_text(std::fs::read_to_string("Cargo.toml").map(|s| s.len()));
                let port = run.settings().get("port").and_then(Value::as_u64).unwrap_or(9);
                let tcp = err_text(std::net::TcpStream::connect(("127.0.0.1", port as u16)).map(|_| "connected"));
                let udp = err_text(std::net::UdpSocket::bind("127.0.0.1:0").map(|_| "bound"));
                let dns = err_text(std::net::ToSocketAddrs::to_socket_addrs(&("localhost", 80)).map(|a| a.count()));
                let what = json!({
                    "env": vars, "args": args, "passwd": passwd, "root": root,
                    "cwd_file": cwd_file, "tcp": tcp, "udp": udp, "dns": dns,
                });
                observe(run, "isolation", what)
            }
            "items" => {
                let n = run.settings().get("count").and_then(Value::as_u64).unwrap_or(3);
                for i in 0..n {
                    run.record("items", format!("i{i}"), &json!({ "id": format!("i{i}"), "n": i }))?;
                }
                run.checkpoint("items", &json!({ "n": n }))
            }
            "cpu_loop" => {
                let mut x = 0u64;
                loop {
                    x = black_box(x.wrapping_add(1));
                }
            }
            "alloc" => {
                run.checkpoint("items", &json!({ "n": 1 }))?;
                run.flush()?;
                let v = black_box(vec![1u8; 1 << 30]);
                observe(run, "alloc", json!({ "len": v.len(), "last": v[v.len() - 1] }))
            }
            "panic" => {
                run.record("items", "i0", &json!({ "id": "i0", "n": 0 }))?;
                run.checkpoint("items", &json!({ "n": 1 }))?;
                run.flush()?;
                panic!("probe panicked on purpose");
            }
            "fail_first" => Err(Failure::new("the provider is down")
                .code("upstream_unavailable")
                .retryable(true)),
            "reject_run" => {
                // The stored credential was used (read) before the provider refused it.
                let _ = run.secret("signing_key").map(|s| s.reveal());
                Err(Failure::new("the provider refused the token")
                    .code("credential_rejected")
                    .recovery(pdpp_sdk::Recovery::RefreshCredentials))
            }
            "fail_after_state" => {
                run.record("items", "i0", &json!({ "id": "i0", "n": 0 }))?;
                run.checkpoint("items", &json!({ "n": 1 }))?;
                Err(Failure::new("gave up on purpose").code("probe_failed").retryable(true))
            }
            "out_of_scope" => {
                run.checkpoint("items", &json!({ "n": 1 }))?;
                run.record("observations", "x", &json!({ "id": "x" }))
            }
            "noisy" => {
                for i in 0..10_000 {
                    println!("stdout line {i}");
                    eprintln!("stderr line {i}");
                }
                observe(run, "noisy", json!({ "wrote": 10_000 }))
            }
            "interact" => {
                let secs = run
                    .settings()
                    .get("timeout_seconds")
                    .and_then(Value::as_u64)
                    .map(|s| s as u32);
                let credentials = run.settings().get("kind").and_then(Value::as_str) == Some("credentials");
                let mut ask = if credentials {
                    Interaction::new(pdpp_sdk::InteractionKind::Credentials, "Sign in again")
                } else {
                    Interaction::otp("Enter the code")
                };
                ask.timeout_seconds = secs;
                let what = match run.interact(ask) {
                    // A credentials answer is a secret: only its field names are reported.
                    Ok(Answer::Success(v)) if credentials => {
                        let names: Vec<&String> = v.as_object().map(|o| o.keys().collect()).unwrap_or_default();
                        json!({ "status": "success", "fields": names })
                    }
                    Ok(Answer::Success(v)) => json!({ "status": "success", "data": v }),
                    Ok(Answer::Cancelled) => json!({ "status": "cancelled" }),
                    Ok(Answer::Timeout) => json!({ "status": "timeout" }),
                    Err(e) => json!({ "status": "unavailable", "error": e.to_string() }),
                };
                // The run goes on after any answer.
                observe(run, "interaction", what)
            }
            "secrets" => {
                let token = run
                    .secret("token")
                    .map(|s| (s.field(), s.placeholder(), err_text(s.reveal())));
                let signing = run.secret("signing_key").map(|s| err_text(s.reveal()));
                let undeclared = run.secret("GITHUB_TOKEN").map(|_| ());
                let what = json!({
                    "available": run.available_secrets(),
                    "token": match token {
                        Ok((field, placeholder, reveal)) => json!({ "field": field, "placeholder": placeholder, "reveal": reveal }),
                        Err(e) => json!({ "err": e.to_string() }),
                    },
                    "signing_key": match signing { Ok(v) => v, Err(e) => json!({ "err": e.to_string() }) },
                    "undeclared": err_text(undeclared),
                });
                if let Ok(s) = run.secret("signing_key")
                    && let Ok(v) = s.reveal()
                {
                    // A careless connector logging a secret: the host must redact it.
                    run.info(&format!("signing with {v}"));
                    eprintln!("stderr sees {v}");
                }
                observe(run, "secrets", what)
            }
            "leak" => {
                // A hostile connector: every secret it can reach, in every channel it has.
                let mut seen = Vec::new();
                for field in run.available_secrets() {
                    let handle = run.secret(&field)?;
                    let value = handle.reveal().unwrap_or_else(|_| handle.placeholder());
                    seen.push((field, value));
                }
                let forms: Vec<String> = seen
                    .iter()
                    .flat_map(|(_, v)| [v.clone(), base64(v.as_bytes()), percent(v)])
                    .collect();
                let joined = forms.join(" ");
                println!("stdout: {joined}");
                eprintln!("stderr: {joined}");
                run.info(&format!("log: {joined}"));
                let hashes: Value = seen
                    .iter()
                    .map(|(f, v)| (f.clone(), json!(fnv(v))))
                    .collect::<serde_json::Map<_, _>>()
                    .into();
                observe(run, "leak", json!({ "forms": forms, "hashes": hashes }))?;
                run.checkpoint("items", &json!({ "n": 1, "leaked": joined }))?;
                run.progress(None, &format!("progress: {joined}"), None, None);
                if run.settings().get("fail").and_then(Value::as_bool) == Some(true) {
                    return Err(Failure::new(format!("failed holding {joined}")).code("probe_failed"));
                }
                Ok(())
            }
            "log_flood" => loop {
                run.info(&"log line ".repeat(100));
            },
            "recurse" => {
                fn deeper(n: u64) -> u64 {
                    let pad = std::hint::black_box([n; 64]);
                    if pad[0] == u64::MAX { 0 } else { deeper(n + 1) + pad[63] }
                }
                observe(run, "recurse", json!({ "depth": deeper(0) }))
            }
            "past_memory" => {
                // Grow the linear memory (a lean memory is moved when it
                // grows), then read one byte past its end: a trap, never
                // the host's memory next to it.
                let grown = std::hint::black_box(vec![7u8; 8 << 20]);
                let end = core::arch::wasm32::memory_size(0) * 65536;
                // SAFETY: deliberately out of bounds; the host must trap.
                let beyond = unsafe { core::ptr::read_volatile(end as *const u8) };
                observe(
                    run,
                    "past_memory",
                    json!({ "read": beyond, "kept": grown[grown.len() - 1] }),
                )
            }
            "reject" => Err(Failure::new("the provider said 401")
                .code("credential_rejected")
                .recovery(pdpp_sdk::Recovery::RefreshCredentials)),
            "many" => {
                // Records until stopped, flushed in SDK batches.
                let mut i = 0u64;
                loop {
                    run.record(
                        "items",
                        format!("i{i:09}"),
                        &json!({ "id": format!("i{i:09}"), "n": i }),
                    )?;
                    i += 1;
                }
            }
            other => Err(Failure::new(format!("unknown behavior {other}"))),
        }
    }
}

export_connector!(Probe);

/// FNV-1a, so tests can tell which value a run saw without the value.
fn fnv(s: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
