//! A test guest. `settings.behavior` picks what it does; every behaviour
//! reports what it saw as a RECORD on the `observations` stream, so tests
//! assert on the sandbox from the outside.

use pdpp_sdk::{Answer, Connector, Failure, Interaction, Run, Value, export_connector, json};
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
                let port = run
                    .settings()
                    .get("port")
                    .and_then(Value::as_u64)
                    .unwrap_or(9);
                let tcp = err_text(
                    std::net::TcpStream::connect(("127.0.0.1", port as u16)).map(|_| "connected"),
                );
                let udp = err_text(std::net::UdpSocket::bind("127.0.0.1:0").map(|_| "bound"));
                let dns = err_text(
                    std::net::ToSocketAddrs::to_socket_addrs(&("localhost", 80)).map(|a| a.count()),
                );
                let what = json!({
                    "env": vars, "args": args, "passwd": passwd, "root": root,
                    "cwd_file": cwd_file, "tcp": tcp, "udp": udp, "dns": dns,
                });
                observe(run, "isolation", what)
            }
            "items" => {
                let n = run
                    .settings()
                    .get("count")
                    .and_then(Value::as_u64)
                    .unwrap_or(3);
                for i in 0..n {
                    run.record(
                        "items",
                        format!("i{i}"),
                        &json!({ "id": format!("i{i}"), "n": i }),
                    )?;
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
                observe(
                    run,
                    "alloc",
                    json!({ "len": v.len(), "last": v[v.len() - 1] }),
                )
            }
            "panic" => {
                run.record("items", "i0", &json!({ "id": "i0", "n": 0 }))?;
                run.checkpoint("items", &json!({ "n": 1 }))?;
                run.flush()?;
                panic!("probe panicked on purpose");
            }
            "fail_after_state" => {
                run.record("items", "i0", &json!({ "id": "i0", "n": 0 }))?;
                run.checkpoint("items", &json!({ "n": 1 }))?;
                Err(Failure::new("gave up on purpose")
                    .code("probe_failed")
                    .retryable(true))
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
                let mut ask = Interaction::otp("Enter the code");
                ask.timeout_seconds = secs;
                let what = match run.interact(ask) {
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
            other => Err(Failure::new(format!("unknown behavior {other}"))),
        }
    }
}

export_connector!(Probe);
