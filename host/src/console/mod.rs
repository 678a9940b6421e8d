//! The web console: pages on the `[http]` listener, at `/`, for people
//! with a browser instead of a terminal (schedule, a job, a run and its
//! live log, history, status, plugins, reports).
//!
//! Who may do what:
//! - Without `[http] token` the console is read-only.
//! - With a token, signing in (a form that takes the token) starts a
//!   session: an `HttpOnly`, `SameSite=Strict` cookie, and a CSRF token
//!   tied to it that every button's form carries. A button's POST is
//!   refused unless the session, its CSRF token and the request's origin
//!   (`Origin`, `Sec-Fetch-Site`) all agree.
//! - On a listener off loopback, or through a reverse proxy that says so
//!   (`X-Forwarded-*`, `Forwarded`, `X-Real-IP`), every console page
//!   needs a session; without a token there the console is off. On loopback, pages answer
//!   only requests naming a loopback host, so a web page a DNS rebinding
//!   points at 127.0.0.1 reads nothing.
//!
//! `/health` and `/metrics` are not the console's and stay open; the
//! control socket remains the full API.

mod html;
mod pages;

use crate::ops::Ops;
use crate::record::RunStatus;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use html::esc;

const CSS: &str = include_str!("assets/console.css");
const LIVE_JS: &str = include_str!("assets/live.js");

/// The session cookie's name.
const COOKIE: &str = "opsd_console";

/// How long a sign-in lasts.
const SESSION_FOR: Duration = Duration::from_secs(12 * 3600);

/// Sessions kept at most; the oldest goes first.
const MAX_SESSIONS: usize = 256;

/// What a page may show and offer.
#[derive(Clone)]
pub(crate) struct Access {
    /// Signed in: the session's CSRF token, for the forms.
    csrf: Option<String>,
    /// A token is configured, so signing in is possible.
    token_set: bool,
}

impl Access {
    /// Whether buttons are offered.
    pub(crate) fn can_act(&self) -> bool {
        self.csrf.is_some()
    }

    /// A POST button carrying the CSRF token.
    pub(crate) fn button(&self, action: &str, label: &str, class: &str) -> String {
        match &self.csrf {
            Some(csrf) => format!(
                "<form class=\"inline\" method=\"post\" action=\"{}\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><button class=\"{}\" type=\"submit\">{}</button></form>",
                esc(action),
                esc(csrf),
                esc(class),
                esc(label)
            ),
            None => String::new(),
        }
    }
}

struct Session {
    csrf: String,
    /// SHA-256 of the token signed in with: a token changed by a reload
    /// ends the sessions made with the old one.
    token_digest: [u8; 32],
    expires: Instant,
}

/// The console's state: the daemon's operations and the sessions.
pub struct Console {
    ops: Arc<Ops>,
    /// Whether the listener is on loopback (pages readable without a
    /// session).
    loopback: bool,
    sessions: Mutex<HashMap<String, Session>>,
}

type Shared = Arc<Console>;

/// The console's routes, to be served beside `/health` and `/metrics`;
/// says in the daemon's log where it is and who may use it.
pub fn router(ops: Arc<Ops>, listen: Option<SocketAddr>) -> Router {
    let loopback = listen.is_none_or(|a| a.ip().is_loopback());
    let token = ops.config().http_token.is_some();
    if let Some(addr) = listen {
        match (loopback, token) {
            (true, false) => tracing::info!(
                "web console at http://{addr}/: read-only (set [http] token to offer run now, cancel, enable and disable)"
            ),
            (true, true) => tracing::info!(
                "web console at http://{addr}/: readable here; its buttons need signing in with [http] token"
            ),
            (false, true) => tracing::warn!(
                "web console at http://{addr}/ is off loopback: every console page needs signing in with [http] token; serve it behind a TLS reverse proxy"
            ),
            (false, false) => tracing::warn!(
                "web console at http://{addr}/ is off: the address is not loopback and [http] has no token (set token or token_file); /health and /metrics stay open"
            ),
        }
    }
    let console = Arc::new(Console {
        ops,
        loopback,
        sessions: Mutex::new(HashMap::new()),
    });
    Router::new()
        .route("/", get(schedule_page))
        .route("/jobs/{job}", get(job_page))
        .route("/jobs/{job}/run", post(run_now))
        .route("/jobs/{job}/enable", post(enable))
        .route("/jobs/{job}/disable", post(disable))
        .route("/runs/{id}", get(run_page))
        .route("/runs/{id}/events", get(run_events))
        .route("/runs/{id}/cancel", post(cancel))
        .route("/history", get(history_page))
        .route("/status", get(status_page))
        .route("/plugins", get(plugins_page))
        .route("/reports", get(reports_page))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/console/console.css", get(css))
        .route("/console/live.js", get(js))
        .with_state(console)
}

