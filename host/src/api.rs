//! The control socket: HTTP/JSON over a Unix socket (mode 0600), so the
//! CLI reaches a running daemon (sled allows one process) and an operator
//! can use `curl --unix-socket`. Every route is a thin shim over [`Ops`];
//! the client returns the same types the local path does.
//!
//! Routes (all JSON):
//! - `GET  /v1/health`
//! - `GET  /v1/schedule`
//! - `POST /v1/jobs/{job}/run` with `{"dry_run": false}` (and `"set":
//!   {"key": value}` for `opsd run --set`): waits for the run
//! - `POST /v1/jobs/{job}/enable` and `/disable`
//! - `GET  /v1/plugins`: every plugin with its status
//! - `GET  /v1/status`: the machine against thresholds and conditions
//! - `GET  /v1/runs?job=&status=&since=&limit=`: history, newest first
//! - `GET  /v1/runs/{id}` and `GET /v1/runs/{id}/log`
//!
//! Errors are `{"error": "...", "kind": "..."}` with a matching status.

use crate::ops::{Ops, OpsError, Start};
use crate::record::ScheduleEntry;
use crate::record::{LogLine, RunRecord, Trigger};
use crate::runtime::log::LogEvent;
use crate::store::HistoryQuery;
use anyhow::Context as _;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::{UnixListener, UnixStream};

/// Body of `POST /v1/jobs/{job}/run`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct RunBody {
    #[serde(default)]
    pub dry_run: bool,
    /// Stream the run's log and progress as NDJSON, ending with the record.
    #[serde(default)]
    pub follow: bool,
    /// `[job.config]` values for this run only, by dotted key (`opsd run
    /// --set`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub set: std::collections::BTreeMap<String, serde_json::Value>,
}

/// One line of a followed run's NDJSON stream: `{"stream": "log",
/// "event": "line", ...}`, then `{"stream": "done", "record": {...}}`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "stream", rename_all = "lowercase")]
pub enum FollowEvent {
    /// A log line or progress report, as it happened.
    Log(LogEvent),
    /// The finished record; the last line.
    Done { record: Box<RunRecord> },
    /// The run could not be started.
    Error { error: String },
}
#[derive(Debug, Serialize, Deserialize)]
struct ErrorBody {
    error: String,
    kind: String,
}

struct ApiError(OpsError);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind) = match &self.0 {
            OpsError::UnknownJob(_) => (StatusCode::NOT_FOUND, "unknown-job"),
            OpsError::UnknownRun(_) => (StatusCode::NOT_FOUND, "unknown-run"),
            OpsError::AlreadyRunning { .. } => (StatusCode::CONFLICT, "already-running"),
            OpsError::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, "store"),
            OpsError::Stopping => (StatusCode::SERVICE_UNAVAILABLE, "stopping"),
            OpsError::BadOverride { .. } => (StatusCode::BAD_REQUEST, "bad-override"),
            OpsError::NotOnThisHost { .. } => (StatusCode::CONFLICT, "not-on-this-host"),
            OpsError::ClaimedElsewhere { .. } => (StatusCode::CONFLICT, "claimed-elsewhere"),
            OpsError::FleetUnreachable { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "fleet-unreachable")
            }
        };
        let body = ErrorBody {
            error: self.0.to_string(),
            kind: kind.into(),
        };
        (status, Json(body)).into_response()
    }
}

impl From<OpsError> for ApiError {
    fn from(e: OpsError) -> Self {
        ApiError(e)
    }
}

type ApiResult<T> = Result<Json<T>, ApiError>;

/// The control API's routes.
pub fn router(ops: Arc<Ops>) -> Router {
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/schedule", get(schedule))
        .route("/v1/jobs/{job}", get(job_detail))
        .route("/v1/jobs/{job}/run", post(run_job))
        .route("/v1/jobs/{job}/enable", post(enable))
        .route("/v1/jobs/{job}/disable", post(disable))
        .route("/v1/plugins", get(plugins))
        .route("/v1/status", get(status))
        .route("/v1/runs", get(history))
        .route("/v1/report-input", get(report_input))
        .route("/v1/runs/{id}", get(run_record))
        .route("/v1/runs/{id}/log", get(run_log))
        .with_state(ops)
}

