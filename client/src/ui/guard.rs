//! Who may use the page: only whoever has the URL `skiff ui` printed, from this machine, through a browser tab of
//! this page.
//!
//! - The server listens on 127.0.0.1 only, and a request from any other peer address is refused anyway.
//! - The URL's `token` (256 random bits) is traded once for a cookie (`HttpOnly`, `SameSite=Strict`, `Path=/`) and a
//!   redirect that drops it from the address bar; every other request must carry that cookie (compared in constant
//!   time), or it gets 401.
//! - `Host` must name this server (`127.0.0.1:PORT` or `localhost:PORT`): a page of another site whose name was
//!   rebound to 127.0.0.1 sends its own name, and gets 421.
//! - A request that changes anything (every method but GET and HEAD) must carry this page's own `Origin`, and a
//!   browser's `Sec-Fetch-Site`, when it sends one, must say `same-origin`; a cross-site form or fetch gets 403.
//! - Every answer forbids framing, caching and referrers, and the page's scripts and connections come from itself
//!   only (Content-Security-Policy).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

/// The cookie's name.
const COOKIE: &str = "skiff_ui";

const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The token and the names this server answers to.
#[derive(Debug)]
pub struct Guard {
    port: u16,
    token: String,
}

/// Why a request was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not from this machine.
    Peer,
    /// `Host` names another server.
    Host,
    /// Without the cookie (or with a wrong one).
    Token,
    /// A state-changing request from another origin, or with none.
    CrossSite,
}

impl Refusal {
    fn response(&self) -> Response {
        let (status, text) = match self {
            Self::Peer => (StatusCode::FORBIDDEN, "skiff ui answers this machine only"),
            Self::Host => (
                StatusCode::MISDIRECTED_REQUEST,
                "this Host is not skiff ui's; open the URL `skiff ui` printed",
            ),
            Self::Token => (
                StatusCode::UNAUTHORIZED,
                "no valid skiff ui token; open the URL `skiff ui` printed (it holds the token)",
            ),
            Self::CrossSite => (
                StatusCode::FORBIDDEN,
                "a change must come from the skiff ui page itself (cross-site request refused)",
            ),
        };
        (status, text).into_response()
    }
}

impl Guard {
    /// A guard for a server on 127.0.0.1:`port` with a new random token.
    pub fn new(port: u16) -> anyhow::Result<Self> {
        use rand::TryRngCore as _;
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng
            .try_fill_bytes(&mut bytes)
            .map_err(|error| anyhow::anyhow!("reading the system's random source: {error}"))?;
        let token = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
        Ok(Self { port, token })
    }

    /// The URL that lets a browser in: the page with the token, which it trades for the cookie.
    pub fn entry_url(&self) -> String {
        format!("http://127.0.0.1:{}/?token={}", self.port, self.token)
    }

    fn host_is_ours(&self, host: Option<&str>) -> bool {
        host.is_some_and(|host| {
            host == format!("127.0.0.1:{}", self.port) || host == format!("localhost:{}", self.port)
        })
    }

    fn origin_is_ours(&self, origin: &str) -> bool {
        origin == format!("http://127.0.0.1:{}", self.port)
            || origin == format!("http://localhost:{}", self.port)
    }

    fn token_matches(&self, given: &str) -> bool {
        // Constant time over the token's length: how much of a guess was right never shows in the timing.
        given.len() == self.token.len()
            && given
                .bytes()
                .zip(self.token.bytes())
                .fold(0u8, |differ, (a, b)| differ | (a ^ b))
                == 0
    }

    /// What to do with a request: `Ok(None)` passes it on, `Ok(Some(response))` answers it here (the token traded
    /// for the cookie), `Err` refuses it.
    pub fn decide(
        &self,
        peer: SocketAddr,
        method: &Method,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
    ) -> Result<Option<Response>, Refusal> {
        if !peer.ip().is_loopback() {
            return Err(Refusal::Peer);
        }
        let header_text = |name: header::HeaderName| {
            headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned)
        };
        if !self.host_is_ours(header_text(header::HOST).as_deref()) {
            return Err(Refusal::Host);
        }
        if method != Method::GET && method != Method::HEAD {
            let origin_ok =
                header_text(header::ORIGIN).is_some_and(|origin| self.origin_is_ours(&origin));
            let fetch_site_ok = headers
                .get("sec-fetch-site")
                .is_none_or(|value| value.as_bytes() == b"same-origin");
            if !origin_ok || !fetch_site_ok {
                return Err(Refusal::CrossSite);
            }
        }
        if path == "/"
            && method == Method::GET
            && let Some(given) = query.and_then(|query| {
                query
                    .split('&')
                    .find_map(|pair| pair.strip_prefix("token="))
            })
        {
            if !self.token_matches(given) {
                return Err(Refusal::Token);
            }
            let cookie = format!("{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/", self.token);
            let mut response = Redirect::to("/").into_response();
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            return Ok(Some(response));
        }
        let cookie_ok = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(';'))
            .filter_map(|pair| pair.trim().strip_prefix(&format!("{COOKIE}=")))
            .any(|given| self.token_matches(given));
        if !cookie_ok {
            return Err(Refusal::Token);
        }
        Ok(None)
    }
}

