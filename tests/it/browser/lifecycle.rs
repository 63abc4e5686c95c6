//! A browser is a resource of the run: every way a session ends — end,
//! discard, drop, cancellation, an error while ending, a failed start, even
//! the death of the host process — leaves no Chromium or chromedriver
//! process and no directory; and the deployment's cap on concurrent
//! browsers queues the next run.

use super::*;
use pdpp_host::browser::{AtEnd, BrowserConfig, BrowserError, BrowserLimits, ProfileError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ending_or_discarding_a_session_leaves_no_browser_process_and_no_directory() {
    let f = Fixture::new().await;
    let mut s = f.session(&[]).await;
    s.navigate(&format!("{SITE}/form"), soon()).await.unwrap();
    assert!(s.live_processes() >= 2, "chromedriver and chromium run");
    let dir = s.user_data_dir().to_path_buf();
    let end = s.end(AtEnd::DiscardProfile).await.unwrap();
    assert!(end.profile.is_none());
    assert!(end.cleanup.complete(), "{:?}", end.cleanup);
    assert_eq!(f.service.live_processes(), 0);
    assert!(!dir.exists());

    let s = f.session(&[]).await;
    let dir = s.user_data_dir().to_path_buf();
    let end = s.discard().await;
    assert!(end.cleanup.complete(), "{:?}", end.cleanup);
    assert_eq!(f.service.live_processes(), 0);
    assert!(!dir.exists());
    assert_eq!(f.service.active(), 0, "the slots are free again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_session_kills_its_browser_at_once() {
    let f = Fixture::new().await;
    let mut s = f.session(&[]).await;
    s.navigate(&format!("{SITE}/form"), soon()).await.unwrap();
    let dir = s.user_data_dir().to_path_buf();
    drop(s);
    assert_eq!(f.service.live_processes(), 0);
    assert!(!dir.exists());
    assert_eq!(f.service.active(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_the_run_tears_the_session_down_and_stops_its_operations() {
    let f = Fixture::new().await;
    let cancel = CancellationToken::new();
    let mut s = f
        .service
        .start(
            SessionSpec {
                policy: f.site.policy(&[]),
                profile: None,
            },
            soon(),
            &cancel,
        )
        .await
        .unwrap();
    s.navigate(&format!("{SITE}/form"), soon()).await.unwrap();
    let dir = s.user_data_dir().to_path_buf();
    // An operation in progress when the run is cancelled returns at once.
    let waiting = s.wait_for("#never-there", soon());
    let canceller = cancel.clone();
    let (waited, ()) = tokio::join!(waiting, async move { canceller.cancel() });
    assert!(matches!(waited, Err(BrowserError::Cancelled { .. })), "{waited:?}");
    // Teardown does not wait for the session to be dropped.
    eventually("the cancelled session's processes are gone", || {
        f.service.live_processes() == 0
    })
    .await;
    eventually("the cancelled session's directory is gone", || !dir.exists()).await;
    let after = s.title(soon()).await.unwrap_err();
    assert!(matches!(after, BrowserError::Cancelled { .. }), "{after:?}");
    let ended = s.end(AtEnd::KeepProfile).await.unwrap_err();
    assert!(matches!(ended, BrowserError::Cancelled { .. }), "{ended:?}");
    assert_eq!(f.service.active(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_while_ending_still_leaves_nothing_behind() {
    let sink = Sink::start().await;
    let site = Site::start(&sink).await;
    let service = BrowserService::new(BrowserConfig {
        limits: BrowserLimits {
            max_profile_bytes: 1024,
            ..BrowserLimits::default()
        },
        ..BrowserConfig::default()
    })
    .unwrap();
    let mut s = service
        .start(
            SessionSpec {
                policy: site.policy(&[]),
                profile: None,
            },
            soon(),
            &CancellationToken::new(),
        )
        .await
        .unwrap();
    s.navigate(&format!("{SITE}/cookie?sid=x"), soon()).await.unwrap();
    let dir = s.user_data_dir().to_path_buf();
    let err = s.end(AtEnd::KeepProfile).await.unwrap_err();
    assert!(
        matches!(err, BrowserError::Profile(ProfileError::TooLarge { limit: 1024 })),
        "{err:?}"
    );
    assert_eq!(service.live_processes(), 0);
    assert!(!dir.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_that_cannot_start_fails_typed_and_frees_its_slot() {
    let sink = Sink::start().await;
    let site = Site::start(&sink).await;
    let service = BrowserService::new(BrowserConfig {
        chromedriver: "/nonexistent/chromedriver".into(),
        max_browsers: 1,
        ..BrowserConfig::default()
    })
    .unwrap();
    for _ in 0..2 {
        let err = service
            .start(
                SessionSpec {
                    policy: site.policy(&[]),
                    profile: None,
                },
                soon(),
                &CancellationToken::new(),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, BrowserError::BrowserFailed { .. }), "{err:?}");
        assert_eq!(service.active(), 0, "the slot is free again");
    }
    assert_eq!(service.live_processes(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_concurrency_cap_queues_a_second_session_until_a_browser_ends() {
    let sink = Sink::start().await;
    let site = Site::start(&sink).await;
    let service = service(1);
    let spec = || SessionSpec {
        policy: site.policy(&[]),
        profile: None,
    };
    let first = service.start(spec(), soon(), &CancellationToken::new()).await.unwrap();
    assert_eq!(service.active(), 1);

    // A run waiting for the slot can be cancelled.
    let cancel = CancellationToken::new();
    let queued = {
        let (service, spec, cancel) = (service.clone(), spec(), cancel.clone());
        tokio::spawn(async move { service.start(spec, soon(), &cancel).await })
    };
    eventually("the second run waits for a slot", || service.waiting() == 1).await;
    cancel.cancel();
    let err = queued.await.unwrap().unwrap_err();
    assert!(matches!(err, BrowserError::Cancelled { .. }), "{err:?}");
    assert_eq!(service.waiting(), 0);

    // Another waits until the first browser ends, then starts.
    let queued = {
        let (service, spec) = (service.clone(), spec());
        tokio::spawn(async move { service.start(spec, soon(), &CancellationToken::new()).await })
    };
    eventually("the third run waits for a slot", || service.waiting() == 1).await;
    assert!(!queued.is_finished(), "no second browser while the first runs");
    assert_eq!(service.active(), 1);
    first.discard().await;
    let mut second = queued.await.unwrap().unwrap();
    assert_eq!(service.waiting(), 0);
    second.navigate(&format!("{SITE}/form"), soon()).await.unwrap();
    second.discard().await;
    assert_eq!(service.live_processes(), 0);
}

#[test]
fn browsers_and_profiles_left_by_a_dead_host_process_are_swept_away() {
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    // A host process that no longer exists: the pid of a finished process.
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let dead = gone.id();
    gone.wait().unwrap();
    // Its "browser": a process carrying its marker, in a group of its own.
    let mut orphan = std::process::Command::new("sleep")
        .arg("600")
        .env(pdpp_host::browser::process::OWNER_VAR, format!("{dead}/1/1/"))
        .process_group(0)
        .spawn()
        .unwrap();
    let work = tempfile::tempdir().unwrap();
    let stale = work.path().join(format!("pdpp-b-{dead}-1-00"));
    std::fs::create_dir_all(stale.join("s1/profile/Default")).unwrap();
    std::fs::write(stale.join("s1/profile/Default/Cookies"), "cookie").unwrap();
    // A live host process's directory stays.
    let live = work.path().join("pdpp-b-1-1-00");
    std::fs::create_dir_all(&live).unwrap();

    let sweep = pdpp_host::browser::sweep_orphans(work.path());
    assert!(sweep.processes >= 1, "{sweep:?}");
    assert_eq!(sweep.directories, 1, "{sweep:?}");
    assert_eq!(orphan.wait().unwrap().signal(), Some(9), "the orphan was killed");
    assert!(!stale.exists());
    assert!(live.exists(), "pid 1 is alive: its directory is not touched");
}

/// Chromium's Unix socket lives below the work directory and a socket path
/// holds 107 bytes: a work directory too long for it is refused when the
/// service is made, naming the limit, instead of every session failing
/// with "session not created".
#[test]
fn a_work_directory_too_long_for_chromium_sockets_is_refused_with_the_limit() {
    let long = std::path::PathBuf::from("/tmp/a-browser-work-directory-with-a-long-name");
    let err = BrowserService::new(BrowserConfig {
        work_dir: long.clone(),
        ..BrowserConfig::default()
    })
    .err()
    .expect("refused");
    let said = err.to_string();
    assert!(
        said.contains(&long.display().to_string()) && said.contains("at most 26"),
        "{said}"
    );
    assert!(!long.exists(), "nothing was created");
}