async fn health(State(ops): State<Arc<Ops>>) -> Response {
    let h = ops.health(true);
    let code = if h.status == crate::ops::HealthStatus::Ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(h)).into_response()
}

/// `/health` over TCP, which more may reach than the 0600 socket: which
/// jobs are broken, not why (the reasons quote the configuration), and
/// not which file the daemon runs.
async fn http_health(State(ops): State<Arc<Ops>>) -> Response {
    let mut h = ops.health(true);
    h.config = None;
    for b in &mut h.broken_jobs {
        b.reasons.clear();
    }
    let code = if h.status == crate::ops::HealthStatus::Ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(h)).into_response()
}

async fn metrics(State(ops): State<Arc<Ops>>) -> Response {
    let body = ops.metrics_text();
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// The HTTP endpoints for monitoring (TCP, loopback by default): health
/// and metrics only; nothing here changes anything.
pub fn http_router(ops: Arc<Ops>) -> Router {
    Router::new()
        .route("/health", get(http_health))
        .route("/metrics", get(metrics))
        .with_state(ops)
}

/// Serves the monitoring endpoints, and beside them `pages` (the web
/// console), until `shutdown` resolves.
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    ops: Arc<Ops>,
    pages: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve_limited(
        listener,
        http_router(ops).merge(pages),
        HttpLimits::default(),
        shutdown,
    )
    .await
}

/// How much of the daemon one HTTP client may hold.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Connections served at once; more wait in the kernel's backlog.
    pub connections: usize,
    /// Time a client has to send a request's headers.
    pub header_timeout: std::time::Duration,
    /// Time a handler has to make its answer, reading the request's body
    /// included (a live view's stream, once answered, is not limited).
    pub request_timeout: std::time::Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            connections: 256,
            header_timeout: std::time::Duration::from_secs(10),
            request_timeout: std::time::Duration::from_secs(60),
        }
    }
}

/// Serves `router` as `axum::serve` would, but holds at most
/// `limits.connections` connections (the rest wait in the backlog),
/// drops a client that takes longer than `limits.header_timeout` to send
/// its headers, and answers 408 to a request whose handler (reading the
/// body included) takes longer than `limits.request_timeout`. A
/// slowloris, local or (off loopback) remote, can delay the listener but
/// not hold it for ever, nor take the daemon's file descriptors, which
/// the store, the plugins and the control socket need.
async fn serve_limited(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let deadline = limits.request_timeout;
    let router = router.layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| async move {
            match tokio::time::timeout(deadline, next.run(req)).await {
                Ok(res) => res,
                Err(_) => (
                    StatusCode::REQUEST_TIMEOUT,
                    "the request took too long (a body sent too slowly?)\n",
                )
                    .into_response(),
            }
        },
    ));
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.connections.max(1)));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            () = &mut shutdown => break,
            slot = slots.clone().acquire_owned() => slot.context("HTTP server: connection slots")?,
        };
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors or the like: wait rather than spin.
                    tracing::warn!(error = %e, "HTTP server: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    continue;
                }
            },
        };
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(limits.header_timeout);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = stop.wait_for(|s| *s) => conn.as_mut().graceful_shutdown(),
            }
            let _ = conn.await;
        });
    }
    let _ = stop_tx.send(true);
    Ok(())
}
async fn job_detail(
    State(ops): State<Arc<Ops>>,
    UrlPath(job): UrlPath<String>,
) -> ApiResult<crate::jobs::JobDetail> {
    Ok(Json(ops.job_detail(&job)?))
}

async fn schedule(State(ops): State<Arc<Ops>>) -> ApiResult<Vec<ScheduleEntry>> {
    Ok(Json(ops.schedule()?))
}

async fn enable(
    State(ops): State<Arc<Ops>>,
    UrlPath(job): UrlPath<String>,
) -> ApiResult<ScheduleEntry> {
    Ok(Json(ops.set_enabled(&job, true)?))
}

