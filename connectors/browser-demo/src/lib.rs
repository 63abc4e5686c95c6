//! The browser demo connector: signs in to the demo reading-list site
//! (`https://books.example`, served on loopback by `browser-demo-site` and
//! reached through a deployment origin rewrite), reports the reader it is
//! signed in as, and collects the reading list page by page.
//!
//! Everything a real browser-backed connector does, offline: the host's
//! browser, a sign-in that survives between runs (the connection's sealed
//! profile), the session-account report before records, pagination, and an
//! incremental cursor (`added` of the newest book already collected).
//! Settings: `reader` (who to sign in as, default `demo-reader`).

use pdpp_sdk::{Connector, Failure, Run, Value, export_connector, json};
use std::time::Duration;

const SITE: &str = "https://books.example";
/// Pages read at most in one run.
const MAX_PAGES: u32 = 50;

struct BrowserDemo;

impl Connector for BrowserDemo {
    fn run(run: &mut Run) -> Result<(), Failure> {
        let reader = run
            .settings()
            .get("reader")
            .and_then(Value::as_str)
            .unwrap_or("demo-reader")
            .to_owned();
        let browser = run.browser();
        browser.navigate(&format!("{SITE}/list?page=1"))?;
        if !browser.is_present("#signed-in")? {
            // Signed out: the first run, or the site ended the session.
            browser.navigate(&format!("{SITE}/"))?;
            browser.fill("#reader", &reader)?;
            browser.click("#sign-in")?;
            browser.wait_for("#signed-in", Duration::from_secs(30))?;
        }
        let who = browser.attribute("#signed-in", "data-reader")?.unwrap_or_default();
        browser.session_account(&who)?;

        let since = run
            .cursor::<Value>("books")?
            .and_then(|c| c.get("added").and_then(Value::as_str).map(str::to_owned));
        let mut newest: Option<String> = None;
        let mut page = 1;
        'pages: while page <= MAX_PAGES {
            if page > 1 {
                browser.navigate(&format!("{SITE}/list?page={page}"))?;
            }
            let ids = browser.attributes(".book", "data-id", 100)?;
            let added = browser.attributes(".book", "data-added", 100)?;
            let titles = browser.texts(".book .title", 100)?;
            let authors = browser.texts(".book .author", 100)?;
            for i in 0..ids.values.len() {
                let added = added.values.get(i).cloned().flatten().unwrap_or_default();
                // Newest first: what is not newer than the cursor was collected.
                if since.as_deref().is_some_and(|s| added.as_str() <= s) {
                    break 'pages;
                }
                newest = newest.or_else(|| Some(added.clone()));
                let id = ids.values[i].clone().unwrap_or_default();
                let book = json!({
                    "id": id,
                    "title": titles.values.get(i).cloned().unwrap_or_default(),
                    "author": authors.values.get(i).cloned().unwrap_or_default(),
                    "added": added,
                });
                run.record("books", id, &book)?;
            }
            if !browser.is_present("#next")? {
                break;
            }
            page += 1;
        }
        let cursor = newest.or(since);
        if let Some(added) = cursor {
            run.checkpoint("books", &json!({ "added": added }))?;
        }
        Ok(())
    }
}

export_connector!(BrowserDemo);