/// Headers every console answer carries: nothing inline runs, nothing
/// is fetched from elsewhere, no page may be framed, nothing is cached.
fn hardened(mut res: Response, csp: &'static str) -> Response {
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(csp),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

const PAGE_CSP: &str = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The report page keeps its own inline stylesheet (it is the same page
/// `opsd report --format html` writes); still no script.
const REPORT_CSP: &str = "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// An HTML answer.
pub(crate) fn html_response(code: StatusCode, body: String) -> Response {
    hardened(
        (
            code,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            body,
        )
            .into_response(),
        PAGE_CSP,
    )
}

/// A page saying why not, in the console's frame.
fn refusal(code: StatusCode, title: &str, message: &str, access: Option<&Access>) -> Response {
    let body = format!("<div class=\"error\"><p>{}</p></div>", esc(message));
    html_response(code, pages::frame(title, "", access, &body))
}

fn redirect(to: &str) -> Response {
    let mut res = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    hardened(res, PAGE_CSP)
}

fn random_hex() -> String {
    let mut buf = [0u8; 32];
    let mut filled = 0;
    while filled < buf.len() {
        // SAFETY: the pointer and length describe the unfilled tail of
        // `buf`, which lives across the call.
        let n =
            unsafe { libc::getrandom(buf[filled..].as_mut_ptr().cast(), buf.len() - filled, 0) };
        if n > 0 {
            filled += n as usize;
        } else if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            // No kernel randomness: no session can be made safely.
            panic!("getrandom failed: {}", std::io::Error::last_os_error());
        }
    }
    hex::encode(buf)
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// Whether the Host header names this machine's loopback.
fn loopback_host(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(n, _)| n)
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether reading a page needs a session: off loopback, and on loopback
/// when a reverse proxy says it passed the request on (`Forwarded`,
/// `X-Forwarded-For`, `X-Forwarded-Host`, `X-Forwarded-Proto`,
/// `X-Real-IP`), since its client may be anywhere. A local client adding
/// them only makes it stricter for itself.
fn needs_session(loopback: bool, headers: &HeaderMap) -> bool {
    !loopback
        || [
            "forwarded",
            "x-forwarded-for",
            "x-forwarded-host",
            "x-forwarded-proto",
            "x-real-ip",
        ]
        .iter()
        .any(|h| headers.contains_key(*h))
}

/// Whether the request comes from a page of this console, as far as the
/// browser says: `Sec-Fetch-Site` when sent (`none`, typed or
/// bookmarked, still has its `Origin` checked), else `Origin` against
/// `Host`. A browser always sends one of them on a cross-site POST.
fn same_origin(headers: &HeaderMap) -> bool {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let ok = same_origin_said(&get);
    if !ok {
        tracing::warn!(
            origin = get("origin").unwrap_or("-"),
            sec_fetch_site = get("sec-fetch-site").unwrap_or("-"),
            host = get("host").unwrap_or("-"),
            "web console: refused a request from another site"
        );
    }
    ok
}

fn same_origin_said<'a>(get: &impl Fn(&str) -> Option<&'a str>) -> bool {
    match get("sec-fetch-site") {
        // The browser's own word, which a page cannot forge; `Origin`
        // may name a TLS proxy in front while `Host` names this listener.
        Some("same-origin") => return true,
        Some("none") | None => {}
        Some(_) => return false,
    }
    match (get("origin"), get("host")) {
        (None, _) => true,
        (Some(origin), Some(host)) => {
            origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"))
                == Some(host)
        }
        (Some(_), None) => false,
    }
}

impl Console {
    /// The session the request's cookie names, if it is live and made
    /// with the token in force.
    fn session(&self, headers: &HeaderMap) -> Option<String> {
        let token = self.ops.config().http_token.clone()?;
        let id = cookie(headers, COOKIE)?;
        let mut sessions = self.sessions.lock().ok()?;
        let now = Instant::now();
        sessions.retain(|_, s| s.expires > now);
        let s = sessions.get(&id)?;
        (s.token_digest == digest(token.as_bytes())).then(|| s.csrf.clone())
    }

    /// May this request read console pages? `Err` is the answer to send.
    fn read_access(&self, headers: &HeaderMap, path: &str) -> Result<Access, Box<Response>> {
        let token_set = self.ops.config().http_token.is_some();
        let csrf = self.session(headers);
        let access = Access { csrf, token_set };
        if self.loopback && !loopback_host(headers) {
            return Err(Box::new(refusal(
                StatusCode::MISDIRECTED_REQUEST,
                "Wrong host",
                "This console listens on loopback and answers only requests for localhost or a loopback address. Behind a reverse proxy, pass the upstream's address as Host (nginx does by default; Caddy: header_up Host {upstream_hostport}).",
                None,
            )));
        }
        if !needs_session(self.loopback, headers) {
            return Ok(access);
        }
        if !token_set {
            return Err(Box::new(refusal(
                StatusCode::FORBIDDEN,
                "Console off",
                "The web console is off here: the request came off loopback or through a reverse proxy, and [http] has no token. Set [http] token_file (and serve it behind a TLS reverse proxy), or use it from this machine on 127.0.0.1.",
                None,
            )));
        }
        if access.csrf.is_none() {
            return Err(Box::new(redirect(&format!(
                "/login?next={}",
                html::url(path)
            ))));
        }
        Ok(access)
    }

    /// May this POST change something? Checks the session, the CSRF
    /// token the form carried and the request's origin.
    fn act_access(&self, headers: &HeaderMap, csrf: &str) -> Result<Access, Box<Response>> {
        let token_set = self.ops.config().http_token.is_some();
        if !token_set {
            return Err(Box::new(refusal(
                StatusCode::FORBIDDEN,
                "Read-only",
                "This console is read-only: [http] has no token. Set [http] token_file to offer run now, cancel, enable and disable here, or use the opsd command.",
                None,
            )));
        }
        if !same_origin(headers) {
            return Err(Box::new(refusal(
                StatusCode::FORBIDDEN,
                "Refused",
                "Refused: the request came from another site.",
                None,
            )));
        }
        if self.loopback && !loopback_host(headers) {
            return Err(Box::new(refusal(
                StatusCode::MISDIRECTED_REQUEST,
                "Wrong host",
                "This console answers only requests for localhost or a loopback address.",
                None,
            )));
        }
        match self.session(headers) {
            Some(expected) if crate::http_token::same_secret(&expected, csrf) => Ok(Access {
                csrf: Some(expected),
                token_set,
            }),
            Some(_) => Err(Box::new(refusal(
                StatusCode::FORBIDDEN,
                "Refused",
                "Refused: the form's CSRF token does not match your session. Reload the page and try again.",
                None,
            ))),
            None => Err(Box::new(refusal(
                StatusCode::UNAUTHORIZED,
                "Sign in",
                "Sign in with the console's token first (the link at the top right).",
                None,
            ))),
        }
    }
}

async fn css() -> Response {
    hardened(
        ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS).into_response(),
        PAGE_CSP,
    )
}