async fn disable(
    State(ops): State<Arc<Ops>>,
    UrlPath(job): UrlPath<String>,
) -> ApiResult<ScheduleEntry> {
    Ok(Json(ops.set_enabled(&job, false)?))
}

async fn run_job(
    State(ops): State<Arc<Ops>>,
    UrlPath(job): UrlPath<String>,
    body: Option<Json<RunBody>>,
) -> Result<Response, ApiError> {
    let body = body.map(|b| b.0).unwrap_or_default();
    let start = Start {
        dry_run: body.dry_run,
        overrides: body.set,
        ..Start::new(Trigger::Manual, ops.clock().now())
    };
    if !body.follow {
        return Ok(Json(ops.run_job(&job, start).await?).into_response());
    }
    // Check the job exists before answering 200 with a stream.
    ops.config().job(&job).map_err(OpsError::from)?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<FollowEvent>();
    let (log_tx, mut log_rx) = tokio::sync::mpsc::unbounded_channel::<LogEvent>();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<FollowEvent>();
    tokio::spawn(async move {
        let last = match ops.run_job_following(&job, start, Some(log_tx)).await {
            Ok(record) => FollowEvent::Done {
                record: Box::new(record),
            },
            Err(e) => FollowEvent::Error {
                error: e.to_string(),
            },
        };
        let _ = done_tx.send(last);
    });
    // The log channel closes only once the run is over and every line is
    // through, so the record always comes last.
    tokio::spawn(async move {
        while let Some(ev) = log_rx.recv().await {
            let _ = tx.send(FollowEvent::Log(ev));
        }
        if let Ok(last) = done_rx.await {
            let _ = tx.send(last);
        }
    });
    let stream = futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx).map(|ev| {
            ev.map(|ev| {
                let mut line = serde_json::to_vec(&ev).unwrap_or_default();
                line.push(b'\n');
                Ok::<_, std::convert::Infallible>(bytes::Bytes::from(line))
            })
        })
    });
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/x-ndjson")],
        axum::body::Body::from_stream(stream),
    )
        .into_response())
}
async fn status(State(ops): State<Arc<Ops>>) -> Response {
    // Blocks a quarter second when the sampler has nothing yet.
    match tokio::task::spawn_blocking(move || ops.status()).await {
        Ok(s) => Json(s).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn plugins(State(ops): State<Arc<Ops>>) -> Json<Vec<crate::plugins::PluginEntry>> {
    Json(ops.registry().list().await)
}

async fn history(
    State(ops): State<Arc<Ops>>,
    Query(q): Query<HistoryQuery>,
) -> ApiResult<Vec<RunRecord>> {
    Ok(Json(ops.history(&q)?))
}

/// `?seconds=N`: the span a report covers.
#[derive(serde::Deserialize)]
struct ReportQuery {
    seconds: i64,
}

async fn report_input(
    State(ops): State<Arc<Ops>>,
    Query(q): Query<ReportQuery>,
) -> ApiResult<opsd_report_core::input::Input> {
    Ok(Json(ops.report_input(chrono::Duration::seconds(
        q.seconds.max(1),
    ))?))
}

async fn run_record(
    State(ops): State<Arc<Ops>>,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<RunRecord> {
    Ok(Json(ops.run_record(&id)?))
}

async fn run_log(
    State(ops): State<Arc<Ops>>,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<Vec<LogLine>> {
    Ok(Json(ops.run_log(&id)?))
}

/// Binds the control socket with mode 0600. The socket is created under a
/// temporary name, restricted, then renamed into place, so it is never
/// reachable with wider permissions. A socket file nobody answers on is
/// stale and replaced; one that answers means a daemon already runs.
pub async fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            anyhow::bail!(
                "another opsd daemon is already running: its control socket {} answers",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("removing stale socket {}", path.display()))?;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let listener = UnixListener::bind(&tmp)
        .with_context(|| format!("binding control socket {}", tmp.display()))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("placing control socket at {}", path.display()))?;
    Ok(listener)
}

/// Serves the control API until `shutdown` resolves.
pub async fn serve(
    listener: UnixListener,
    ops: Arc<Ops>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    axum::serve(OutsideSandboxes(listener), router(ops))
        .with_graceful_shutdown(shutdown)
        .await
        .context("control socket server")
}

/// The control socket's listener, refusing connections from programs a
/// job started. They are kept from the socket already (the supervisor
/// refuses their connect, the socket is 0600); this holds even for a job
/// granted Unix sockets whose program races that check: the peer's PID
/// namespace, or its pids cgroup, gives it away.
struct OutsideSandboxes(UnixListener);

impl axum::serve::Listener for OutsideSandboxes {
    type Io = UnixStream;
    type Addr = tokio::net::unix::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok((stream, addr)) => match refused_peer(&stream) {
                    Some((pid, why)) => {
                        tracing::warn!(pid, "refused a control socket connection from {why}")
                    }
                    None => return (stream, addr),
                },
                Err(e) => {
                    tracing::warn!(error = %e, "control socket accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// The peer's pid when it may not drive the daemon: it runs in a job's
/// sandbox (another PID namespace than the daemon's, or one of the
/// daemon's per-call pids cgroups), or as a user other than root and the
/// daemon's.
fn refused_peer(stream: &UnixStream) -> Option<(i32, &'static str)> {
    let cred = stream.peer_cred().ok()?;
    let pid = cred.pid()?;
    // Only root and the daemon's own user drive it, whatever the file's
    // mode says.
    // SAFETY: geteuid(2) has no preconditions.
    if cred.uid() != 0 && cred.uid() != unsafe { libc::geteuid() } {
        return Some((pid, "a user who may not drive opsd"));
    }
    let sandboxed = (pid, "a program a job started");
    let ns = |p: &str| std::fs::read_link(format!("/proc/{p}/ns/pid")).ok();
    if ns(&pid.to_string()) != ns("self") {
        return Some(sandboxed);
    }
    let marker = format!("/opsd-{}-", std::process::id());
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .is_ok_and(|c| c.contains(&marker))
        .then_some(sandboxed)
}

/// A connection to a running daemon's control socket.
pub struct Client {
    socket: PathBuf,
}

impl Client {
    /// Connects if a daemon answers on `socket`; `None` when no daemon
    /// runs (no socket, or a stale one).
    pub async fn connect(socket: &Path) -> Option<Client> {
        UnixStream::connect(socket).await.ok().map(|_| Client {
            socket: socket.to_owned(),
        })
    }

    /// Sends one request and returns the response, whatever its status.
    async fn raw(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<hyper::Response<hyper::body::Incoming>> {
        let stream = UnixStream::connect(&self.socket)
            .await
            .with_context(|| format!("connecting to the daemon at {}", self.socket.display()))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "opsd")
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(
                body.map(|b| b.to_string()).unwrap_or_default(),
            )))?;
        sender
            .send_request(req)
            .await
            .context("the daemon closed the connection")
    }

    /// Sends one request; an error status becomes an error carrying the
    /// daemon's message.
    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<hyper::Response<hyper::body::Incoming>> {
        let res = self.raw(method, path, body).await?;
        if !res.status().is_success() {
            let status = res.status();
            let bytes = res.into_body().collect().await?.to_bytes();
            if let Ok(e) = serde_json::from_slice::<ErrorBody>(&bytes) {
                anyhow::bail!("{}", e.error);
            }
            anyhow::bail!(
                "daemon answered {status}: {}",
                String::from_utf8_lossy(&bytes)
            );
        }
        Ok(res)
    }

    async fn request<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<T> {
        let bytes = self
            .send(method, path, body)
            .await?
            .into_body()
            .collect()
            .await?
            .to_bytes();
        serde_json::from_slice(&bytes)
            .context("the daemon's answer is not the JSON this opsd expects (version mismatch?)")
    }

    /// `POST /v1/jobs/{job}/run` with `follow`: calls `on_event` for each
    /// log line and progress report as it happens; returns the record.
    pub async fn run_job_follow(
        &self,
        job: &str,
        dry_run: bool,
        set: &std::collections::BTreeMap<String, serde_json::Value>,
        mut on_event: impl FnMut(&LogEvent),
    ) -> anyhow::Result<RunRecord> {
        let path = format!("/v1/jobs/{}/run", encode(job));
        let body = serde_json::json!({ "dry_run": dry_run, "follow": true, "set": set });
        let mut body = self.send("POST", &path, Some(body)).await?.into_body();
        let mut pending: Vec<u8> = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.context("reading the run's stream")?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            pending.extend_from_slice(&data);
            while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=pos).collect();
                match serde_json::from_slice::<FollowEvent>(&line)? {
                    FollowEvent::Log(ev) => on_event(&ev),
                    FollowEvent::Done { record } => return Ok(*record),
                    FollowEvent::Error { error } => anyhow::bail!("{error}"),
                }
            }
        }
        anyhow::bail!("the daemon ended the stream before the run finished")
    }

    /// `GET /v1/health` (an unhealthy daemon answers 503 with the same
    /// body).
    pub async fn health(&self) -> anyhow::Result<crate::ops::Health> {
        let bytes = self
            .raw("GET", "/v1/health", None)
            .await?
            .into_body()
            .collect()
            .await?
            .to_bytes();
        Ok(serde_json::from_slice(&bytes)?)
    }

    /// `GET /v1/schedule`.
    pub async fn schedule(&self) -> anyhow::Result<Vec<ScheduleEntry>> {
        self.request("GET", "/v1/schedule", None).await
    }

    /// `GET /v1/status`.
    pub async fn status(&self) -> anyhow::Result<crate::monitor::MachineStatus> {
        self.request("GET", "/v1/status", None).await
    }

    /// `GET /v1/jobs/{job}`.
    pub async fn job_detail(&self, job: &str) -> anyhow::Result<crate::jobs::JobDetail> {
        self.request("GET", &format!("/v1/jobs/{}", encode(job)), None)
            .await
    }

    /// `POST /v1/jobs/{job}/run`.
    pub async fn run_job(
        &self,
        job: &str,
        dry_run: bool,
        set: &std::collections::BTreeMap<String, serde_json::Value>,
    ) -> anyhow::Result<RunRecord> {
        let path = format!("/v1/jobs/{}/run", encode(job));
        self.request(
            "POST",
            &path,
            Some(serde_json::json!({ "dry_run": dry_run, "set": set })),
        )
        .await
    }

    /// `POST /v1/jobs/{job}/enable` or `/disable`.
    pub async fn set_enabled(&self, job: &str, enabled: bool) -> anyhow::Result<ScheduleEntry> {
        let verb = if enabled { "enable" } else { "disable" };
        self.request("POST", &format!("/v1/jobs/{}/{verb}", encode(job)), None)
            .await
    }

    /// `GET /v1/plugins`: the daemon's view of the plugin directory.
    pub async fn plugins(&self) -> anyhow::Result<Vec<crate::plugins::PluginEntry>> {
        self.request("GET", "/v1/plugins", None).await
    }

    /// `GET /v1/runs`.
    pub async fn history(&self, q: &HistoryQuery) -> anyhow::Result<Vec<RunRecord>> {
        let mut params = Vec::new();
        if let Some(j) = &q.job {
            params.push(format!("job={}", encode(j)));
        }
        if let Some(s) = q.status {
            params.push(format!("status={s}"));
        }
        if let Some(t) = q.since {
            params.push(format!("since={}", encode(&t.to_rfc3339())));
        }
        if let Some(l) = q.limit {
            params.push(format!("limit={l}"));
        }
        self.request("GET", &format!("/v1/runs?{}", params.join("&")), None)
            .await
    }

    /// `GET /v1/report-input`.
    pub async fn report_input(
        &self,
        seconds: i64,
    ) -> anyhow::Result<opsd_report_core::input::Input> {
        self.request("GET", &format!("/v1/report-input?seconds={seconds}"), None)
            .await
    }

    /// `GET /v1/runs/{id}`.
    pub async fn run_record(&self, id: &str) -> anyhow::Result<RunRecord> {
        self.request("GET", &format!("/v1/runs/{}", encode(id)), None)
            .await
    }

    /// `GET /v1/runs/{id}/log`.
    pub async fn run_log(&self, id: &str) -> anyhow::Result<Vec<LogLine>> {
        self.request("GET", &format!("/v1/runs/{}/log", encode(id)), None)
            .await
    }
}

