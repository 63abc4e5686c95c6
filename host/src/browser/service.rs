//! The browser service of one host process: where Chromium and chromedriver
//! are, how many browsers may run at once, and starting a session for a run.
//!
//! A run asks [`BrowserService::start`] for a session; it waits for a slot
//! when the deployment's cap on concurrent browsers is reached (the wait is
//! bounded by the run's deadline and ends at once when the run is cancelled),
//! then gets a fresh private directory, its egress proxy, its own
//! chromedriver and Chromium. The slot is held until every process of the
//! session is gone.
//!
//! **One chromedriver per session, not one per process.** A shared driver
//! saves 10–35 ms of a 400–700 ms start (measured: docs/browser.md), but then a
//! session's Chromium processes are children of a driver that outlives them:
//! their teardown depends on the driver's `DELETE /session` working, they
//! stay zombies until the shared driver exits, and one hung driver takes
//! every session down with it. With one driver per session, killing one
//! process group ends everything of that session and nothing else.

use super::chromium::{self, Launch};
use super::error::{BrowserError, Operation};
use super::policy::BrowserEgressPolicy;
use super::process::{self, DriverEnv};
use super::profile::{self, ProfileArchive};
use super::proxy::{EgressProxy, ProxyLimits};
use super::session::{BrowserSession, SessionResources};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Deployment settings of the browser service.
#[derive(Clone, Debug)]
pub struct BrowserConfig {
    /// The Chromium binary (Debian's `chromium` package).
    pub chromium: PathBuf,
    /// The chromedriver binary (Debian's `chromium-driver` package).
    pub chromedriver: PathBuf,
    /// Browsers that may run at once in this host process; further runs wait.
    pub max_browsers: usize,
    /// Where session directories are created (a tmpfs keeps profiles off
    /// disk). Default: the system temporary directory.
    pub work_dir: PathBuf,
    /// Run Chromium with its own sandbox. It cannot run as root, and needs
    /// user namespaces otherwise; off by default (`--no-sandbox`).
    pub chromium_sandbox: bool,
    /// How long a run may take to establish its session (to report the
    /// account its browser is logged into) once the browser started; time
    /// spent waiting for the owner does not count.
    pub session_establish: Duration,
    pub limits: BrowserLimits,
}

impl Default for BrowserConfig {
    fn default() -> Self {
        BrowserConfig {
            chromium: PathBuf::from("/usr/bin/chromium"),
            chromedriver: PathBuf::from("/usr/bin/chromedriver"),
            max_browsers: 2,
            work_dir: std::env::temp_dir(),
            chromium_sandbox: false,
            session_establish: Duration::from_secs(300),
            limits: BrowserLimits::default(),
        }
    }
}

/// Bounds on what one session may hand back or hold.
#[derive(Clone, Debug)]
pub struct BrowserLimits {
    /// The longest text or attribute value returned by one read.
    pub max_value_bytes: usize,
    /// The most elements an all-matches read returns.
    pub max_matches: usize,
    /// The most bytes an all-matches read returns, all values together.
    pub max_read_bytes: usize,
    pub max_screenshot_bytes: usize,
    /// The largest packed profile (login material only).
    pub max_profile_bytes: u64,
    /// Chromium's disk cache inside the session directory.
    pub disk_cache_bytes: u64,
    /// Requests the page may make through the proxy in one session.
    pub max_requests: u64,
    /// Body and tunnel bytes through the proxy in one session.
    pub max_proxy_bytes: u64,
    /// Request summaries kept for the timeline.
    pub max_request_summaries: usize,
    pub connect_timeout: Duration,
    pub first_byte_timeout: Duration,
    /// How long a graceful quit may take before the processes are killed.
    pub quit_grace: Duration,
    /// How often `wait_for` looks for its selector.
    pub poll_interval: Duration,
    pub window: (u32, u32),
}

