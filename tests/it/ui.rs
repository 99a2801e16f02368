//! `skiff ui` in a real headless Chromium: the page lists two local workspaces with their states, a stop from the
//! page stops one (as the CLI sees), the idle countdown moves, a keep-alive from the page shows in `skiff status`, the
//! logs view streams a line the container prints after the page opened, and a delete from the page asks first. And
//! the attacks: requests without the token, from another site, or for another host name are refused.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, Locator};
use skiff_tests::browser::Browser;
use skiff_tests::{Sandbox, add_busybox, binaries_dir, http, require_docker};

/// A running `skiff ui --no-open` of a sandbox; Ctrl-C (SIGINT) ends it when dropped.
struct Ui {
    child: Child,
    url: String,
    port: u16,
    token: String,
}

impl Ui {
    fn start(sandbox: &Sandbox, extra: &[&str]) -> Self {
        let mut child = sandbox
            .skiff()
            .args(["ui", "--no-open"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting skiff ui");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("its stdout"))
            .read_line(&mut line)
            .expect("reading the URL skiff ui prints");
        let url = line.trim().to_owned();
        let rest = url
            .strip_prefix("http://127.0.0.1:")
            .unwrap_or_else(|| panic!("skiff ui printed {url:?}, not a loopback URL"));
        let (port, query) = rest.split_once("/?token=").expect("a token in the URL");
        assert_eq!(query.len(), 64, "256 bits of token, in hex: {url}");
        Self {
            port: port.parse().expect("a port"),
            token: query.to_owned(),
            url,
            child,
        }
    }
}

impl Ui {
    /// Ctrl-C, as a person stops it: true when it exited within 10 s.
    fn interrupt(&mut self) -> bool {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Ui {
    fn drop(&mut self) {
        if !self.interrupt() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Polls `probe` until it gives a value, for `limit` at most.
async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn row_state(client: &Client, name: &str) -> Option<String> {
    let row = client
        .find(Locator::Css(&format!("tr[data-name='{name}']")))
        .await
        .ok()?;
    row.attr("data-state").await.ok()?
}

async fn text_of(client: &Client, css: &str) -> Option<String> {
    client.find(Locator::Css(css)).await.ok()?.text().await.ok()
}

async fn click(client: &Client, css: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|error| panic!("no {css} on the page: {error}"))
        .click()
        .await
        .unwrap_or_else(|error| panic!("clicking {css}: {error}"));
}

/// Waits for the output panel to say an action ended; its title and text.
async fn ended(client: &Client, what: &str) -> (String, String) {
    let title = eventually(what, Duration::from_secs(60), || async {
        text_of(client, "#output-title")
            .await
            .filter(|title| title.ends_with(": done") || title.ends_with(": failed"))
    })
    .await;
    let output = text_of(client, "#output-text").await.unwrap_or_default();
    (title, output)
}

/// Waits for the output panel to say an action is done, and gives its text.
async fn outcome(client: &Client, what: &str) -> String {
    let (title, output) = ended(client, what).await;
    assert!(title.ends_with(": done"), "{what}: {title}\n{output}");
    output
}

fn up(sandbox: &Sandbox, name: &str) {
    let project = sandbox.project("image", name);
    add_busybox(&project);
    sandbox.ok(&["up", "--idle-timeout", "1h", project.to_str().unwrap()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_lists_stops_counts_down_keeps_alive_streams_logs_and_deletes() {
    require_docker();
    let sandbox = Sandbox::new();
    up(&sandbox, "ui-one");
    up(&sandbox, "ui-two");
    let ui = Ui::start(&sandbox, &[]);
    let browser = Browser::start().await;
    let client = &browser.client;
    client.goto(&ui.url).await.expect("opening the page");
    // The token became a cookie and left the address bar.
    let address = client.current_url().await.unwrap();
    assert_eq!(address.query(), None, "{address}");

    // Both workspaces, running.
    for name in ["ui-one", "ui-two"] {
        let state = eventually(
            &format!("{name} listed"),
            Duration::from_secs(20),
            || async { row_state(client, name).await },
        )
        .await;
        assert_eq!(state, "running", "{name}");
    }
    let rows = client.find_all(Locator::Css("#rows tr")).await.unwrap();
    assert_eq!(rows.len(), 2);

    // The idle countdown moves.
    let countdown = "tr[data-name='ui-one'] .countdown";
    let first = eventually("a countdown", Duration::from_secs(10), || async {
        text_of(client, countdown)
            .await
            .filter(|text| text.starts_with("stops in"))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let second = text_of(client, countdown).await.unwrap();
    assert!(
        second.starts_with("stops in 59m") || second.starts_with("stops in 58m"),
        "{second}"
    );
    assert_ne!(first, second, "the countdown moved");

    // Keep alive for an hour from the page: `skiff status` says the pin keeps it up.
    click(
        client,
        "tr[data-name='ui-one'] button[data-action='keep-1h']",
    )
    .await;
    outcome(client, "keep alive").await;
    let status = sandbox.ok(&["status", "ui-one"]);
    assert!(status.contains("kept up by pin"), "{status}");
    eventually("the pin on the page", Duration::from_secs(10), || async {
        text_of(client, "tr[data-name='ui-one'] .pinned")
            .await
            .filter(|text| text.starts_with("kept alive until"))
    })
    .await;

    // The logs view streams what the container prints after it opened.
    click(client, "tr[data-name='ui-two'] button[data-action='logs']").await;
    eventually("the output so far", Duration::from_secs(20), || async {
        text_of(client, "#output-text")
            .await
            .filter(|text| text.contains("Container started"))
    })
    .await;
    let marker = format!("printed-after-the-page-opened-{}", std::process::id());
    sandbox.ok(&[
        "exec",
        "ui-two",
        "--",
        "sh",
        "-c",
        &format!("echo {marker} > /proc/1/fd/1"),
    ]);
    eventually(
        "the new line in the logs view",
        Duration::from_secs(20),
        || async {
            text_of(client, "#output-text")
                .await
                .filter(|text| text.contains(&marker))
        },
    )
    .await;

    // Stop from the page: the CLI sees it stopped.
    click(client, "tr[data-name='ui-two'] button[data-action='stop']").await;
    outcome(client, "stop").await;
    eventually(
        "ui-two stopped on the page",
        Duration::from_secs(20),
        || async {
            row_state(client, "ui-two")
                .await
                .filter(|state| state == "stopped")
        },
    )
    .await;
    let status = sandbox.ok(&["status", "ui-two", "--json"]);
    assert!(status.contains("\"agent_running\": false"), "{status}");
    assert_eq!(
        row_state(client, "ui-one").await.as_deref(),
        Some("running"),
        "only ui-two stopped"
    );

    // The page after these steps, for the note (not committed).
    let screenshot = client.screenshot().await.expect("a screenshot");
    let path = binaries_dir().join("skiff-ui.png");
    std::fs::write(&path, &screenshot).unwrap();
    eprintln!(
        "skiff ui screenshot: {} ({} bytes)",
        path.display(),
        screenshot.len()
    );
    assert!(screenshot.starts_with(b"\x89PNG"), "a PNG");

    // Delete from the page asks first; cancelled, nothing happens; agreed, the workspace goes.
    click(
        client,
        "tr[data-name='ui-two'] button[data-action='delete']",
    )
    .await;
    let question = text_of(client, "#confirm-text").await.unwrap();
    assert!(question.contains("Delete workspace ui-two?"), "{question}");
    click(client, "#confirm button[value='cancel']").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        sandbox.workspaces().contains(&"ui-two".to_owned()),
        "cancel keeps it"
    );
    click(
        client,
        "tr[data-name='ui-two'] button[data-action='delete']",
    )
    .await;
    click(client, "#confirm-ok").await;
    let said = outcome(client, "delete").await;
    assert!(said.contains("deleted workspace ui-two"), "{said}");
    eventually(
        "ui-two gone from the page",
        Duration::from_secs(20),
        || async { row_state(client, "ui-two").await.is_none().then_some(()) },
    )
    .await;
    assert!(!sandbox.workspaces().contains(&"ui-two".to_owned()));
    // Ctrl-C stops it while the page is still open (following the board).
    let mut ui = ui;
    assert!(ui.interrupt(), "skiff ui stops on Ctrl-C with a page open");
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_from_the_page_shows_work_that_would_be_lost_and_deletes_only_when_asked_again() {
    require_docker();
    let sandbox = Sandbox::new();
    let (bare, _) = crate::files::bare_repository(sandbox.root.path());
    let url = format!("file://{}", bare.display());
    sandbox.ok(&["up", &url, "--name", "ui-cloned"]);
    // Work made in the dev container exists only in the clone.
    sandbox.ok(&["exec", "ui-cloned", "--", "sh", "-c", "echo idea > idea.md"]);
    let ui = Ui::start(&sandbox, &[]);
    let browser = Browser::start().await;
    let client = &browser.client;
    client.goto(&ui.url).await.expect("opening the page");
    eventually("ui-cloned listed", Duration::from_secs(20), || async {
        row_state(client, "ui-cloned")
            .await
            .filter(|state| state == "running")
    })
    .await;
    click(
        client,
        "tr[data-name='ui-cloned'] button[data-action='delete']",
    )
    .await;
    click(client, "#confirm-ok").await;
    let (title, output) = ended(client, "the delete").await;
    assert!(title.ends_with(": failed"), "{title}: {output}");
    assert!(
        output.contains("1 uncommitted change: idea.md"),
        "the CLI's check: {output}"
    );
    assert_eq!(sandbox.workspaces(), ["ui-cloned"], "kept");
    let anyway = client.find(Locator::Id("output-anyway")).await.unwrap();
    assert!(
        anyway.is_displayed().await.unwrap(),
        "a second, explicit choice"
    );
    anyway.click().await.unwrap();
    let said = outcome(client, "the delete anyway").await;
    assert!(said.contains("deleted workspace ui-cloned"), "{said}");
    assert!(sandbox.workspaces().is_empty());
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_an_aws_workspace_with_its_region_and_prices_and_stops_it() {
    use skiff_tests::aws::{AwsSandbox, live_instances, recorded, recorded_actions};
    use skiff_tests::pricing::{PriceList, gp3, instance};
    // A region no other test uses: the test reads back its instance there.
    let region = "eu-south-1";
    let prices = PriceList::start(vec![
        instance(region, "t3.large", "0.1088000000"),
        gp3(region, "0.0960000000"),
    ]);
    let sandbox = AwsSandbox::new(region).with_env("AWS_ENDPOINT_URL_PRICING", &prices.endpoint());
    let project = sandbox.project("ui-aws").display().to_string();
    let skiffd = skiff_tests::binary("skiffd").display().to_string();
    sandbox.ok(&crate::aws::up_args(
        &project,
        &skiffd,
        &["--instance-type", "t3.large"],
    ));
    let ui = Ui::start(&sandbox, &["--aws-every", "10s"]);
    let browser = Browser::start().await;
    let client = &browser.client;
    client.goto(&ui.url).await.expect("opening the page");
    let row = "tr[data-name='ui-aws']";
    eventually("ui-aws listed", Duration::from_secs(30), || async {
        row_state(client, "ui-aws")
            .await
            .filter(|state| state == "running")
    })
    .await;
    let text = text_of(client, row).await.unwrap();
    for expected in [
        "AWS eu-south-1",
        "t3.large (i-",
        "$0.1088/hour",
        "disk $3.84/month",
        // The month so far, as `list` tells it without the agent: its first run, seconds old.
        "$0.00 this month",
    ] {
        assert!(text.contains(expected), "{expected:?} in {text:?}");
    }
    // However many pages are open, AWS is listed once per --aws-every: three more pages follow the board for 12 s.
    let listings = || recorded_actions(&recorded(region), "DescribeInstances").len();
    let before = listings();
    let cookie = format!("skiff_ui={}", ui.token);
    let pages: Vec<std::net::TcpStream> = (0..3)
        .map(|_| {
            use std::io::Write as _;
            let mut stream = std::net::TcpStream::connect(("127.0.0.1", ui.port)).unwrap();
            write!(
                stream,
                "GET /api/events HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nCookie: {cookie}\r\n\r\n",
                ui.port
            )
            .unwrap();
            stream
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(12)).await;
    let during = listings() - before;
    assert!(
        (1..=2).contains(&during),
        "{during} listings in 12 s with four pages open and --aws-every 10s"
    );
    drop(pages);

    // Stop from the page: EC2 stops the instance, and the page shows it at once (an action on an AWS workspace lists
    // AWS again without waiting for --aws-every).
    click(client, &format!("{row} button[data-action='stop']")).await;
    outcome(client, "stop").await;
    let instances = live_instances(region, "ui-aws");
    let state = instances[0]["State"]["Name"].as_str().unwrap().to_owned();
    assert!(state == "stopped" || state == "stopping", "{state}");
    eventually(
        "ui-aws stopped on the page",
        Duration::from_secs(8),
        || async {
            row_state(client, "ui-aws")
                .await
                .filter(|state| state == "stopped" || state == "stopping")
        },
    )
    .await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markup_in_a_folder_name_is_shown_as_text_and_runs_nothing() {
    require_docker();
    let sandbox = Sandbox::new();
    // A repository's folder name is data: as text on the page, never markup or script.
    let folder = "ui<img src=x onerror=\"document.title='owned'\">";
    let project = sandbox.project("image", folder);
    add_busybox(&project);
    sandbox.ok(&["up", "--name", "ui-markup", project.to_str().unwrap()]);
    let ui = Ui::start(&sandbox, &[]);
    let browser = Browser::start().await;
    let client = &browser.client;
    client.goto(&ui.url).await.expect("opening the page");
    eventually("ui-markup listed", Duration::from_secs(20), || async {
        row_state(client, "ui-markup").await
    })
    .await;
    let shown = text_of(client, "tr[data-name='ui-markup'] td.name small")
        .await
        .unwrap();
    assert!(shown.ends_with(folder), "the folder as text: {shown:?}");
    let images = client.find_all(Locator::Css("#rows img")).await.unwrap();
    assert!(images.is_empty(), "no element was made from the name");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(client.title().await.unwrap(), "skiff", "no script ran");
    browser.close().await;
}

#[test]
fn requests_without_the_token_from_another_site_or_for_another_host_are_refused() {
    let sandbox = Sandbox::new();
    let ui = Ui::start(&sandbox, &[]);
    let port = ui.port;
    let host = format!("127.0.0.1:{port}");
    let cookie = format!("skiff_ui={}", ui.token);
    let get = |path: &str, headers: &[(&str, &str)]| {
        http::request(port, "GET", path, headers, b"").expect("an answer")
    };

    // Without the token, or with another one.
    assert_eq!(get("/", &[]).status, 401);
    assert_eq!(get("/api/board", &[]).status, 401);
    assert_eq!(get("/api/events", &[]).status, 401);
    let wrong = format!("/?token={}", "0".repeat(64));
    assert_eq!(get(&wrong, &[]).status, 401);
    assert_eq!(
        get("/api/board", &[("Cookie", "skiff_ui=guess")]).status,
        401
    );

    // The token is traded for a strict, script-proof cookie.
    let entered = get(&format!("/?token={}", ui.token), &[]);
    assert_eq!(entered.status, 303);
    let set = entered.header("set-cookie").expect("a cookie");
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains(&cookie),
        "{set}"
    );
    let page = get("/", &[("Cookie", &cookie)]);
    assert_eq!(page.status, 200);
    let policy = page.header("content-security-policy").unwrap_or_default();
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    assert_eq!(get("/api/board", &[("Cookie", &cookie)]).status, 200);

    // A page of another site whose name was rebound to 127.0.0.1 names itself in Host.
    assert_eq!(
        get(
            "/api/board",
            &[
                ("Host", &format!("rebound.example:{port}")),
                ("Cookie", &cookie)
            ]
        )
        .status,
        421
    );
    assert_eq!(
        get(
            &format!("/?token={}", ui.token),
            &[("Host", "rebound.example")]
        )
        .status,
        421
    );

    // A change from another origin, or with no origin, even with the cookie.
    let post = |origin: Option<&str>, site: Option<&str>| {
        let mut headers = vec![("Cookie", cookie.as_str()), ("Host", host.as_str())];
        if let Some(origin) = origin {
            headers.push(("Origin", origin));
        }
        if let Some(site) = site {
            headers.push(("Sec-Fetch-Site", site));
        }
        http::request(
            port,
            "POST",
            "/api/workspaces/anything/stop",
            &headers,
            b"{}",
        )
        .expect("an answer")
        .status
    };
    assert_eq!(post(Some("http://evil.example"), Some("cross-site")), 403);
    assert_eq!(post(Some("http://evil.example"), None), 403);
    assert_eq!(post(None, None), 403);
    assert_eq!(
        post(
            Some(&format!("http://127.0.0.1:{port}")),
            Some("cross-site")
        ),
        403
    );
    // The page's own origin passes the guard (and finds no such workspace).
    assert_eq!(
        post(
            Some(&format!("http://127.0.0.1:{port}")),
            Some("same-origin")
        ),
        404
    );

    // Nothing answers on another address of this machine.
    let mut ui = ui;
    for address in local_addresses() {
        assert!(
            std::net::TcpStream::connect_timeout(
                &std::net::SocketAddr::new(address, port),
                Duration::from_secs(1)
            )
            .is_err(),
            "skiff ui answers on {address}"
        );
    }
    assert!(ui.interrupt(), "skiff ui stops on Ctrl-C");
}

/// This machine's addresses other than loopback, from `hostname -I`.
fn local_addresses() -> Vec<std::net::IpAddr> {
    let output = std::process::Command::new("hostname")
        .arg("-I")
        .output()
        .expect("hostname -I");
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .filter_map(|word| word.parse().ok())
        .filter(|address: &std::net::IpAddr| !address.is_loopback())
        .collect()
}