/// Percent-encodes a path segment or query value.
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    async fn listening(
        limits: HttpLimits,
    ) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new().route("/metrics", get(|| async { "up 1\n" }));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve_limited(listener, router, limits, async {
            let _ = rx.await;
        }));
        (addr, tx)
    }

    /// Opens a connection and sends half a request's headers.
    async fn slow_client(addr: std::net::SocketAddr) -> TcpStream {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            .await
            .unwrap();
        s
    }

    async fn scrape(addr: std::net::SocketAddr) -> String {
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = Vec::new();
        c.read_to_end(&mut out).await.unwrap();
        String::from_utf8_lossy(&out).into_owned()
    }

    /// A slowloris (clients that never finish their headers) is cut off
    /// instead of holding sockets, and so file descriptors, for ever.
    #[tokio::test]
    async fn clients_that_never_finish_their_headers_are_cut_off() {
        let (addr, _stop) = listening(HttpLimits {
            connections: 16,
            header_timeout: Duration::from_millis(300),
            request_timeout: Duration::from_secs(60),
        })
        .await;
        let mut slow = Vec::new();
        for _ in 0..4 {
            slow.push(slow_client(addr).await);
        }
        for s in &mut slow {
            let mut sink = Vec::new();
            tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut sink))
                .await
                .expect("a client that never finishes its headers is cut off")
                .ok();
        }
        assert!(scrape(addr).await.contains("up 1"));
    }

    /// A kept-alive connection left idle after its answer is cut off too,
    /// so one request does not buy a slot for ever.
    #[tokio::test]
    async fn idle_kept_alive_connections_are_cut_off() {
        let (addr, _stop) = listening(HttpLimits {
            connections: 16,
            header_timeout: Duration::from_millis(300),
            request_timeout: Duration::from_secs(60),
        })
        .await;
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .await
            .unwrap();
        let mut sink = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut sink))
            .await
            .expect("an idle kept-alive connection is cut off")
            .ok();
        assert!(String::from_utf8_lossy(&sink).contains("up 1"));
    }

    /// A client that sends its headers in time and then trickles a body
    /// is cut off too: headers alone do not buy a slot for ever.
    #[tokio::test]
    async fn a_trickled_body_is_cut_off() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new().route("/login", post(|body: String| async move { body }));
        let limits = HttpLimits {
            connections: 16,
            header_timeout: Duration::from_millis(300),
            request_timeout: Duration::from_millis(300),
        };
        tokio::spawn(serve_limited(
            listener,
            router,
            limits,
            std::future::pending(),
        ));
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\nx")
            .await
            .unwrap();
        let mut sink = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut sink))
            .await
            .expect("a client trickling its body is cut off")
            .ok();
        assert!(
            String::from_utf8_lossy(&sink).starts_with("HTTP/1.1 408"),
            "{}",
            String::from_utf8_lossy(&sink)
        );
    }

    /// Past the limit, connections wait their turn: the daemon's file
    /// descriptors are not the listener's to use up.
    #[tokio::test]
    async fn connections_past_the_limit_wait() {
        let (addr, _stop) = listening(HttpLimits {
            connections: 3,
            header_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(60),
        })
        .await;
        let mut slow = Vec::new();
        for _ in 0..3 {
            slow.push(slow_client(addr).await);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let waiting = tokio::spawn(scrape(addr));
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            !waiting.is_finished(),
            "a fourth connection was served while three held the listener"
        );
        drop(slow);
        let answer = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("served once the slow clients left")
            .unwrap();
        assert!(answer.contains("up 1"), "{answer}");
    }
}