async fn js() -> Response {
    hardened(
        (
            [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
            LIVE_JS,
        )
            .into_response(),
        PAGE_CSP,
    )
}

/// Runs a page builder off the async threads (pages read the store).
async fn page(
    c: &Shared,
    headers: &HeaderMap,
    path: String,
    build: impl FnOnce(&Ops, &Access) -> Response + Send + 'static,
) -> Response {
    let access = match c.read_access(headers, &path) {
        Ok(a) => a,
        Err(res) => return *res,
    };
    let ops = c.ops.clone();
    match tokio::task::spawn_blocking(move || build(&ops, &access)).await {
        Ok(res) => res,
        Err(e) => refusal(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Error",
            &format!("the page failed: {e}"),
            None,
        ),
    }
}

async fn schedule_page(State(c): State<Shared>, headers: HeaderMap) -> Response {
    page(&c, &headers, "/".into(), pages::schedule).await
}

async fn job_page(
    State(c): State<Shared>,
    UrlPath(job): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    let path = format!("/jobs/{}", html::url(&job));
    page(&c, &headers, path, move |ops, a| pages::job(ops, a, &job)).await
}

async fn run_page(
    State(c): State<Shared>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    let path = format!("/runs/{}", html::url(&id));
    page(&c, &headers, path, move |ops, a| pages::run(ops, a, &id)).await
}

async fn history_page(
    State(c): State<Shared>,
    Query(q): Query<pages::HistoryForm>,
    headers: HeaderMap,
) -> Response {
    page(&c, &headers, "/history".into(), move |ops, a| {
        pages::history(ops, a, &q)
    })
    .await
}

async fn status_page(State(c): State<Shared>, headers: HeaderMap) -> Response {
    page(&c, &headers, "/status".into(), pages::status).await
}

async fn plugins_page(State(c): State<Shared>, headers: HeaderMap) -> Response {
    let access = match c.read_access(&headers, "/plugins") {
        Ok(a) => a,
        Err(res) => return *res,
    };
    let list = c.ops.registry().list().await;
    pages::plugins(&list, &access)
}

/// `?since=7d`: the report's span.
#[derive(serde::Deserialize)]
pub(crate) struct ReportForm {
    since: Option<String>,
}

async fn reports_page(
    State(c): State<Shared>,
    Query(q): Query<ReportForm>,
    headers: HeaderMap,
) -> Response {
    let res = page(&c, &headers, "/reports".into(), move |ops, a| {
        pages::report(ops, a, q.since.as_deref())
    })
    .await;
    // The report keeps its inline style.
    if res.status().is_success() {
        let mut res = res;
        res.headers_mut().insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(REPORT_CSP),
        );
        return res;
    }
    res
}

