//! The credential bootstrap: an internal integration's secret (`ntn_…`)
//! made for the owner at `www.notion.so/my-integrations`, in the host's
//! browser.
//!
//! 1. Open my-integrations in the connection's own profile; a sign-in form
//!    there means signed out: the owner's email (a `credentials` question),
//!    then the login code Notion emails (`otp`), or the password.
//! 2. "New integration": a name, the workspace, the read capabilities
//!    (read content, read user information without email); submit.
//! 3. Only a workspace owner can create an integration, and Notion does not
//!    say so: the form simply stays. No integration page after submitting
//!    is `not_workspace_owner`.
//! 4. "Show" reveals the secret; it is handed to the host by selector.

use pdpp_sdk::bootstrap::{self as fail, ask, at, step};
use pdpp_sdk::{Browser, BrowserError, Failure, InteractionKind, Run, json};
use std::time::Duration;

const PROVIDER: &str = "Notion";

const WEB: &str = "https://www.notion.so";
const EMAIL: &str = "input[type=email]";
const PASSWORD: &str = "input[type=password]";
const LOGIN_CODE: &str = "input[name=code]";
const NEW: &str = "#new-integration";
const NAME: &str = "input[name=name]";
const WORKSPACE: &str = "select[name=workspace]";
const CAPABILITIES: &[&str] = &["read_content", "read_user_without_email"];
const SHOW: &str = "#show-secret";
const SECRET: &str = "#integration-secret";

fn sign_in(run: &mut Run, b: &Browser) -> Result<(), Failure> {
    step(run, "sign_in");
    let login = ask(
        run,
        PROVIDER,
        InteractionKind::Credentials,
        "Sign in to Notion (as a workspace owner): the host creates an internal integration for this connection in \
         its browser.",
        json!({ "type": "object", "required": ["email"],
                "properties": { "email": { "type": "string", "title": "Notion account email" },
                                "password": { "type": "string", "format": "password",
                                              "title": "Password (leave empty to get a login code)" } } }),
    )?;
    b.fill(EMAIL, login["email"].as_str().unwrap_or_default())
        .map_err(at("sign_in"))?;
    b.click("button[type=submit]").map_err(at("sign_in"))?;
    let _ = b.wait_for(&format!("{PASSWORD}, {LOGIN_CODE}"), Duration::from_secs(10));
    // A password given arrives as a handle (its schema says `password`).
    let password = login["password"].as_str().is_some_and(|p| !p.is_empty());
    if b.is_present(PASSWORD)? && password {
        b.fill_secret(PASSWORD, &run.secret("password")?)
            .map_err(at("sign_in"))?;
        b.click("button[type=submit]").map_err(at("sign_in"))?;
        let _ = b.wait_for(NEW, Duration::from_secs(10));
        if b.is_present(PASSWORD)? {
            return Err(fail::login_failed("Notion did not accept the password"));
        }
    } else if b.is_present(LOGIN_CODE)? {
        step(run, "login_code");
        let answer = ask(
            run,
            PROVIDER,
            InteractionKind::Otp,
            "Notion sent a login code to your email address: enter it.",
            json!({ "type": "object", "required": ["code"], "properties": { "code": { "type": "string" } } }),
        )?;
        b.fill(LOGIN_CODE, answer["code"].as_str().unwrap_or_default())
            .map_err(at("login_code"))?;
        b.click("button[type=submit]").map_err(at("login_code"))?;
        let _ = b.wait_for(NEW, Duration::from_secs(10));
        if b.is_present(LOGIN_CODE)? {
            return Err(fail::otp_rejected("Notion did not accept the login code"));
        }
    } else if b.is_present(EMAIL)? {
        return Err(fail::login_failed("Notion did not accept the email address"));
    }
    Ok(())
}

/// Make the secret for `field` and hand it to the host.
pub fn run(run: &mut Run, field: &str) -> Result<(), Failure> {
    if field != "token" {
        return Err(fail::unsupported(field));
    }
    let b = run.browser();
    step(run, "open_integrations");
    b.navigate(&format!("{WEB}/my-integrations"))
        .map_err(at("open_integrations"))?;
    if b.is_present(EMAIL)? {
        sign_in(run, &b)?;
        b.navigate(&format!("{WEB}/my-integrations"))
            .map_err(at("open_integrations"))?;
    }
    step(run, "new_integration");
    b.click(NEW).map_err(at("new_integration"))?;
    b.wait_for(NAME, Duration::from_secs(20))
        .map_err(at("new_integration"))?;
    let name = format!("PDPP connector ({})", &pdpp_sdk::now_rfc3339()[..10]);
    b.fill(NAME, &name).map_err(at("new_integration"))?;
    let workspaces = b
        .attributes(&format!("{WORKSPACE} option"), "value", 20)
        .map_err(at("new_integration"))?;
    if let Some(first) = workspaces.values.into_iter().flatten().next() {
        b.select(WORKSPACE, &first).map_err(at("new_integration"))?;
    }
    step(run, "capabilities");
    for capability in CAPABILITIES {
        let checkbox = format!("input[type=checkbox][value=\"{capability}\"]");
        if b.attribute(&checkbox, "checked").map_err(at("capabilities"))?.is_none() {
            b.click(&checkbox).map_err(at("capabilities"))?;
        }
    }
    b.click("form button[type=submit]").map_err(at("capabilities"))?;
    // A member who is not a workspace owner gets no error: the form stays.
    match b.wait_for(SHOW, Duration::from_secs(15)) {
        Ok(()) => {}
        Err(BrowserError::Timeout | BrowserError::NotFound(_)) if b.is_present(NAME)? => {
            return Err(fail::not_workspace_owner(
                "Notion did not create the integration: only a workspace owner can (ask an owner, or paste a secret \
                 they made)",
            ));
        }
        Err(BrowserError::Timeout) => {
            return Err(fail::page_changed("show_secret", "the integration page did not appear"));
        }
        Err(e) => return Err(e.into()),
    }
    step(run, "show_secret");
    b.click(SHOW).map_err(at("show_secret"))?;
    b.wait_for(SECRET, Duration::from_secs(10)).map_err(at("show_secret"))?;
    step(run, "capture_secret");
    b.capture_credential(field, SECRET, None)
        .map_err(at("capture_secret"))?;
    Ok(())
}
