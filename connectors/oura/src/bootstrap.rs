//! The credential bootstrap: a personal access token made for the owner at
//! `cloud.ouraring.com/personal-access-tokens`, in the host's browser.
//!
//! 1. Open the token page in the connection's own profile; a sign-in form
//!    there means signed out: sign in with the login the owner gives in a
//!    `credentials` question (and a code, when Oura asks for one).
//! 2. An account without an active Oura Membership has no API access and
//!    cannot make a token: `membership_required`.
//! 3. "Create A New Personal Access Token", a note naming the connection,
//!    create; the token is shown once: handed to the host by selector.

use pdpp_sdk::bootstrap::{self as fail, ask, at, step};
use pdpp_sdk::{Browser, BrowserError, Failure, InteractionKind, Run, json};
use std::time::Duration;

const PROVIDER: &str = "Oura";

const WEB: &str = "https://cloud.ouraring.com";
const LOGIN_EMAIL: &str = "input[name=email]";
const LOGIN_PASSWORD: &str = "input[name=password]";
const CODE: &str = "input[name=code]";
const CREATE: &str = "a[href=\"/personal-access-tokens/new\"], #create-personal-access-token";
const NOTE: &str = "input[name=note]";
const TOKEN: &str = "#personal-access-token, .personal-access-token";
const MEMBERSHIP: &str = "[data-membership-required], a[href*=\"membership\"]";

fn sign_in(run: &mut Run, b: &Browser) -> Result<(), Failure> {
    step(run, "sign_in");
    let login = ask(
        run,
        PROVIDER,
        InteractionKind::Credentials,
        "Sign in to Oura: the host creates a personal access token for this connection in its browser.",
        json!({ "type": "object", "required": ["email", "password"],
                "properties": { "email": { "type": "string", "title": "Oura account email" },
                                "password": { "type": "string", "format": "password" } } }),
    )?;
    b.fill(LOGIN_EMAIL, login["email"].as_str().unwrap_or_default())
        .map_err(at("sign_in"))?;
    // The password arrives as a handle (its schema says `password`).
    b.fill_secret(LOGIN_PASSWORD, &run.secret("password")?)
        .map_err(at("sign_in"))?;
    b.click("button[type=submit]").map_err(at("sign_in"))?;
    // The next page: a code to enter, or the tokens page (a refused login
    // shows the form again, so only these end the wait early).
    let _ = b.wait_for(&format!("{CODE}, {CREATE}, {MEMBERSHIP}"), Duration::from_secs(10));
    if b.is_present(CODE)? {
        step(run, "verification_code");
        let answer = ask(
            run,
            PROVIDER,
            InteractionKind::Otp,
            "Oura sent a verification code to your email address: enter it.",
            json!({ "type": "object", "required": ["code"],
                    "properties": { "code": { "type": "string", "pattern": "^[0-9]{4,8}$" } } }),
        )?;
        b.fill(CODE, answer["code"].as_str().unwrap_or_default())
            .map_err(at("verification_code"))?;
        b.click("button[type=submit]").map_err(at("verification_code"))?;
        let _ = b.wait_for(&format!("{CREATE}, {MEMBERSHIP}"), Duration::from_secs(10));
        if b.is_present(CODE)? {
            return Err(fail::otp_rejected("Oura did not accept the code"));
        }
    }
    if b.is_present(LOGIN_PASSWORD)? {
        return Err(fail::login_failed("Oura did not accept the email or password"));
    }
    Ok(())
}

/// Make the token for `field` and hand it to the host.
pub fn run(run: &mut Run, field: &str) -> Result<(), Failure> {
    if field != "token" {
        return Err(fail::unsupported(field));
    }
    let b = run.browser();
    step(run, "open_tokens_page");
    b.navigate(&format!("{WEB}/personal-access-tokens"))
        .map_err(at("open_tokens_page"))?;
    if b.is_present(LOGIN_EMAIL)? {
        sign_in(run, &b)?;
        b.navigate(&format!("{WEB}/personal-access-tokens"))
            .map_err(at("open_tokens_page"))?;
    }
    if b.is_present(MEMBERSHIP)? && !b.is_present(CREATE)? {
        return Err(fail::membership_required(
            "Oura gives API access to members only: this account has no active Oura Membership",
        ));
    }
    step(run, "create_token");
    b.click(CREATE).map_err(at("create_token"))?;
    b.wait_for(NOTE, Duration::from_secs(20)).map_err(at("create_token"))?;
    let note = format!("PDPP connector ({})", &pdpp_sdk::now_rfc3339()[..10]);
    b.fill(NOTE, &note).map_err(at("create_token"))?;
    b.click("button[type=submit]").map_err(at("create_token"))?;
    match b.wait_for(&format!("{TOKEN}, .error"), Duration::from_secs(20)) {
        Ok(()) => {}
        Err(BrowserError::Timeout) => return Err(fail::page_changed("create_token", "the new token was not shown")),
        Err(e) => return Err(e.into()),
    }
    if !b.is_present(TOKEN)? {
        let text = b.text(".error").unwrap_or_default().to_lowercase();
        if text.contains("too many") || text.contains("rate") {
            return Err(fail::rate_limited("Oura asks to wait before creating another token"));
        }
        return Err(fail::page_changed("create_token", "Oura refused the form"));
    }
    step(run, "capture_token");
    b.capture_credential(field, TOKEN, None).map_err(at("capture_token"))?;
    Ok(())
}
