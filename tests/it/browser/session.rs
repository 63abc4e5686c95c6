//! What a connector does with a session: navigate, wait, fill, select,
//! click, read one or many elements; and the rewrite rule that the connector
//! only ever sees declared URLs.

use super::*;
use pdpp_host::browser::{BrowserError, Matches};

/// "Is it there now?" looks once, even with no time to wait: a deadline
/// already passed must not answer "absent" without looking.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_wait_looks_once() {
    let f = Fixture::new().await;
    let mut s = f.session(&[]).await;
    s.navigate(&format!("{SITE}/form"), soon()).await.unwrap();
    assert!(s.is_present("#user", soon()).await.unwrap());
    assert!(!s.is_present("#nowhere", soon()).await.unwrap());
    let passed = std::time::Instant::now();
    assert!(
        matches!(s.wait_for("#user", passed).await, Err(BrowserError::Timeout { .. })),
        "a wait with no time left does not look"
    );
    s.discard().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connector_fills_a_form_submits_it_and_reads_the_result() {
    let f = Fixture::new().await;
    let mut s = f.session(&[]).await;
    let page = s.navigate(&format!("{SITE}/form"), soon()).await.unwrap();
    assert_eq!(page.url, format!("{SITE}/form"));
    assert_eq!(page.title, "Sign in");
    s.wait_for("#login", soon()).await.unwrap();
    s.fill("#user", "ada", soon()).await.unwrap();
    assert_eq!(
        s.read_attribute("#user", "value", soon()).await.unwrap().as_deref(),
        Some("ada"),
        "what the connector typed itself can be read back"
    );
    s.fill_secret("#pass", "correct horse battery", soon()).await.unwrap();
    s.select_option("#plan", "pro \"plus\"", soon()).await.unwrap();
    s.click("#submit", soon()).await.unwrap();
    s.wait_for("#welcome", soon()).await.unwrap();
    assert_eq!(s.read_text("#welcome", soon()).await.unwrap(), "Welcome ada");
    assert_eq!(s.read_text("#plan", soon()).await.unwrap(), "pro \"plus\"");
    assert_eq!(s.title(soon()).await.unwrap(), "Welcome");
    assert_eq!(s.current_url(soon()).await.unwrap(), format!("{SITE}/login"));

    let missing = s.click("#nowhere", soon()).await.unwrap_err();
    assert!(
        matches!(&missing, BrowserError::SelectorNotFound { selector } if selector == "#nowhere"),
        "{missing:?}"
    );
    let wrong = s.select_option("#welcome", "x", soon()).await.unwrap_err();
    assert!(matches!(wrong, BrowserError::WrongElement { .. }), "{wrong:?}");
    let invalid = s.read_text("##", soon()).await.unwrap_err();
    assert!(matches!(invalid, BrowserError::InvalidSelector { .. }), "{invalid:?}");
    s.discard().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paged_listing_is_read_page_by_page_with_bounded_reads() {
    let f = Fixture::new().await;
    let mut s = f.session(&[]).await;
    s.navigate(&format!("{SITE}/items?page=1"), soon()).await.unwrap();
    let mut ids = Vec::new();
    for n in 1..=3 {
        s.wait_for(&format!("#page-{n}"), soon()).await.unwrap();
        let Matches { values, total } = s.read_all_attribute("li.item", "data-id", 100, soon()).await.unwrap();
        assert_eq!(total, 3);
        ids.extend(values.into_iter().map(Option::unwrap));
        if n < 3 {
            s.click("#next", soon()).await.unwrap();
        }
    }
    assert_eq!(
        ids,
        (1..=9).map(|i| format!("item-{i}")).collect::<Vec<_>>(),
        "every item of every page, in order"
    );
    let first_two = s.read_all_text("li.item", 2, soon()).await.unwrap();
    assert_eq!(first_two.values, ["Item 7", "Item 8"]);
    assert_eq!(first_two.total, 3, "the count says how many matched in all");
    let none = s.read_all_text("li.absent", 10, soon()).await.unwrap();
    assert_eq!((none.values.len(), none.total), (0, 0));
    s.discard().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewritten_origins_appear_to_the_connector_only_as_declared_urls() {
    let f = Fixture::new().await;
    let mut s = f.session(&[]).await;
    let loopback = format!("127.0.0.1:{}", f.site.port);
    let page = s.navigate(&format!("{SITE}/items?page=1"), soon()).await.unwrap();
    assert_eq!(page.url, format!("{SITE}/items?page=1"));
    // The page links to where the browser really is: the rewrite target.
    let here = s.read_attribute("#self", "href", soon()).await.unwrap().unwrap();
    assert_eq!(here, format!("{SITE}/items?page=1"));
    let next = s.read_attribute("#next", "href", soon()).await.unwrap().unwrap();
    assert_eq!(next, "/items?page=2", "a relative link stays as the page wrote it");
    s.click("#next", soon()).await.unwrap();
    s.wait_for("#page-2", soon()).await.unwrap();
    let url = s.current_url(soon()).await.unwrap();
    assert_eq!(url, format!("{SITE}/items?page=2"));
    for shown in [&page.url, &here, &url] {
        assert!(!shown.contains(&loopback), "{shown}");
    }
    let requests = s.requests();
    assert!(!requests.is_empty());
    for r in &requests {
        assert!(
            !r.origin.contains(&loopback),
            "summaries name the declared origin: {r:?}"
        );
    }
    assert!(
        requests
            .iter()
            .any(|r| r.origin == "https://www.example.com:443" && r.rewritten && r.status == Some(200)),
        "{requests:?}"
    );
    s.discard().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operation_stops_at_its_deadline_and_the_session_stays_usable() {
    let f = Fixture::new().await;
    let mut s = f.session(&[]).await;
    s.navigate(&format!("{SITE}/form"), soon()).await.unwrap();
    let late = s
        .wait_for("#never-there", Instant::now() + Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(late, BrowserError::Timeout { .. }), "{late:?}");
    assert_eq!(s.title(soon()).await.unwrap(), "Sign in");
    let past = s.title(Instant::now()).await.unwrap_err();
    assert!(matches!(past, BrowserError::Timeout { .. }), "{past:?}");
    s.discard().await;
}
