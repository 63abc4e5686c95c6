//! Secrets stay in the host: what the engine typed from a secret cannot be
//! read back — not the field, not a password input's value, not a URL or
//! text that carries it — and no error names it. Host-only reads hand a
//! value to the host.

use super::*;
use pdpp_host::browser::{BrowserError, ReadRefusal, Refusal};

const SECRET: &str = "correct horse battery";

fn assert_no_secret(err: &BrowserError) {
    assert!(!format!("{err}").contains(SECRET), "{err}");
    assert!(!format!("{err:?}").contains(SECRET), "{err:?}");
}

fn refusal(err: &BrowserError) -> Option<ReadRefusal> {
    match err {
        BrowserError::RefusedRead { reason, .. } => Some(*reason),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_filled_field_and_a_password_value_cannot_be_read_back() {
    let f = Fixture::new().await;
    let mut s = f.session(&[]).await;
    s.navigate(&format!("{SITE}/form"), soon()).await.unwrap();
    s.fill_secret("#pass", SECRET, soon()).await.unwrap();
    s.fill_secret("#otp", "914263", soon()).await.unwrap();

    // Every way of reading the secret-filled fields is refused.
    for err in [
        s.read_attribute("#pass", "value", soon()).await.unwrap_err(),
        s.read_attribute("#pass", "VALUE ", soon()).await.unwrap_err(),
        s.read_attribute("#otp", "value", soon()).await.unwrap_err(),
        s.read_attribute("#otp", "defaultValue", soon()).await.unwrap_err(),
        s.read_text("#otp", soon()).await.unwrap_err(),
        s.read_all_attribute("input", "value", 10, soon()).await.unwrap_err(),
        s.host_read_attribute("#pass", "value", soon()).await.unwrap_err(),
    ] {
        assert!(
            matches!(
                refusal(&err),
                Some(ReadRefusal::SecretFilledElement | ReadRefusal::PasswordValue)
            ),
            "{err:?}"
        );
        assert_no_secret(&err);
    }
    assert_eq!(
        refusal(&s.read_attribute("#otp", "value", soon()).await.unwrap_err()),
        Some(ReadRefusal::SecretFilledElement)
    );
    // A password input the engine never filled: its value is still refused.
    assert_eq!(
        refusal(&s.read_attribute("#prefilled", "value", soon()).await.unwrap_err()),
        Some(ReadRefusal::PasswordValue)
    );
    // Other attributes of a password input are fine.
    assert_eq!(
        s.read_attribute("#prefilled", "type", soon()).await.unwrap().as_deref(),
        Some("password")
    );
    // The page's text never holds an input's value.
    let body = s.read_text("body", soon()).await.unwrap();
    assert!(!body.contains(SECRET) && !body.contains("914263"));
    s.discard().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_is_typed_only_into_a_text_like_input() {
    let f = Fixture::new().await;
    let mut s = f.session(&[]).await;
    s.navigate(&format!("{SITE}/form"), soon()).await.unwrap();
    for selector in ["#note", "#plan", "#submit"] {
        let err = s.fill_secret(selector, SECRET, soon()).await.unwrap_err();
        assert!(
            matches!(&err, BrowserError::NotAllowed { reason: Refusal::SecretTargetNotAnInput, target, .. } if target == selector),
            "{err:?}"
        );
        assert_no_secret(&err);
    }
    assert_eq!(s.read_text("#note", soon()).await.unwrap(), "note", "nothing was typed");
    s.discard().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_that_the_page_moves_into_its_url_is_not_returned() {
    let f = Fixture::new().await;
    let mut s = f.session(&[]).await;
    s.navigate(&format!("{SITE}/form-get"), soon()).await.unwrap();
    s.fill("#user", "ada", soon()).await.unwrap();
    s.fill_secret("#pass", SECRET, soon()).await.unwrap();
    s.click("#submit", soon()).await.unwrap();
    s.wait_for("#landed", soon()).await.unwrap();
    // The GET form put `pass=correct+horse+battery` into the URL: the
    // encoded secret is the secret.
    let err = s.current_url(soon()).await.unwrap_err();
    assert_eq!(refusal(&err), Some(ReadRefusal::ContainsFilledSecret));
    assert_no_secret(&err);
    assert!(!format!("{err:?}").contains("correct+horse"));
    // A URL without it is returned as usual.
    let page = s.navigate(&format!("{SITE}/form-get"), soon()).await.unwrap();
    assert_eq!(page.url, format!("{SITE}/form-get"));
    s.fill_secret("#pass", "Tr0ub4dor&3", soon()).await.unwrap();
    s.click("#submit", soon()).await.unwrap();
    s.wait_for("#landed", soon()).await.unwrap();
    let err = s.current_url(soon()).await.unwrap_err();
    assert_eq!(
        refusal(&err),
        Some(ReadRefusal::ContainsFilledSecret),
        "percent-encoded: {err:?}"
    );
    // Reads that do not carry it still work.
    assert_eq!(s.read_text("#landed", soon()).await.unwrap(), "landed");
    s.discard().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_read_hands_the_value_to_the_host() {
    let f = Fixture::new().await;
    let mut s = f.session(&[]).await;
    s.navigate(&format!("{SITE}/token"), soon()).await.unwrap();
    let token = s.host_read_text("#token", soon()).await.unwrap();
    assert_eq!(token.as_str(), "tok_made_for_the_owner_5150");
    let copied = s.host_read_attribute("#copy", "value", soon()).await.unwrap().unwrap();
    assert_eq!(copied.as_str(), "tok_made_for_the_owner_5150");
    let missing = s.host_read_text("#nothing", soon()).await.unwrap_err();
    assert!(matches!(missing, BrowserError::SelectorNotFound { .. }), "{missing:?}");
    s.discard().await;
}
