//! The Chromium command line and WebDriver capabilities of a session.
//!
//! Headless, no GPU, no background traffic of Chromium's own (component
//! updates, sync, safe-browsing, metrics, crash reports), cookies under
//! `--password-store=basic` so the profile is portable, every request through
//! the session's egress proxy (loopback included), no UDP for WebRTC, no
//! name resolution by Chromium itself, downloads blocked, and a bounded disk
//! cache inside the session directory.
//!
//! Chromium's crash handler (crashpad) still starts: without it renderers
//! do not start (`--disable-crashpad-for-testing` leaves every navigation
//! on the new-tab page). It leaves the process group (`setsid`), so teardown
//! finds it by the session's marker variable; its database is under the
//! session's `HOME`, and it uploads nothing without the user's consent,
//! which a fresh profile never gives.

use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::Path;

/// What the flags depend on.
pub(crate) struct Launch<'a> {
    pub chromium: &'a Path,
    pub user_data_dir: &'a Path,
    pub proxy: SocketAddr,
    pub window: (u32, u32),
    /// Chromium's own sandbox needs user namespaces or a setuid helper;
    /// it cannot run as root. `--no-sandbox` when false.
    pub chromium_sandbox: bool,
    pub disk_cache_bytes: u64,
}

/// The Chromium flags of one session.
pub(crate) fn flags(launch: &Launch<'_>) -> Vec<String> {
    let mut flags: Vec<String> = [
        "--headless",
        "--disable-gpu",
        // Chromium's own traffic: none of it is the connector's business.
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-extensions",
        "--disable-domain-reliability",
        "--disable-client-side-phishing-detection",
        "--no-pings",
        "--no-first-run",
        "--no-default-browser-check",
        "--metrics-recording-only",
        "--disable-breakpad",
        "--mute-audio",
        // Cookies encrypted with a fixed key rather than a desktop keyring,
        // so a sealed profile opens in the next session.
        "--password-store=basic",
        // Everything through the proxy: QUIC would not be, WebRTC's UDP would not be.
        "--disable-quic",
        "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
        "--webrtc-ip-handling-policy=disable_non_proxied_udp",
        "--proxy-bypass-list=<-loopback>",
        // Names are resolved by the proxy only, after the policy check.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        "--dns-prefetch-disable",
        "--disable-features=Translate,OptimizationHints,MediaRouter,DialMediaRouteProvider,\
         AutofillServerCommunication,CertificateTransparencyComponentUpdater,\
         InterestFeedContentSuggestions,NetworkTimeServiceQuerying,PrivacySandboxSettings4",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if !launch.chromium_sandbox {
        flags.push("--no-sandbox".into());
    }
    flags.push(format!("--proxy-server=http://{}", launch.proxy));
    flags.push(format!("--user-data-dir={}", launch.user_data_dir.display()));
    flags.push(format!("--disk-cache-size={}", launch.disk_cache_bytes));
    flags.push(format!("--window-size={},{}", launch.window.0, launch.window.1));
    flags
}

/// The W3C capabilities chromedriver gets for one session.
pub(crate) fn capabilities(launch: &Launch<'_>) -> serde_json::Map<String, Value> {
    let caps = json!({
        "browserName": "chrome",
        "pageLoadStrategy": "normal",
        // A page's alert() must not block every later command.
        "unhandledPromptBehavior": "dismiss",
        "goog:chromeOptions": {
            "binary": launch.chromium.to_string_lossy(),
            "args": flags(launch),
            "prefs": {
                "download_restrictions": 3,
                "webrtc": {
                    "ip_handling_policy": "disable_non_proxied_udp",
                    "multiple_routes_enabled": false,
                    "nonproxied_udp_enabled": false,
                },
                "credentials_enable_service": false,
                "profile": { "password_manager_enabled": false },
                "safebrowsing": { "enabled": false },
            },
        },
    });
    match caps {
        Value::Object(map) => map,
        _ => unreachable!("a JSON object literal"),
    }
}