/// A button's form: only the CSRF token.
#[derive(serde::Deserialize)]
struct ActionForm {
    #[serde(default)]
    csrf: String,
}

async fn run_now(
    State(c): State<Shared>,
    UrlPath(job): UrlPath<String>,
    headers: HeaderMap,
    Form(f): Form<ActionForm>,
) -> Response {
    let access = match c.act_access(&headers, &f.csrf) {
        Ok(a) => a,
        Err(res) => return *res,
    };
    let ops = c.ops.clone();
    if let Err(e) = ops.config().job(&job) {
        return refusal(
            StatusCode::NOT_FOUND,
            "Unknown job",
            &e.to_string(),
            Some(&access),
        );
    }
    let before: Vec<String> = ops.running_of(&job).into_iter().map(|r| r.run_id).collect();
    let start = crate::ops::Start::new(crate::record::Trigger::Manual, ops.clock().now());
    tracing::info!(job = %job, "run requested from the web console");
    let task = {
        let (ops, job) = (ops.clone(), job.clone());
        tokio::spawn(async move { ops.run_job(&job, start).await })
    };
    // Show the run as soon as it is under way; a quick one may be over
    // by then.
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if task.is_finished() {
            return match task.await {
                Ok(Ok(rec)) => redirect(&format!("/runs/{}", html::url(&rec.id))),
                Ok(Err(e)) => refusal(
                    StatusCode::CONFLICT,
                    "Not started",
                    &e.to_string(),
                    Some(&access),
                ),
                Err(e) => refusal(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Error",
                    &e.to_string(),
                    Some(&access),
                ),
            };
        }
        // Under way once its record is written (the run page reads it).
        if let Some(r) = ops
            .running_of(&job)
            .into_iter()
            .find(|r| !before.contains(&r.run_id) && ops.run_record(&r.run_id).is_ok())
        {
            return redirect(&format!("/runs/{}", html::url(&r.run_id)));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    redirect(&format!("/jobs/{}", html::url(&job)))
}

async fn set_enabled(
    c: Shared,
    job: String,
    headers: HeaderMap,
    csrf: String,
    on: bool,
) -> Response {
    let access = match c.act_access(&headers, &csrf) {
        Ok(a) => a,
        Err(res) => return *res,
    };
    let ops = c.ops.clone();
    let j = job.clone();
    match tokio::task::spawn_blocking(move || ops.set_enabled(&j, on)).await {
        Ok(Ok(_)) => redirect(&format!("/jobs/{}", html::url(&job))),
        Ok(Err(e)) => refusal(
            StatusCode::BAD_REQUEST,
            "Not changed",
            &e.to_string(),
            Some(&access),
        ),
        Err(e) => refusal(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Error",
            &e.to_string(),
            Some(&access),
        ),
    }
}

async fn enable(
    State(c): State<Shared>,
    UrlPath(job): UrlPath<String>,
    headers: HeaderMap,
    Form(f): Form<ActionForm>,
) -> Response {
    set_enabled(c, job, headers, f.csrf, true).await
}

async fn disable(
    State(c): State<Shared>,
    UrlPath(job): UrlPath<String>,
    headers: HeaderMap,
    Form(f): Form<ActionForm>,
) -> Response {
    set_enabled(c, job, headers, f.csrf, false).await
}

async fn cancel(
    State(c): State<Shared>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    Form(f): Form<ActionForm>,
) -> Response {
    let access = match c.act_access(&headers, &f.csrf) {
        Ok(a) => a,
        Err(res) => return *res,
    };
    match c
        .ops
        .running()
        .into_values()
        .flatten()
        .find(|r| r.run_id == id)
    {
        Some(r) => {
            tracing::info!(run = %id, "run cancelled from the web console");
            r.cancel.cancel(
                RunStatus::Cancelled,
                "cancelled from the web console".into(),
            );
            redirect(&format!("/runs/{}", html::url(&id)))
        }
        None => refusal(
            StatusCode::CONFLICT,
            "Not running",
            &format!("run {id} is not running (it may have just finished)"),
            Some(&access),
        ),
    }
}

/// `?next=/path`: where to go after signing in.
#[derive(serde::Deserialize)]
struct NextForm {
    next: Option<String>,
}

/// Only a path on this console: never another site.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && !n.chars().any(char::is_control) =>
        {
            n.to_owned()
        }
        _ => "/".into(),
    }
}

