//! The credential bootstrap: a classic personal access token made for the
//! owner at `github.com/settings/tokens/new`, in the host's browser.
//!
//! 1. Open `github.com` in the connection's own profile; signed in when the
//!    page names its user (`<meta name="user-login">`) and is not a login,
//!    session or verification page.
//! 2. Otherwise sign in at `/login` with the login the owner gives in a
//!    `credentials` question, then answer what GitHub asks: a one-time code
//!    (`otp`), an emailed device-verification code (`otp`).
//! 3. Open the token form with its description and scopes in the URL;
//!    answer the challenges on the way (sudo: the password again, else a
//!    code), up to six times.
//! 4. Fill the description, choose the longest expiry offered ("no
//!    expiration" when it is), tick the scopes the streams need, generate.
//! 5. Hand the token shown once (`#new-oauth-token`, or the
//!    `clipboard-copy` holding it) to the host by selector: this connector
//!    never reads it.
//!
//! Every failure is typed (`pdpp_sdk::bootstrap`): a refused login or code
//! can be retried, a page that changed names its step.

use pdpp_sdk::bootstrap::{self as fail, ask, at, step};
use pdpp_sdk::{Browser, BrowserError, Failure, InteractionKind, Run, json};
use std::time::Duration;

const PROVIDER: &str = "GitHub";

const WEB: &str = "https://github.com";
/// What the streams read: the profile (`read:user`), private repositories,
/// issues and pull requests (`repo`), gists (`gist`).
pub const SCOPES: &[&str] = &["read:user", "repo", "gist"];

const LOGIN_FIELD: &str = "#login_field";
const OTP_FIELDS: &str = "#app_totp, #sms_totp, input[name=otp], input#otp";
const FORM: &str = "#oauth_access_description";
const EXPIRY: &str = "select[name=\"oauth_access[expires_at]\"]";
const TOKEN_TEXT: &str = "#new-oauth-token";
const TOKEN_COPY: &str = "clipboard-copy[value^=\"ghp_\"]";

fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A browser call that failed at `at`: a missing element is the page
/// having changed at that step.