impl Default for BrowserLimits {
    fn default() -> Self {
        BrowserLimits {
            max_value_bytes: 1 << 20,
            max_matches: 1000,
            max_read_bytes: 4 << 20,
            max_screenshot_bytes: 8 << 20,
            max_profile_bytes: 16 << 20,
            disk_cache_bytes: 32 << 20,
            max_requests: 20_000,
            max_proxy_bytes: 1 << 30,
            max_request_summaries: 10_000,
            connect_timeout: Duration::from_secs(10),
            first_byte_timeout: Duration::from_secs(60),
            quit_grace: Duration::from_secs(5),
            poll_interval: Duration::from_millis(100),
            window: (1280, 800),
        }
    }
}

/// What a run asks for when it starts its session.
pub struct SessionSpec {
    /// The run's egress policy.
    pub policy: Arc<dyn BrowserEgressPolicy>,
    /// Login material from the connection's previous run, opened with
    /// [`super::SealedProfile::open`] for this run's connection; `None`
    /// starts an empty profile.
    pub profile: Option<ProfileArchive>,
}

/// The browser service of one host process. Cloning shares it.
#[derive(Clone)]
pub struct BrowserService {
    inner: Arc<ServiceInner>,
}

struct ServiceInner {
    config: BrowserConfig,
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
    next_session: AtomicU64,
    /// `<host pid>/<service number>/`: the marker prefix of this service's processes.
    marker: String,
    /// This service's directory under `work_dir` (0700); sessions live inside.
    root: PathBuf,
}

