//! A real headless Chromium for the dashboard's tests (`skiff ui`), driven over W3C WebDriver: Debian's
//! `chromedriver` on 127.0.0.1 and fantoccini as its client. Dropping a [`Browser`] ends the browser and its driver.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The browser's major version, from `PROGRAM --version` ("Chromium 156.0.8078.129 …", "ChromeDriver 156.0…").
fn major_version(program: &str) -> Result<(u32, String), String> {
    let output = Command::new(program)
        .arg("--version")
        .output()
        .map_err(|error| {
            format!("{program} is missing ({error}): install Debian's chromium and chromium-driver (`apt-get install chromium chromium-driver`; `cargo xtask test` does)")
        })?;
    let text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let major = text
        .split_whitespace()
        .find_map(|word| {
            word.split('.')
                .next()?
                .parse::<u32>()
                .ok()
                .filter(|_| word.contains('.'))
        })
        .ok_or_else(|| format!("{program} --version said {text:?}, with no version"))?;
    Ok((major, text))
}

/// Checks that chromedriver drives the chromium installed: their major versions must match.
pub fn check_versions() {
    let (browser, browser_text) =
        major_version("chromium").unwrap_or_else(|error| panic!("{error}"));
    let (driver, driver_text) =
        major_version("chromedriver").unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(
        browser, driver,
        "chromedriver {driver} cannot drive chromium {browser} ({driver_text:?}, {browser_text:?}): install both from one \
         source at one version (`apt-get install chromium chromium-driver`)"
    );
}

/// A headless Chromium session.
#[derive(Debug)]
pub struct Browser {
    pub client: fantoccini::Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver on a free loopback port and a headless Chromium session through it.
    pub async fn start() -> Self {
        check_versions();
        let port = crate::free_port();
        let mut driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        let deadline = Instant::now() + Duration::from_secs(20);
        // It listens once it is ready (it keeps connections alive, so a read to the end is no probe).
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = driver.try_wait() {
                panic!("chromedriver exited at once: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not answer on port {port} within 20 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = tempfile::tempdir().expect("a browser profile folder");
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": chromium_binary(),
                "args": [
                    "--headless=new",
                    // Root (CI) cannot use Chromium's sandbox; the pages it opens are our own, on loopback.
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--no-first-run",
                    "--window-size=1500,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        let client = fantoccini::ClientBuilder::new(
            hyper_util::client::legacy::connect::HttpConnector::new(),
        )
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a headless Chromium session through chromedriver");
        Self {
            client,
            driver,
            _profile: profile,
        }
    }

    /// Ends the session (closing Chromium) and the driver.
    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // chromedriver ends the browsers it started when it is ended.
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Debian's real Chromium binary (`/usr/bin/chromium` is a shell wrapper around it).
fn chromium_binary() -> String {
    let real = Path::new("/usr/lib/chromium/chromium");
    if real.is_file() {
        real.display().to_string()
    } else {
        "chromium".to_owned()
    }
}