fn signed_in(b: &Browser) -> Result<Option<String>, Failure> {
    let page = b.current()?;
    let path = page.url.strip_prefix(WEB).unwrap_or(&page.url);
    if ["/login", "/session", "verified-device", "two-factor", "/sessions/sudo"]
        .iter()
        .any(|p| path.contains(p))
    {
        return Ok(None);
    }
    match b.attribute("meta[name=\"user-login\"]", "content") {
        Ok(Some(login)) if !login.trim().is_empty() => Ok(Some(login.trim().to_owned())),
        Ok(_) | Err(BrowserError::NotFound(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn is_device_verification(b: &Browser) -> Result<bool, Failure> {
    let url = b.current()?.url;
    Ok(url.contains("verified-device") || url.contains("device-verification"))
}

/// The login form: ask for the login, fill, submit.
fn submit_login(run: &mut Run, b: &Browser) -> Result<(), Failure> {
    step(run, "sign_in");
    let login = ask(
        run,
        PROVIDER,
        InteractionKind::Credentials,
        "Sign in to GitHub: the host creates a read-only personal access token for this connection in its browser.",
        json!({ "type": "object", "required": ["username", "password"],
                "properties": { "username": { "type": "string", "title": "GitHub username or email" },
                                "password": { "type": "string", "format": "password", "title": "Password" } } }),
    )?;
    let user = login["username"].as_str().unwrap_or_default();
    // The password arrives as a handle (its schema says `password`): the
    // host types it; this connector never holds it.
    let password = run.secret("password")?;
    b.fill(LOGIN_FIELD, user).map_err(at("sign_in"))?;
    b.fill_secret("#password", &password).map_err(at("sign_in"))?;
    b.click("input[type=submit][name=commit], button[type=submit]")
        .map_err(at("sign_in"))?;
    // The next page: signed in, a code to enter, or the refusal.
    let _ = b.wait_for(
        &format!("meta[name=\"user-login\"], {OTP_FIELDS}, .flash-error"),
        Duration::from_secs(10),
    );
    Ok(())
}

/// A one-time code (authenticator app or SMS), or the emailed
/// device-verification code: ask, fill, submit; refused → `otp_rejected`.
fn submit_code(run: &mut Run, b: &Browser, device: bool) -> Result<(), Failure> {
    let (name, message, field) = if device {
        (
            "device_verification",
            "GitHub sent a verification code to your email address: enter it.",
            "input[name=otp], #otp",
        )
    } else {
        (
            "two_factor",
            "Enter the six-digit code from your GitHub authenticator app.",
            OTP_FIELDS,
        )
    };
    step(run, name);
    let answer = ask(
        run,
        PROVIDER,
        InteractionKind::Otp,
        message,
        json!({ "type": "object", "required": ["code"],
                "properties": { "code": { "type": "string", "pattern": "^[0-9]{6,8}$" } } }),
    )?;
    let code = answer["code"].as_str().unwrap_or_default().trim().to_owned();
    b.fill(field, &code).map_err(at(name))?;
    b.click("button[type=submit], input[type=submit]").map_err(at(name))?;
    // Still asking for a code: the code was refused.
    if b.is_present(field)? && b.is_present(".flash-error")? {
        return Err(fail::otp_rejected("GitHub did not accept the code"));
    }
    Ok(())
}

/// The sudo page: the password again (preferred), else a code.
fn sudo(run: &mut Run, b: &Browser) -> Result<(), Failure> {
    step(run, "sudo");
    if !b.is_present("input[name=sudo_password]")? && b.is_present("a[href*=sudo_password]")? {
        b.click("a[href*=sudo_password]").map_err(at("sudo"))?;
    }
    if b.is_present("input[name=sudo_password]")? {
        ask(
            run,
            PROVIDER,
            InteractionKind::Credentials,
            "GitHub asks for your password again before it creates a token.",
            json!({ "type": "object", "required": ["password"],
                    "properties": { "password": { "type": "string", "format": "password" } } }),
        )?;
        let password = run.secret("password")?;
        b.fill_secret("input[name=sudo_password]", &password)
            .map_err(at("sudo"))?;
        b.click("button[type=submit], input[type=submit]").map_err(at("sudo"))?;
        // The next page: the token form, or the refusal (not the old page).
        let _ = b.wait_for(&format!("{FORM}, .flash-error"), Duration::from_secs(10));
        if !b.is_present(FORM)? && b.is_present("input[name=sudo_password]")? {
            return Err(fail::login_failed("GitHub did not accept the password"));
        }
        return Ok(());
    }
    if b.is_present(OTP_FIELDS)? {
        return submit_code(run, b, false);
    }
    Err(fail::page_changed("sudo", "neither a password nor a code is asked for"))
}

/// Signed in after the login form and its challenges, or why not.
fn sign_in(run: &mut Run, b: &Browser) -> Result<String, Failure> {
    b.navigate(&format!("{WEB}/login")).map_err(at("sign_in"))?;
    submit_login(run, b)?;
    for _ in 0..4 {
        if let Some(login) = signed_in(b)? {
            return Ok(login);
        }
        if b.is_present(OTP_FIELDS)? && !is_device_verification(b)? {
            submit_code(run, b, false)?;
        } else if is_device_verification(b)? {
            submit_code(run, b, true)?;
        } else if b.is_present(LOGIN_FIELD)? {
            return Err(fail::login_failed("GitHub did not accept the username or password"));
        } else {
            break;
        }
    }
    signed_in(b)?.ok_or_else(|| fail::login_failed("GitHub did not sign in"))
}

/// Make the token for `field` and hand it to the host.
pub fn run(run: &mut Run, field: &str) -> Result<(), Failure> {
    if field != "token" {
        return Err(fail::unsupported(field));
    }
    let b = run.browser();
    step(run, "open_session");
    b.navigate(&format!("{WEB}/")).map_err(at("open_session"))?;
    let login = match signed_in(&b)? {
        Some(login) => login,
        None => sign_in(run, &b)?,
    };
    // The account this connection's browser is signed into.
    b.session_account(&login)?;

    step(run, "open_token_form");
    let name = format!("PDPP connector ({})", &pdpp_sdk::now_rfc3339()[..10]);
    let form_url = format!(
        "{WEB}/settings/tokens/new?description={}&scopes={}",
        enc(&name),
        enc(&SCOPES.join(","))
    );
    b.navigate(&form_url).map_err(at("open_token_form"))?;
    for _ in 0..6 {
        if b.is_present(FORM)? {
            break;
        }
        let url = b.current()?.url;
        if url.contains("/sessions/sudo") {
            sudo(run, &b)?;
        } else if url.contains("/login") && b.is_present(LOGIN_FIELD)? {
            submit_login(run, &b)?;
        } else if is_device_verification(&b)? {
            submit_code(run, &b, true)?;
        } else if b.is_present(OTP_FIELDS)? {
            submit_code(run, &b, false)?;
        } else if b.is_present(".flash-error[data-rate-limited]")? || url.contains("rate-limit") {
            return Err(fail::rate_limited("GitHub asks to wait before creating another token"));
        } else {
            b.navigate(&form_url).map_err(at("open_token_form"))?;
        }
    }
    if !b.is_present(FORM)? {
        return Err(fail::page_changed(
            "open_token_form",
            "the new-token form did not appear",
        ));
    }

    step(run, "fill_token_form");
    b.fill(FORM, &name).map_err(at("fill_token_form"))?;
    let options = b
        .attributes(&format!("{EXPIRY} option"), "value", 50)
        .map_err(at("choose_expiry"))?;
    let values: Vec<String> = options.values.into_iter().flatten().collect();
    let expiry = if values.iter().any(|v| v == "none") {
        "none".to_owned()
    } else {
        values
            .last()
            .cloned()
            .ok_or_else(|| fail::page_changed("choose_expiry", "no expiry is offered"))?
    };
    b.select(EXPIRY, &expiry).map_err(at("choose_expiry"))?;
    if b.is_present("#expiration-confirm")? {
        b.click("#expiration-confirm").map_err(at("choose_expiry"))?;
    }
    for scope in SCOPES {
        let checkbox = format!("input[type=checkbox][value=\"{scope}\"]");
        if b.attribute(&checkbox, "checked").map_err(at("tick_scopes"))?.is_none() {
            b.click(&checkbox).map_err(at("tick_scopes"))?;
        }
    }

    step(run, "generate_token");
    b.click("#new_oauth_access button[type=submit]")
        .map_err(at("generate_token"))?;
    match b.wait_for(
        &format!("{TOKEN_TEXT}, {TOKEN_COPY}, .flash-error"),
        Duration::from_secs(20),
    ) {
        Ok(()) => {}
        Err(BrowserError::Timeout) => {
            return Err(fail::page_changed("generate_token", "the new token was not shown"));
        }
        Err(e) => return Err(e.into()),
    }
    if b.is_present(".flash-error")? && !b.is_present(TOKEN_TEXT)? && !b.is_present(TOKEN_COPY)? {
        let text = b.text(".flash-error").unwrap_or_default().to_lowercase();
        if text.contains("rate") || text.contains("too many") {
            return Err(fail::rate_limited("GitHub asks to wait before creating another token"));
        }
        return Err(fail::page_changed("generate_token", "GitHub refused the form"));
    }

    step(run, "capture_token");
    if b.is_present(TOKEN_TEXT)? {
        b.capture_credential(field, TOKEN_TEXT, None)
    } else {
        b.capture_credential(field, TOKEN_COPY, Some("value"))
    }
    .map_err(at("capture_token"))?;
    Ok(())
}