impl Drop for ServiceInner {
    fn drop(&mut self) {
        // Sessions hold the service alive; when it goes, nothing of it may remain.
        process::kill_marked(&self.marker);
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

static NEXT_SERVICE: AtomicU64 = AtomicU64::new(1);

impl BrowserService {
    /// A service with the given settings. Creates its private directory; it
    /// does not start any process. The first service of a host process also
    /// cleans up after earlier host processes that died with browsers
    /// running ([`process::sweep_orphans`]).
    pub fn new(config: BrowserConfig) -> Result<BrowserService, BrowserError> {
        let n = NEXT_SERVICE.fetch_add(1, Ordering::Relaxed);
        if n == 1 {
            process::sweep_orphans(&config.work_dir);
        }
        let marker = format!("{}{n}/", process::host_prefix());
        // Short names: Chromium puts its singleton socket under the session's
        // TMPDIR, and a Unix socket path has at most 107 bytes, so the work
        // directory's path leaves room only for short names below it.
        let mut random = [0u8; 4];
        getrandom::fill(&mut random).expect("system randomness");
        let suffix: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let root = config
            .work_dir
            .join(format!("pdpp-browser-{}-{n}-{suffix}", std::process::id()));
        profile::create_private_dir_all(&root).map_err(|e| BrowserError::BrowserFailed {
            operation: Operation::Start,
            code: format!("cannot create the browser work directory: {}", e.kind()),
        })?;
        Ok(BrowserService {
            inner: Arc::new(ServiceInner {
                slots: Arc::new(Semaphore::new(config.max_browsers.max(1))),
                config,
                waiting: AtomicUsize::new(0),
                next_session: AtomicU64::new(1),
                marker,
                root,
            }),
        })
    }

    /// Why this host cannot start a browser (a binary is missing), if so.
    pub fn unavailable(&self) -> Option<String> {
        let c = &self.inner.config;
        [("chromium", &c.chromium), ("chromedriver", &c.chromedriver)]
            .into_iter()
            .find(|(_, path)| !path.is_file())
            .map(|(what, path)| format!("{what} is not installed at {}", path.display()))
    }

    pub fn config(&self) -> &BrowserConfig {
        &self.inner.config
    }

    /// Sessions running now.
    pub fn active(&self) -> usize {
        self.inner.config.max_browsers.max(1) - self.inner.slots.available_permits()
    }

    /// Runs waiting for a browser slot now.
    pub fn waiting(&self) -> usize {
        self.inner.waiting.load(Ordering::SeqCst)
    }

    /// Live Chromium and chromedriver processes of this service's sessions.
    pub fn live_processes(&self) -> usize {
        process::marked_processes(&self.inner.marker).len()
    }

    /// Start the session of one run: wait for a slot, then start Chromium
    /// behind the run's egress proxy with the connection's profile. Bounded
    /// by `deadline`; `cancel` ends the wait, the start, and later the
    /// session itself (its processes are killed and its directory wiped the
    /// moment it fires).
    pub async fn start(
        &self,
        spec: SessionSpec,
        deadline: Instant,
        cancel: &CancellationToken,
    ) -> Result<BrowserSession, BrowserError> {
        let op = Operation::Start;
        let permit = {
            self.inner.waiting.fetch_add(1, Ordering::SeqCst);
            let acquired = tokio::select! {
                biased;
                () = cancel.cancelled() => Err(BrowserError::Cancelled { operation: op }),
                () = tokio::time::sleep_until(deadline.into()) => Err(BrowserError::Timeout { operation: op }),
                p = self.inner.slots.clone().acquire_owned() => Ok(p.expect("the semaphore is never closed")),
            };
            self.inner.waiting.fetch_sub(1, Ordering::SeqCst);
            acquired?
        };

        let n = self.inner.next_session.fetch_add(1, Ordering::Relaxed);
        let marker = format!("{}{n}/", self.inner.marker);
        let dir = self.inner.root.join(format!("s{n}"));
        let resources = Arc::new(SessionResources::new(
            dir.clone(),
            marker.clone(),
            permit,
            self.inner.clone() as Arc<dyn std::any::Any + Send + Sync>,
        ));
        let failed = |code: String| BrowserError::BrowserFailed { operation: op, code };
        let (user_data_dir, home, tmp) = (dir.join("profile"), dir.join("home"), dir.join("t"));
        for d in [&user_data_dir, &home, &tmp] {
            profile::create_private_dir_all(d)
                .map_err(|e| failed(format!("cannot create the session directory: {}", e.kind())))?;
        }
        if let Some(archive) = &spec.profile {
            profile::unpack(archive, &user_data_dir)?;
        }
        drop(spec.profile);

        let limits = &self.inner.config.limits;
        let proxy = EgressProxy::start(
            spec.policy.clone(),
            ProxyLimits {
                max_requests: limits.max_requests,
                max_bytes: limits.max_proxy_bytes,
                max_summaries: limits.max_request_summaries,
                connect_timeout: limits.connect_timeout,
                first_byte_timeout: limits.first_byte_timeout,
            },
            resources.proxy_stop.clone(),
        )
        .await
        .map_err(|e| failed(format!("cannot start the egress proxy: {}", e.kind())))?;

        let launch = Launch {
            chromium: &self.inner.config.chromium,
            user_data_dir: &user_data_dir,
            proxy: proxy.addr,
            window: limits.window,
            chromium_sandbox: self.inner.config.chromium_sandbox,
            disk_cache_bytes: limits.disk_cache_bytes,
        };
        let started = async {
            let env = DriverEnv {
                home: &home,
                tmp: &tmp,
                marker: &marker,
            };
            let driver = process::spawn_driver(&self.inner.config.chromedriver, &env, deadline)
                .await
                .map_err(failed)?;
            let port = driver.port;
            resources.adopt_driver(driver);
            let client = reqwest::Client::builder()
                .no_proxy()
                .build()
                .map_err(|_| failed("cannot build the WebDriver client".into()))?;
            let webdriver = thirtyfour::WebDriver::builder(
                format!("http://127.0.0.1:{port}"),
                thirtyfour::Capabilities::from(chromium::capabilities(&launch)),
            )
            .client(client)
            .await
            .map_err(|e| failed(format!("chromium did not start ({})", super::error::webdriver_code(&e))))?;
            Ok::<_, BrowserError>(webdriver)
        };
        let webdriver = tokio::select! {
            biased;
            () = cancel.cancelled() => return Err(BrowserError::Cancelled { operation: op }),
            () = tokio::time::sleep_until(deadline.into()) => return Err(BrowserError::Timeout { operation: op }),
            w = started => w?,
        };
        Ok(BrowserSession::new(
            webdriver,
            resources,
            spec.policy,
            proxy,
            cancel.clone(),
            user_data_dir,
            self.inner.config.limits.clone(),
        ))
    }
}
