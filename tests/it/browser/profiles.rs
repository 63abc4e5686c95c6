//! Source-scoped profiles: a login (a cookie) survives into the next session
//! of the same connection through a sealed profile, and only there.

use super::*;
use pdpp_host::browser::{AtEnd, ProfileError, SealedProfile};
use pdpp_host::vault::VaultKey;

/// Who the site thinks the session is: a run of a connection, started with
/// what that connection's profile opened to.
async fn whoami(f: &Fixture, profile: Option<pdpp_host::browser::ProfileArchive>) -> String {
    let mut s = f
        .service
        .start(
            SessionSpec {
                policy: f.site.policy(&[]),
                profile,
            },
            soon(),
            &CancellationToken::new(),
        )
        .await
        .unwrap();
    s.navigate(&format!("{SITE}/whoami"), soon()).await.unwrap();
    let who = s.read_text("#who", soon()).await.unwrap();
    s.discard().await;
    who
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_profile_carries_a_login_to_the_next_session_of_its_connection_only() {
    let f = Fixture::new().await;
    let key = VaultKey::generate();

    // First run of connection A logs in: the site sets a persistent cookie.
    let mut first = f.session(&[]).await;
    let dir = first.user_data_dir().to_path_buf();
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "the profile directory is private");
    }
    first
        .navigate(&format!("{SITE}/cookie?sid=session-of-a"), soon())
        .await
        .unwrap();
    let end = first.end(AtEnd::KeepProfile).await.unwrap();
    assert!(end.cleanup.complete(), "{:?}", end.cleanup);
    assert!(!dir.exists(), "the profile directory is wiped at the end");
    let stored = end
        .profile
        .expect("the profile was packed")
        .seal(&key, "con_a")
        .to_bytes();
    assert!(
        !stored.windows(12).any(|w| w == b"session-of-a"),
        "the stored profile is sealed"
    );

    // Next run of A: the login is there.
    let sealed = SealedProfile::from_bytes(&stored).unwrap();
    let opened = sealed.open(&key, "con_a").unwrap();
    assert_eq!(whoami(&f, Some(opened)).await, "session-of-a");

    // Connection B cannot open A's profile, and its own session is empty.
    assert!(matches!(
        sealed.open(&key, "con_b"),
        Err(ProfileError::DoesNotOpen { .. })
    ));
    assert_eq!(whoami(&f, None).await, "anonymous");
    assert_eq!(f.service.live_processes(), 0);
}