/// The middleware every route sits behind.
pub async fn check(
    State(shared): State<super::AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let decision = shared.guard.decide(
        peer,
        request.method(),
        request.uri().path(),
        request.uri().query(),
        request.headers(),
    );
    let mut response = match decision {
        Ok(None) => next.run(request).await,
        Ok(Some(response)) => response,
        Err(refusal) => {
            tracing::info!("skiff ui refused a request from {peer}: {refusal:?}");
            refusal.response()
        }
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> Guard {
        Guard {
            port: 4242,
            token: "ab".repeat(32),
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    const LOCAL: &str = "127.0.0.1:50000";

    fn cookie() -> String {
        format!("other=1; skiff_ui={}", "ab".repeat(32))
    }

    #[test]
    fn the_token_becomes_a_strict_http_only_cookie() {
        let guard = guard();
        let query = format!("token={}", "ab".repeat(32));
        let response = guard
            .decide(
                LOCAL.parse().unwrap(),
                &Method::GET,
                "/",
                Some(&query),
                &headers(&[("host", "127.0.0.1:4242")]),
            )
            .unwrap()
            .expect("answered here");
        let set = response.headers()[header::SET_COOKIE].to_str().unwrap();
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict"),
            "{set}"
        );
        assert_eq!(response.headers()[header::LOCATION], "/");
    }

    #[test]
    fn a_wrong_token_or_none_is_refused() {
        let guard = guard();
        let host = headers(&[("host", "127.0.0.1:4242")]);
        let wrong = format!("token={}", "ac".repeat(32));
        assert_eq!(
            guard
                .decide(
                    LOCAL.parse().unwrap(),
                    &Method::GET,
                    "/",
                    Some(&wrong),
                    &host
                )
                .unwrap_err(),
            Refusal::Token
        );
        assert_eq!(
            guard
                .decide(
                    LOCAL.parse().unwrap(),
                    &Method::GET,
                    "/api/board",
                    None,
                    &host
                )
                .unwrap_err(),
            Refusal::Token
        );
        let short = headers(&[("host", "127.0.0.1:4242"), ("cookie", "skiff_ui=ab")]);
        assert_eq!(
            guard
                .decide(
                    LOCAL.parse().unwrap(),
                    &Method::GET,
                    "/api/board",
                    None,
                    &short
                )
                .unwrap_err(),
            Refusal::Token
        );
    }

    #[test]
    fn a_foreign_host_is_refused_even_with_the_cookie() {
        let guard = guard();
        for host in ["evil.example:4242", "127.0.0.1:4243", "127.0.0.1"] {
            let map = headers(&[("host", host), ("cookie", &cookie())]);
            assert_eq!(
                guard
                    .decide(
                        LOCAL.parse().unwrap(),
                        &Method::GET,
                        "/api/board",
                        None,
                        &map
                    )
                    .unwrap_err(),
                Refusal::Host,
                "{host}"
            );
        }
        let none = headers(&[("cookie", &cookie())]);
        assert_eq!(
            guard
                .decide(LOCAL.parse().unwrap(), &Method::GET, "/", None, &none)
                .unwrap_err(),
            Refusal::Host
        );
    }

    #[test]
    fn a_change_needs_this_origin() {
        let guard = guard();
        let path = "/api/workspaces/a/stop";
        type Headers<'a> = &'a [(&'static str, &'a str)];
        let cases: [(Headers, Result<(), Refusal>); 5] = [
            (&[("origin", "http://127.0.0.1:4242")], Ok(())),
            (
                &[
                    ("origin", "http://localhost:4242"),
                    ("sec-fetch-site", "same-origin"),
                ],
                Ok(()),
            ),
            (&[], Err(Refusal::CrossSite)),
            (
                &[("origin", "http://evil.example")],
                Err(Refusal::CrossSite),
            ),
            (
                &[
                    ("origin", "http://127.0.0.1:4242"),
                    ("sec-fetch-site", "cross-site"),
                ],
                Err(Refusal::CrossSite),
            ),
        ];
        for (extra, expected) in cases {
            let mut map = headers(extra);
            map.insert(header::HOST, HeaderValue::from_static("127.0.0.1:4242"));
            map.insert(header::COOKIE, HeaderValue::from_str(&cookie()).unwrap());
            let decided = guard
                .decide(LOCAL.parse().unwrap(), &Method::POST, path, None, &map)
                .map(|answer| assert!(answer.is_none()));
            assert_eq!(decided, expected, "{extra:?}");
        }
    }

    #[test]
    fn another_machine_is_refused() {
        let guard = guard();
        let map = headers(&[("host", "127.0.0.1:4242"), ("cookie", &cookie())]);
        assert_eq!(
            guard
                .decide(
                    "192.0.2.7:5000".parse().unwrap(),
                    &Method::GET,
                    "/",
                    None,
                    &map
                )
                .unwrap_err(),
            Refusal::Peer
        );
    }
}
