//! The browser demo connector (connectors/browser-demo) against its demo
//! site, as `scripts/browser-demo.sh` and `scripts/demo.sh` run them: the
//! proofs its manifest records.

use crate::on_both_backends;
use crate::support::{TestDeployment, Transcript, guest_path, sandbox, workspace};
use pdpp_host::manifest::Manifest;
use pdpp_host::runtime::{ConnectionRun, RunOutcome, run_connection};
use pdpp_host::sandbox::{Grants, Plugin};
use pdpp_host::store::{BrowserSessionMode, Trigger};
use serde_json::{Value, json};
use std::sync::{Arc, OnceLock};

fn manifest() -> Arc<Manifest> {
    Arc::new(Manifest::from_file(&workspace().join("manifests/browser-demo.json")).unwrap())
}

fn plugin() -> &'static Plugin {
    static P: OnceLock<Plugin> = OnceLock::new();
    P.get_or_init(|| {
        let bytes = std::fs::read(guest_path("browser_demo")).unwrap();
        sandbox().compile(&bytes, &Grants::from_manifest(&manifest())).unwrap()
    })
}

/// The demo site on a free loopback port, and a browser service.
struct Demo {
    origin: String,
    service: pdpp_host::browser::BrowserService,
}

impl Demo {
    async fn start() -> Demo {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(browser_demo_site::serve(listener));
        Demo {
            origin,
            service: super::service(1),
        }
    }

    async fn run(&self, t: &TestDeployment, conn: &str) -> (RunOutcome, Vec<Value>) {
        let mut opts = ConnectionRun::new(Trigger::Manual);
        opts.browser = Some(self.service.clone());
        opts.egress = Arc::new(pdpp_host::egress::EgressConfig {
            rewrites: vec![pdpp_host::config::parse_rewrite("https://books.example", &self.origin).unwrap()],
            allow_private_addresses: false,
            allow_loopback_for_rewrites: true,
        });
        opts.observer = Box::new(Transcript::default());
        let out = run_connection(&t.dep, sandbox(), plugin(), manifest(), conn, opts)
            .await
            .unwrap();
        let requests = t
            .dep
            .store
            .events(&out.run_id)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.kind == "run.browser_request")
            .map(|e| e.data)
            .collect();
        (out, requests)
    }
}

/// How many form submissions (sign-ins) a run's browser made.
fn sign_ins(requests: &[Value]) -> usize {
    // Chromium's own update check (a POST the proxy refuses) is not one.
    requests
        .iter()
        .filter(|r| r["method"] == "POST" && r["refused"].is_null())
        .count()
}

on_both_backends! {
    /// The proof `browser_session_e2e` of the demo: the first run signs in,
    /// reports the reader and collects the whole list across pages; the
    /// second is still signed in (the sealed profile) and collects nothing
    /// new, its cursor at the newest book.
    async fn the_browser_demo_signs_in_once_and_collects_incrementally(t: TestDeployment) {
        let demo = Demo::start().await;
        let conn = t.connection(&manifest(), json!({}), None).await;
        let (first, requests) = demo.run(&t, &conn).await;
        assert!(first.succeeded(), "{first:?}");
        assert_eq!(first.records_written, browser_demo_site::BOOKS as u64);
        assert_eq!(sign_ins(&requests), 1);
        let c = t.dep.store.connection(&conn).await.unwrap().unwrap();
        assert_eq!(c.account_identity, Some(json!("demo-reader")));
        assert_eq!(first.commit.as_ref().unwrap()["books"], json!({ "added": "2026-01-12T09:00:00Z" }));

        let (second, requests) = demo.run(&t, &conn).await;
        assert!(second.succeeded(), "{second:?}");
        assert_eq!(second.records_written, 0);
        assert_eq!(sign_ins(&requests), 0, "the stored profile is still signed in");
        assert_eq!(demo.service.live_processes(), 0);
    }
}

on_both_backends! {
    /// The proof `browser_ephemeral_cleanup` of the demo: in ephemeral mode
    /// every run signs in again and nothing is stored.
    async fn the_browser_demo_in_ephemeral_mode_signs_in_every_run_and_keeps_nothing(t: TestDeployment) {
        let demo = Demo::start().await;
        let conn = t.connection(&manifest(), json!({ "reader": "ada" }), None).await;
        t.dep.store.set_browser_session_mode(&conn, BrowserSessionMode::Ephemeral).await.unwrap();
        for _ in 0..2 {
            let (out, requests) = demo.run(&t, &conn).await;
            assert!(out.succeeded(), "{out:?}");
            assert_eq!(sign_ins(&requests), 1, "signed out at every start");
            assert!(t.dep.store.browser_profile(&conn).await.unwrap().is_none());
            let cleanup = t
                .dep
                .store
                .events(&out.run_id)
                .await
                .unwrap()
                .into_iter()
                .find(|e| e.kind == "run.browser_cleanup")
                .unwrap()
                .data;
            assert_eq!((cleanup["profile"].as_str(), cleanup["complete"].as_bool()), (Some("destroyed"), Some(true)));
        }
        assert_eq!(demo.service.live_processes(), 0);
    }
}
