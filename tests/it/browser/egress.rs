//! Egress: a page on an allowed origin reaches nothing the run's policy
//! refuses — not by navigation, redirect, fetch, iframe or subresource, and
//! not at a private address behind an allowed name. Each refusal is in the
//! session's request summaries with its reason, and the refused server
//! received nothing.

use super::*;
use pdpp_host::browser::{BrowserError, BrowserRequest, Operation, Refusal};

fn refused(requests: &[BrowserRequest], origin: &str) -> Option<Refusal> {
    requests.iter().find(|r| r.origin == origin).and_then(|r| r.refused)
}

fn sink_origin(sink: &Sink) -> String {
    // Summaries show origins with their port.
    sink.origin()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn navigation_to_a_disallowed_origin_is_refused_before_anything_is_sent() {
    let f = Fixture::new().await;
    let mut s = f.session(&[]).await;
    let err = s
        .navigate(&format!("{}/steal", f.sink.origin()), soon())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, BrowserError::NotAllowed { operation: Operation::Navigate, reason: Refusal::OriginNotAllowed, target }
            if *target == sink_origin(&f.sink)),
        "{err:?}"
    );
    let scheme = s.navigate("file:///etc/passwd", soon()).await.unwrap_err();
    assert!(
        matches!(
            scheme,
            BrowserError::NotAllowed {
                reason: Refusal::SchemeNotAllowed,
                ..
            }
        ),
        "{scheme:?}"
    );
    assert_eq!(f.sink.connections(), 0);
    s.discard().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_to_a_disallowed_origin_is_blocked_and_summarised() {
    let f = Fixture::new().await;
    let mut s = f.session(&[]).await;
    let err = s.navigate(&format!("{SITE}/redirect-away"), soon()).await.unwrap_err();
    assert!(
        matches!(&err, BrowserError::NotAllowed { reason: Refusal::OriginNotAllowed, target, .. }
            if *target == sink_origin(&f.sink)),
        "{err:?}"
    );
    let requests = s.requests();
    assert_eq!(
        refused(&requests, &sink_origin(&f.sink)),
        Some(Refusal::OriginNotAllowed),
        "{requests:?}"
    );
    assert!(
        requests
            .iter()
            .any(|r| r.origin == "https://www.example.com:443" && r.status == Some(303)),
        "the redirect itself was allowed: {requests:?}"
    );
    assert_eq!(f.sink.connections(), 0, "the disallowed server received nothing");
    s.discard().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_or_websocket_to_a_disallowed_origin_is_blocked_and_summarised() {
    let f = Fixture::new().await;
    let mut s = f.session(&[]).await;
    s.navigate(&format!("{SITE}/fetch-away"), soon()).await.unwrap();
    s.wait_for("#status.done", soon()).await.unwrap();
    s.wait_for("#ws.done", soon()).await.unwrap();
    assert_eq!(s.read_text("#status", soon()).await.unwrap(), "blocked");
    assert_eq!(s.read_text("#ws", soon()).await.unwrap(), "blocked");
    let requests = s.requests();
    let fetch = requests
        .iter()
        .find(|r| r.origin == sink_origin(&f.sink))
        .expect("the fetch is summarised");
    assert_eq!(fetch.refused, Some(Refusal::OriginNotAllowed));
    assert_eq!((fetch.status, fetch.bytes_out, fetch.bytes_in), (None, 0, 0));
    // A WebSocket goes through a tunnel, whose scheme the proxy cannot see.
    let socket = requests
        .iter()
        .find(|r| r.method == "CONNECT" && r.origin == format!("https://127.0.0.1:{}", f.sink.port))
        .expect("the WebSocket is summarised");
    assert_eq!(socket.refused, Some(Refusal::OriginNotAllowed));
    assert_eq!(f.sink.connections(), 0, "the disallowed server received nothing");
    s.discard().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_iframe_of_a_disallowed_origin_is_blocked_and_summarised() {
    let f = Fixture::new().await;
    let mut s = f.session(&[]).await;
    let page = s.navigate(&format!("{SITE}/frame-away"), soon()).await.unwrap();
    assert_eq!(page.url, format!("{SITE}/frame-away"), "the page itself loads");
    let sink = sink_origin(&f.sink);
    // The frame loads in parallel with the page's own load event on some
    // Chromium versions; wait for its summary rather than assume the order.
    let mut requests = s.requests();
    for _ in 0..200 {
        if refused(&requests, &sink).is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        requests = s.requests();
    }
    assert_eq!(
        refused(&requests, &sink),
        Some(Refusal::OriginNotAllowed),
        "{requests:?}"
    );
    assert_eq!(f.sink.connections(), 0, "the disallowed server received nothing");
    s.discard().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resources_at_private_addresses_are_blocked_even_on_allowed_origins() {
    let f = Fixture::new().await;
    let localhost = format!("http://localhost:{}", f.sink.port);
    let mut s = f.session(&[&localhost, "http://10.255.255.1"]).await;
    s.navigate(&format!("{SITE}/private"), soon()).await.unwrap();
    let mut requests = s.requests();
    for _ in 0..200 {
        if requests
            .iter()
            .filter(|r| r.refused == Some(Refusal::AddressBlocked))
            .count()
            == 2
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        requests = s.requests();
    }
    assert_eq!(
        refused(&requests, &format!("http://localhost:{}", f.sink.port)),
        Some(Refusal::AddressBlocked),
        "{requests:?}"
    );
    assert_eq!(
        refused(&requests, "http://10.255.255.1:80"),
        Some(Refusal::AddressBlocked),
        "{requests:?}"
    );
    assert_eq!(f.sink.connections(), 0, "nothing reached the loopback server");
    // Navigating there is refused with the same reason.
    let err = s.navigate(&format!("{localhost}/pixel.png"), soon()).await.unwrap_err();
    assert!(
        matches!(
            err,
            BrowserError::NotAllowed {
                reason: Refusal::AddressBlocked,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(f.sink.connections(), 0);
    s.discard().await;
}