async fn login_page(
    State(c): State<Shared>,
    Query(q): Query<NextForm>,
    headers: HeaderMap,
) -> Response {
    if c.loopback && !loopback_host(&headers) {
        return refusal(
            StatusCode::MISDIRECTED_REQUEST,
            "Wrong host",
            "This console answers only requests for localhost or a loopback address.",
            None,
        );
    }
    let token_set = c.ops.config().http_token.is_some();
    pages::login(token_set, &safe_next(q.next.as_deref()), None)
}

#[derive(serde::Deserialize)]
struct LoginForm {
    #[serde(default)]
    token: String,
    next: Option<String>,
}

async fn login(State(c): State<Shared>, headers: HeaderMap, Form(f): Form<LoginForm>) -> Response {
    let next = safe_next(f.next.as_deref());
    if !same_origin(&headers) || (c.loopback && !loopback_host(&headers)) {
        return refusal(
            StatusCode::FORBIDDEN,
            "Refused",
            "Refused: the request came from another site.",
            None,
        );
    }
    let Some(token) = c.ops.config().http_token.clone() else {
        return pages::login(false, &next, None);
    };
    if !token.matches(&f.token) {
        tracing::warn!("web console: sign-in with a wrong token");
        // Slows guessing; the token is long anyway.
        tokio::time::sleep(Duration::from_millis(300)).await;
        return pages::login(true, &next, Some("That is not the token."));
    }
    let id = random_hex();
    if let Ok(mut sessions) = c.sessions.lock() {
        let now = Instant::now();
        sessions.retain(|_, s| s.expires > now);
        while sessions.len() >= MAX_SESSIONS {
            let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            sessions.remove(&oldest);
        }
        sessions.insert(
            id.clone(),
            Session {
                csrf: random_hex(),
                token_digest: digest(token.as_bytes()),
                expires: now + SESSION_FOR,
            },
        );
    }
    tracing::info!("web console: signed in");
    let secure = headers
        .get("x-forwarded-proto")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
    let mut res = redirect(&next);
    let cookie = format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        SESSION_FOR.as_secs(),
        if secure { "; Secure" } else { "" }
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

async fn logout(
    State(c): State<Shared>,
    headers: HeaderMap,
    Form(f): Form<ActionForm>,
) -> Response {
    if let Err(res) = c.act_access(&headers, &f.csrf) {
        return *res;
    }
    if let (Some(id), Ok(mut sessions)) = (cookie(&headers, COOKIE), c.sessions.lock()) {
        sessions.remove(&id);
    }
    let mut res = redirect("/");
    res.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("opsd_console=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    res
}

/// `?from=N`: log lines the page already shows.
#[derive(serde::Deserialize)]
struct EventsForm {
    #[serde(default)]
    from: usize,
}

/// One server-sent event; `data` is one line of JSON.
fn sse(event: &str, data: &serde_json::Value) -> bytes::Bytes {
    bytes::Bytes::from(format!("event: {event}\ndata: {data}\n\n"))
}

/// A log line for the live view: what the page's log shows.
fn line_json(l: &crate::record::LogLine) -> serde_json::Value {
    serde_json::json!({
        "at": html::millis(l.ms),
        "level": l.level.as_str(),
        "source": l.source.as_str(),
        "message": crate::escape::line(&l.message),
    })
}

/// `GET /runs/{id}/events`: a running run's new log lines and progress
/// as server-sent events, then `done` with its status.
async fn run_events(
    State(c): State<Shared>,
    UrlPath(id): UrlPath<String>,
    Query(q): Query<EventsForm>,
    headers: HeaderMap,
) -> Response {
    if let Err(res) = c.read_access(&headers, &format!("/runs/{}", html::url(&id))) {
        return *res;
    }
    let ops = c.ops.clone();
    let running = ops
        .running()
        .into_values()
        .flatten()
        .find(|r| r.run_id == id);
    let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(256);
    tokio::spawn(async move {
        let done = |ops: &Ops| {
            let status = ops
                .run_record(&id)
                .map(|r| r.status.to_string())
                .unwrap_or_else(|_| "unknown".into());
            sse("done", &serde_json::json!({ "status": status }))
        };
        let Some(run) = running else {
            let _ = tx.send(done(&ops)).await;
            return;
        };
        // Subscribe first, then read what is there: a line pushed in
        // between is in both, and is sent once.
        let mut events = run.log.subscribe();
        let have = run.log.lines();
        for l in have.iter().skip(q.from) {
            if tx.send(sse("line", &line_json(l))).await.is_err() {
                return;
            }
        }
        let last_ms = have.last().map_or(0, |l| l.ms);
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        let mut ticks = 0u32;
        loop {
            tokio::select! {
                biased;
                ev = events.recv() => match ev {
                    Ok(crate::runtime::log::LogEvent::Line(l)) => {
                        if l.ms <= last_ms && have.contains(&l) {
                            continue;
                        }
                        if tx.send(sse("line", &line_json(&l))).await.is_err() {
                            return;
                        }
                    }
                    Ok(crate::runtime::log::LogEvent::Progress { done, total, message }) => {
                        let p = serde_json::json!({
                            "done": done,
                            "total": total,
                            "message": crate::escape::line(&message),
                        });
                        if tx.send(sse("progress", &p)).await.is_err() {
                            return;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        let note = serde_json::json!({
                            "at": "", "level": "warn", "source": "host",
                            "message": format!("{n} lines went by too fast to show; reload for the whole log"),
                        });
                        let _ = tx.send(sse("line", &note)).await;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                },
                _ = tick.tick() => {
                    if tx.is_closed() {
                        return;
                    }
                    // A comment every 15 s keeps a quiet run's stream
                    // open through proxies that close idle connections.
                    ticks += 1;
                    if ticks.is_multiple_of(30)
                        && tx.send(bytes::Bytes::from_static(b": still running\n\n")).await.is_err()
                    {
                        return;
                    }
                    if !ops.running().into_values().flatten().any(|r| r.run_id == id) {
                        break;
                    }
                }
            }
        }
        // Lines pushed just before the end; the record is written by the
        // time the run leaves the running list.
        while let Ok(ev) = events.try_recv() {
            if let crate::runtime::log::LogEvent::Line(l) = ev
                && !(l.ms <= last_ms && have.contains(&l))
            {
                let _ = tx.send(sse("line", &line_json(&l))).await;
            }
        }
        let _ = tx.send(done(&ops)).await;
    });
    let mut rx = rx;
    let stream = futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx)
            .map(|b| b.map(Ok::<_, std::convert::Infallible>))
    });
    hardened(
        (
            [
                (header::CONTENT_TYPE, "text/event-stream"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            axum::body::Body::from_stream(stream),
        )
            .into_response(),
        PAGE_CSP,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn only_this_console_may_post() {
        let own = [
            ("host", "127.0.0.1:9779"),
            ("origin", "http://127.0.0.1:9779"),
        ];
        assert!(same_origin(&headers(&own)));
        assert!(same_origin(&headers(&[
            ("host", "127.0.0.1:9779"),
            ("sec-fetch-site", "same-origin")
        ])));
        // Behind the README's TLS proxy, which passes the upstream's
        // address as Host: the browser says same-origin, and the Origin
        // is the proxy's.
        assert!(same_origin(&headers(&[
            ("host", "127.0.0.1:9779"),
            ("origin", "https://ops.example.com"),
            ("sec-fetch-site", "same-origin")
        ])));
        // A plain client sends neither; the session and CSRF token decide.
        assert!(same_origin(&headers(&[("host", "127.0.0.1:9779")])));
        for bad in [
            [
                ("host", "127.0.0.1:9779"),
                ("origin", "http://evil.example"),
            ],
            [("host", "127.0.0.1:9779"), ("origin", "null")],
            [
                ("host", "127.0.0.1:9779"),
                ("origin", "http://127.0.0.1:9780"),
            ],
            [("host", "127.0.0.1:9779"), ("sec-fetch-site", "same-site")],
            [("host", "127.0.0.1:9779"), ("sec-fetch-site", "cross-site")],
        ] {
            assert!(!same_origin(&headers(&bad)), "{bad:?}");
        }
    }

    #[test]
    fn loopback_pages_answer_loopback_names_only() {
        let with_host = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, HeaderValue::from_str(v).unwrap());
            h
        };
        for ok in [
            "127.0.0.1:9779",
            "localhost:9779",
            "LOCALHOST",
            "[::1]:9779",
            "127.0.0.2",
        ] {
            assert!(loopback_host(&with_host(ok)), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:9779",
            "10.0.0.1:9779",
            "localhost.evil.example",
        ] {
            assert!(!loopback_host(&with_host(bad)), "{bad}");
        }
        assert!(!loopback_host(&HeaderMap::new()));
    }

    #[test]
    fn pages_through_a_proxy_need_a_session() {
        assert!(needs_session(false, &headers(&[("host", "10.0.0.1:9779")])));
        assert!(!needs_session(
            true,
            &headers(&[("host", "127.0.0.1:9779")])
        ));
        for proxy in [
            "forwarded",
            "x-forwarded-for",
            "x-forwarded-host",
            "x-forwarded-proto",
            "x-real-ip",
        ] {
            let mut h = headers(&[("host", "127.0.0.1:9779")]);
            h.insert(proxy, HeaderValue::from_static("203.0.113.9"));
            assert!(needs_session(true, &h), "{proxy}");
        }
    }

    #[test]
    fn sign_in_leads_only_to_this_console() {
        assert_eq!(safe_next(Some("/history?job=a")), "/history?job=a");
        for bad in [
            "//evil.example/",
            "https://evil.example/",
            "/\\evil",
            "/a\nb",
            "",
        ] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad:?}");
        }
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn session_ids_are_random_and_long() {
        let (a, b) = (random_hex(), random_hex());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }

    #[test]
    fn cookies_are_read_by_exact_name() {
        let h = headers(&[("cookie", "x_opsd_console=no; opsd_console=abc; other=1")]);
        assert_eq!(cookie(&h, COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&HeaderMap::new(), COOKIE), None);
    }
}
