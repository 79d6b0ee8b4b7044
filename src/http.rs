//! The HTTP control plane (docs/http.md) on tiny_http: one role thread, "http", that
//! answers reads from the published snapshot and turns writes into
//! `ControlRequest`s for the coordinator. It never changes state itself.
//!
//! tiny_http parses request heads on its own per-connection threads and hands
//! us each request; bodies up to 1 KiB arrive already read. A larger or chunked
//! body would be read on our thread with no socket timeout (tiny_http gives no
//! access to the socket), and so would the rest of an unread body when the
//! request is dropped. So such requests are served on a short-lived
//! "http-body" thread instead: a slow client can hold that thread, never the
//! role. A request claiming an absurd `Content-Length` is leaked on purpose:
//! dropping it would make tiny_http allocate a buffer of that size at once.
//!
//! Before any token is looked at, `guard` refuses what a web page in a
//! browser could send (docs/http.md#browsers): a `Host` that is not the
//! daemon's (DNS rebinding), another site's `Origin`, a POST of a type a
//! plain cross-site form can send. The dashboard's files (`crate::dashboard`)
//! are the one thing besides `/healthz` served without a token: they hold no
//! data.
//!
//! Tokens carry tiers (docs/mcp.md#tiers): the `http.token_file` token has
//! every tier, the `mcp.token_file` token those of `mcp.allow`. Each route
//! needs one tier, checked here, so a token cannot do more over raw HTTP than
//! through the MCP server. The routes for tasks and screens read the queue
//! folders and tmux themselves (reads, and an inbox write a person could make
//! too); nothing here changes the coordinator's state.

use crate::config::{Config, Listen, Secret, Tier};
use crate::control::{Control, ControlError, ControlRequest, Reply, Shared};
use crate::heartbeat::{self, Beat};
use crossbeam_channel::{RecvTimeoutError, Sender};
use serde::Deserialize;
use serde_json::json;
use std::fmt;
use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tiny_http::{Header, Method, Request, Response, Server, StatusCode};

/// Bodies larger than this are refused with 413.
pub const MAX_BODY: usize = 64 * 1024;
/// How long a control request waits for the coordinator's reply.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the role waits for a request when nothing wakes it: a stop and a
/// heartbeat ask unblock the wait (see [`Listening`]), so this is no cadence.
const IDLE_WAIT: Duration = Duration::from_secs(3600);
/// Answers larger than this are written from a helper thread.
const LARGE_ANSWER: usize = 64 * 1024;
/// Wait before listening again after the listener died.
const REBIND_PAUSE: Duration = Duration::from_secs(1);
/// At start-up a TCP port still tied up by a killed predecessor's closing
/// connections is refused for a moment (EADDRINUSE right after a SIGKILL,
/// though the port is free again soon after): binding is retried this long
/// before the daemon gives up.
const BIND_RETRY_FOR: Duration = Duration::from_secs(15);
const BIND_RETRY_EVERY: Duration = Duration::from_millis(100);
/// tiny_http reads bodies up to this size before handing the request over.
const PREBUFFERED: usize = 1024;
/// Dropping an unread body makes tiny_http allocate the unread length in one
/// go; above this a request is leaked instead of dropped.
const ABSURD_BODY: usize = 64 * 1024 * 1024;
/// Mode of a unix control socket: owner and group (an operators' group).
const SOCKET_MODE: u32 = 0o660;

#[derive(Debug)]
pub enum HttpError {
    /// `http.listen` is neither `host:port` nor `unix:/path`.
    BadListen(String),
    Bind {
        listen: String,
        source: std::io::Error,
    },
    /// The unix socket's folder or file could not be prepared.
    Socket {
        path: PathBuf,
        why: String,
    },
    Spawn(std::io::Error),
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::BadListen(l) => write!(f, "http.listen {l:?}: expected host:port or unix:/path/to/socket"),
            HttpError::Bind { listen, source } => {
                write!(f, "http.listen {listen:?}: cannot listen: {source}")
            }
            HttpError::Socket { path, why } => {
                write!(f, "control socket {}: {why}", path.display())
            }
            HttpError::Spawn(e) => write!(f, "cannot start the http thread: {e}"),
        }
    }
}

impl std::error::Error for HttpError {}

/// The running control plane. Dropping it stops the role too.
pub struct HttpHandle {
    stop: Arc<AtomicBool>,
    live: Live,
    listening: Listening,
    thread: Option<JoinHandle<()>>,
    front: Option<crate::http_front::Front>,
}

/// The server the role waits on now (none while it listens again), shared
/// so that a stop or a heartbeat ask can wake the wait.
#[derive(Clone, Default)]
struct Listening(Arc<parking_lot::Mutex<Option<Arc<Server>>>>);

impl Listening {
    fn set(&self, server: Option<Arc<Server>>) {
        *self.0.lock() = server;
    }

    fn wake(&self) {
        if let Some(server) = self.0.lock().as_ref() {
            server.unblock();
        }
    }
}

impl HttpHandle {
    /// What takes a reloaded configuration (a reload hook of the coordinator's):
    /// projects, sessions and `dispatch.max_task_bytes` for the task and
    /// screen routes. Tokens and tiers keep their start-up values.
    pub fn reconfigurer(&self) -> impl Fn(&Arc<Config>) + Send + 'static {
        let live = self.live.clone();
        let door = self.front.as_ref().map(|f| f.max_body_handle());
        move |config| {
            if let Some(door) = &door {
                door.store(largest_body(config), Ordering::Relaxed);
            }
            *live.0.write() = Arc::clone(config);
        }
    }

    /// The bound TCP address (useful with port 0), `None` for a unix socket.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.front.as_ref().map(|f| f.local_addr())
    }

    /// Stops accepting, finishes the request in hand, removes a unix socket
    /// file, and joins the thread.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        // The door first: no new connection then reaches a stopping role.
        drop(self.front.take());
        self.stop.store(true, Ordering::Relaxed);
        self.listening.wake();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                log::error!("the http thread panicked");
            }
        }
    }
}

impl Drop for HttpHandle {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Time limits of the role; tests shorten them.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A role that has not beaten for this long makes `/healthz` answer 503.
    pub stale_after: Duration,
    /// How long a control request waits for the coordinator (then 503).
    pub reply_timeout: Duration,
    /// How long a TCP client has to send a request head (then 408).
    pub head_within: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            stale_after: heartbeat::STALE_AFTER,
            reply_timeout: REPLY_TIMEOUT,
            head_within: crate::http_front::HEAD_WITHIN,
        }
    }
}

/// Binds `config.listen` and starts the "http" role thread. On TCP the port
/// is held by the front door (`http_front`) and tiny_http listens on
/// `<private_dir>/http.sock`; `private_dir` is made, and kept, 0700.
pub fn spawn(
    config: &Config,
    private_dir: &Path,
    shared: Shared,
    control: Sender<ControlRequest>,
    beat: Beat,
) -> Result<HttpHandle, HttpError> {
    spawn_with(config, private_dir, shared, control, beat, Limits::default())
}

/// [`spawn`] with other time limits.
pub fn spawn_with(
    config: &Config,
    private_dir: &Path,
    shared: Shared,
    control: Sender<ControlRequest>,
    beat: Beat,
    limits: Limits,
) -> Result<HttpHandle, HttpError> {
    let full = config;
    let config = &full.http;
    let listen = Listen::parse(&config.listen).map_err(|_| HttpError::BadListen(config.listen.clone()))?;
    // tiny_http's socket, and on TCP the door in front of it.
    let (socket, door) = match &listen {
        Listen::Tcp(addr) => {
            let tcp = bind_tcp_at_start(addr, &config.listen)?;
            let inner = private_socket(private_dir)?;
            (inner.clone(), Some((tcp, inner)))
        }
        Listen::Unix(path) => (path.clone(), None),
    };
    // tiny_http first, so the door never opens onto nothing.
    let server = bind(&socket)?;
    let front = match door {
        Some((tcp, inner)) => {
            let max_body = largest_body(full);
            Some(crate::http_front::Front::start(tcp, inner, max_body, limits.head_within).map_err(HttpError::Spawn)?)
        }
        None => None,
    };
    log::info!("control plane listening on {}", config.listen);
    // The MCP token counts only beside an operator token: without one every
    // request is let in anyway, and a tier would mean nothing.
    let mcp = match (&config.token, &full.mcp.token) {
        (Some(_), Some(token)) => Some((token.clone(), full.mcp.allowed())),
        _ => None,
    };
    let live = Live(Arc::new(parking_lot::RwLock::new(Arc::new(full.clone()))));
    let hosts = Hosts::new(&listen, &config.allowed_hosts);
    let ctx = Arc::new(Ctx { shared, control, token: config.token.clone(), mcp, live: live.clone(), limits, hosts });
    let stop = Arc::new(AtomicBool::new(false));
    let thread_stop = stop.clone();
    let listening = Listening::default();
    let asked = listening.clone();
    beat.woken_by(move || asked.wake());
    let thread_listening = listening.clone();
    let thread = std::thread::Builder::new()
        .name("http".into())
        .spawn(move || run(server, socket, ctx, beat, thread_stop, thread_listening))
        .map_err(HttpError::Spawn)?;
    Ok(HttpHandle { stop, live, listening, thread: Some(thread), front })
}

/// The configuration the task and screen routes read, replaced on reload.
#[derive(Clone)]
struct Live(Arc<parking_lot::RwLock<Arc<Config>>>);

impl Live {
    fn get(&self) -> Arc<Config> {
        Arc::clone(&self.0.read())
    }
}

/// The largest body any route takes: the enqueue route's is `max_task_bytes`.
fn largest_body(config: &Config) -> usize {
    MAX_BODY.max(task_cap(config))
}

fn task_cap(config: &Config) -> usize {
    usize::try_from(config.dispatch.max_task_bytes).unwrap_or(usize::MAX).min(ABSURD_BODY)
}

/// tiny_http's listener: always a Unix socket (behind the front door on TCP).
fn bind(socket: &Path) -> Result<Server, HttpError> {
    server_from(bind_unix(socket)?, &unix_text(socket))
}

fn unix_text(path: &Path) -> String {
    format!("unix:{}", path.display())
}

/// `<private_dir>/http.sock`, its folder made 0700 (and made so again when
/// it exists): only the daemon's user may reach tiny_http past the front door.
fn private_socket(private_dir: &Path) -> Result<PathBuf, HttpError> {
    use std::os::unix::fs::DirBuilderExt;
    let fail = |why: String| HttpError::Socket { path: private_dir.to_path_buf(), why };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(private_dir)
        .map_err(|e| fail(format!("cannot create the folder: {e}")))?;
    std::fs::set_permissions(private_dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| fail(format!("cannot set mode 700: {e}")))?;
    let socket = private_dir.join("http.sock");
    // sockaddr_un holds 108 bytes with the final NUL.
    let len = socket.as_os_str().len();
    if len > 107 {
        return Err(fail(format!(
            "{} is {len} bytes, over the 107 a Unix socket path may have: use a shorter state_dir",
            socket.display()
        )));
    }
    Ok(socket)
}

/// Binds the TCP port, retried while it is in use, for [`BIND_RETRY_FOR`].
fn bind_tcp_at_start(addr: &SocketAddr, text: &str) -> Result<TcpListener, HttpError> {
    let bind = |addr: &SocketAddr, text: &str| {
        TcpListener::bind(addr).map_err(|source| HttpError::Bind { listen: text.to_string(), source })
    };
    let first = Instant::now();
    loop {
        match bind(addr, text) {
            Err(HttpError::Bind { source, .. })
                if source.kind() == std::io::ErrorKind::AddrInUse && first.elapsed() < BIND_RETRY_FOR =>
            {
                if first.elapsed() < BIND_RETRY_EVERY {
                    log::warn!("http.listen {text:?} is in use; trying again for {} s", BIND_RETRY_FOR.as_secs());
                }
                std::thread::sleep(BIND_RETRY_EVERY);
            }
            Ok(bound) => {
                if first.elapsed() >= BIND_RETRY_EVERY {
                    log::info!("http.listen {text:?} free after {} ms", first.elapsed().as_millis());
                }
                return Ok(bound);
            }
            Err(e) => return Err(e),
        }
    }
}

fn server_from<L: Into<tiny_http::Listener>>(listener: L, listen: &str) -> Result<Server, HttpError> {
    Server::from_listener(listener, None)
        .map_err(|e| HttpError::Bind { listen: listen.to_string(), source: std::io::Error::other(e.to_string()) })
}

/// Creates the socket's folder, removes a stale socket left by a dead daemon
/// (never a live one, never a file that is not a socket), binds, and narrows
/// the mode.
fn bind_unix(path: &Path) -> Result<UnixListener, HttpError> {
    let fail = |why: String| HttpError::Socket { path: path.to_path_buf(), why };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| fail(format!("cannot create {}: {e}", parent.display())))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if UnixStream::connect(path).is_ok() {
                return Err(fail("another process is answering on it".into()));
            }
            std::fs::remove_file(path).map_err(|e| fail(format!("cannot remove the stale socket: {e}")))?;
            log::info!("removed stale control socket {}", path.display());
        }
        Ok(_) => return Err(fail("exists and is not a socket; not removing it".into())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(fail(e.to_string())),
    }
    let listener = UnixListener::bind(path).map_err(|e| fail(format!("cannot bind: {e}")))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE))
        .map_err(|e| fail(format!("cannot set mode {SOCKET_MODE:o}: {e}")))?;
    Ok(listener)
}

struct Ctx {
    shared: Shared,
    control: Sender<ControlRequest>,
    token: Option<Secret>,
    /// The MCP server's token and its tiers (`mcp.allow`).
    mcp: Option<(Secret, Vec<Tier>)>,
    live: Live,
    limits: Limits,
    /// Which `Host` headers are answered (docs/http.md#browsers).
    hosts: Hosts,
}

impl Ctx {
    /// The body cap of the route at `url`.
    fn body_cap(&self, url: &str) -> usize {
        match Route::parse(path_only(url)) {
            Ok(Some(Route::Enqueue(_))) => task_cap(&self.live.get()),
            _ => MAX_BODY,
        }
    }
}

fn run(server: Server, socket: PathBuf, ctx: Arc<Ctx>, beat: Beat, stop: Arc<AtomicBool>, listening: Listening) {
    let mut server = Some(Arc::new(server));
    listening.set(server.clone());
    while !stop.load(Ordering::Relaxed) {
        beat.beat();
        let Some(current) = &server else {
            // Listening again after tiny_http's accept thread died.
            std::thread::sleep(REBIND_PAUSE);
            match bind(&socket) {
                Ok(fresh) => {
                    log::info!("control plane listening again");
                    server = Some(Arc::new(fresh));
                    listening.set(server.clone());
                }
                Err(e) => log::error!("{e}"),
            }
            continue;
        };
        match current.recv_timeout(IDLE_WAIT) {
            Ok(Some(request)) => serve(request, &ctx, &beat),
            Ok(None) => {}
            Err(e) => {
                // tiny_http's accept thread gives up on the first accept error
                // (e.g. out of file descriptors) and closes the listener.
                log::error!("control plane stopped accepting connections: {e}; listening again shortly");
                server = None;
                listening.set(None);
            }
        }
    }
    listening.set(None);
    // Dropping the server unblocks tiny_http's accept thread and removes a
    // unix socket file.
    drop(server);
    log::debug!("control plane stopped");
}

/// How much of the body is still on the wire.
enum Body {
    /// Nothing to read, or tiny_http already read it: safe on the role thread.
    InHand,
    /// Must be read from the socket (1 KiB up to the cap, or chunked).
    OnWire,
    /// Declared over the cap, but small enough for tiny_http to drain on drop.
    TooLarge,
    /// Declared so large that dropping the request would abort the process.
    Absurd,
}

fn body_of(request: &Request, cap: usize) -> Body {
    let chunked = request.headers().iter().any(|h| h.field.equiv("Transfer-Encoding"));
    // With `Expect: 100-continue` tiny_http reads nothing ahead, however small.
    let expects = request.headers().iter().any(|h| h.field.equiv("Expect"));
    match request.body_length() {
        _ if chunked => Body::OnWire,
        Some(n) if expects && n > 0 && n <= cap => Body::OnWire,
        None => Body::InHand,
        Some(n) if n > ABSURD_BODY => Body::Absurd,
        Some(n) if n > cap => Body::TooLarge,
        Some(n) if n > PREBUFFERED => Body::OnWire,
        Some(_) => Body::InHand,
    }
}

fn serve(request: Request, ctx: &Arc<Ctx>, beat: &Beat) {
    match body_of(&request, ctx.body_cap(request.url())) {
        Body::InHand => respond(request, ctx, Some(beat)),
        Body::Absurd => {
            log::warn!(
                "{} {}: declared body of {} bytes; dropping the connection unanswered",
                request.method(),
                path_only(request.url()),
                request.body_length().unwrap_or(0)
            );
            std::mem::forget(request);
        }
        Body::OnWire | Body::TooLarge => {
            let ctx = ctx.clone();
            let spawned =
                std::thread::Builder::new().name("http-body".into()).spawn(move || respond(request, &ctx, None));
            if let Err(e) = spawned {
                // The request went down with the closure; its drop may block
                // this thread on a slow client, which is the lesser evil.
                log::error!("cannot start a thread for a request body: {e}");
            }
        }
    }
}

/// An answer: status, body, content type, extra headers.
struct Answer {
    status: u16,
    body: String,
    content_type: &'static str,
    allow: Option<&'static str>,
    /// Headers of the dashboard's files (its content security policy).
    extra: &'static [(&'static str, &'static str)],
}

impl Answer {
    fn json(status: u16, value: serde_json::Value) -> Answer {
        Answer { status, body: value.to_string(), content_type: "application/json", allow: None, extra: &[] }
    }

    fn error(status: u16, message: impl fmt::Display) -> Answer {
        Answer::json(status, json!({ "error": message.to_string() }))
    }

    fn text(status: u16, body: String, content_type: &'static str) -> Answer {
        Answer { status, body, content_type, allow: None, extra: &[] }
    }
}

/// `beat` is the role's heartbeat when on the role thread; helper threads
/// never beat for the role, or they could hide a hung role.
fn respond(mut request: Request, ctx: &Ctx, beat: Option<&Beat>) {
    let on_role_thread = beat.is_some();
    let method = request.method().clone();
    let url = request.url().to_string();
    let answer = answer(&mut request, ctx, beat);
    log::debug!("{method} {} -> {}", path_only(&url), answer.status);
    let len = answer.body.len();
    let mut response = Response::from_string(answer.body)
        .with_status_code(StatusCode(answer.status))
        // Always a Content-Length: clients then need no chunked decoding.
        .with_chunked_threshold(usize::MAX)
        .with_header(header("Content-Type", answer.content_type))
        .with_header(header("X-Content-Type-Options", "nosniff"))
        .with_header(header("Cache-Control", "no-store"));
    if let Some(allow) = answer.allow {
        response.add_header(header("Allow", allow));
    }
    for (name, value) in answer.extra {
        response.add_header(header(name, value));
    }
    let send = move || {
        if let Err(e) = request.respond(response) {
            log::debug!("{method} {}: could not send the answer: {e}", path_only(&url));
        }
    };
    // A large answer (the event ring, metrics) can outgrow the socket buffer;
    // a client that does not read it then blocks the writer, so that writer
    // is not the role thread. Small answers always fit the buffer.
    if on_role_thread && len > LARGE_ANSWER {
        if let Err(e) = std::thread::Builder::new().name("http-write".into()).spawn(send) {
            log::error!("cannot start a thread for a large answer: {e}");
        }
    } else {
        send();
    }
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("static header is valid")
}

fn path_only(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

/// The routes of docs/http.md, and which methods each takes.
#[derive(Debug, PartialEq)]
enum Route {
    /// The dashboard's page, script and style sheet: served without a token.
    Page(&'static crate::dashboard::File),
    Healthz,
    /// `GET /history`.
    History,
    /// `GET /projects/{project}/failed`.
    Failed(String),
    Status,
    Metrics,
    Events,
    Failover,
    Pause,
    Resume,
    Restart(String),
    /// `POST /projects/{project}/tasks`.
    Enqueue(String),
    /// `GET /projects/{project}/tasks/{name}`.
    Task(String, String),
    /// `GET /sessions/{name}/output`.
    Output(String),
}

impl Route {
    fn parse(path: &str) -> Result<Option<Route>, String> {
        if let Some(file) = crate::dashboard::file(path) {
            return Ok(Some(Route::Page(file)));
        }
        Ok(Some(match path {
            "/healthz" => Route::Healthz,
            "/history" => Route::History,
            "/status" => Route::Status,
            "/metrics" => Route::Metrics,
            "/events" => Route::Events,
            "/failover" => Route::Failover,
            "/dispatch/pause" => Route::Pause,
            "/dispatch/resume" => Route::Resume,
            _ => {
                let parts: Vec<&str> = path.strip_prefix('/').unwrap_or("").split('/').collect();
                if parts.iter().any(|p| p.is_empty()) {
                    return Ok(None);
                }
                match parts[..] {
                    ["sessions", name, "restart"] => Route::Restart(percent_decode(name)?),
                    ["sessions", name, "output"] => Route::Output(percent_decode(name)?),
                    ["projects", project, "tasks"] => Route::Enqueue(percent_decode(project)?),
                    ["projects", project, "failed"] => Route::Failed(percent_decode(project)?),
                    ["projects", project, "tasks", name] => {
                        Route::Task(percent_decode(project)?, percent_decode(name)?)
                    }
                    _ => return Ok(None),
                }
            }
        }))
    }

    fn method(&self) -> (Method, &'static str) {
        match self {
            Route::Page(_)
            | Route::Healthz
            | Route::History
            | Route::Failed(_)
            | Route::Status
            | Route::Metrics
            | Route::Events
            | Route::Task(..)
            | Route::Output(_) => (Method::Get, "GET"),
            _ => (Method::Post, "POST"),
        }
    }

    /// The tier a token needs for this route (docs/mcp.md#tiers).
    fn tier(&self) -> Tier {
        match self {
            Route::Enqueue(_) => Tier::Queue,
            Route::Failover | Route::Pause | Route::Resume | Route::Restart(_) => Tier::Control,
            _ => Tier::Read,
        }
    }
}

/// Who sent a request, by its token.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Caller {
    /// The `http.token_file` token, or anyone when there is none: every tier.
    Operator,
    /// The `mcp.token_file` token: the tiers of `mcp.allow`.
    Mcp,
}

fn answer(request: &mut Request, ctx: &Ctx, beat: Option<&Beat>) -> Answer {
    let url = request.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    if let Err(refused) = guard(request, ctx) {
        return refused;
    }
    let route = Route::parse(path);
    let open = matches!(route, Ok(Some(Route::Healthz | Route::Page(_)))) && *request.method() == Method::Get;
    let caller = match caller(request, ctx) {
        Some(caller) => caller,
        None if open => Caller::Operator,
        None => return Answer::error(401, "missing or wrong bearer token"),
    };
    let route = match route {
        Ok(Some(route)) => route,
        Ok(None) => return Answer::error(404, format!("no such endpoint: {path}")),
        Err(why) => return Answer::error(400, why),
    };
    let (method, allow) = route.method();
    if *request.method() != method {
        let mut answer = Answer::error(405, format!("{path} takes {allow}, not {}", request.method()));
        answer.allow = Some(allow);
        return answer;
    }
    let tier = route.tier();
    if let (Caller::Mcp, Some((_, tiers))) = (caller, &ctx.mcp) {
        if !tiers.contains(&tier) {
            let has: Vec<&str> = tiers.iter().map(|t| t.as_str()).collect();
            let answer = Answer::error(
                403,
                format!(
                    "the MCP token may not {allow} {path}: that needs the \"{tier}\" tier and mcp.allow gives \
                     [{}]; an operator can add \"{tier}\" to [mcp] allow and restart the daemon",
                    has.join(", ")
                ),
            );
            if tier != Tier::Read {
                audit(request, ctx, &route, &answer);
            }
            return answer;
        }
    }
    if method == Method::Post {
        let cap = ctx.body_cap(&url);
        let answer = match (read_body(request, cap), &route) {
            (Err(refused), _) => refused,
            (Ok(body), Route::Enqueue(project)) => enqueue(project, query, &body, ctx),
            (Ok(body), _) => post(&route, &body, ctx, beat),
        };
        if caller == Caller::Mcp {
            audit(request, ctx, &route, &answer);
        }
        return answer;
    }
    get(route, query, ctx)
}

/// The `mcp_call` event of a write made with the MCP token
/// (docs/events.md#mcp_call). Headers the MCP server sets name the tool,
/// the client and the session; a raw HTTP client leaves them out.
fn audit(request: &Request, ctx: &Ctx, route: &Route, answer: &Answer) {
    let header = |name: &'static str| {
        request.headers().iter().find(|h| h.field.equiv(name)).map(|h| printable(h.value.as_str(), 120))
    };
    let tool = header("X-Claude-Failover-Tool").unwrap_or_else(|| "(raw HTTP)".into());
    let client = header("X-Claude-Failover-Client");
    let session = header("X-Claude-Failover-Session");
    let ok = (200..300).contains(&answer.status);
    let outcome = if ok {
        "ok".to_string()
    } else {
        serde_json::from_str::<serde_json::Value>(&answer.body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or_default()
    };
    let what = format!("{} {}", request.method(), path_only(request.url()));
    let by = client.clone().unwrap_or_else(|| "an MCP client".into());
    let at = session.as_deref().map(|s| format!(" in session {s}")).unwrap_or_default();
    let message = if ok {
        format!("{by}{at} called {tool} ({what}): done")
    } else {
        format!("{by}{at} called {tool} ({what}): refused ({}): {outcome}", answer.status)
    };
    let subject = session.clone().unwrap_or_else(|| tool.clone());
    ctx.shared.events.emit(
        crate::events::Kind::McpCall,
        &subject,
        message,
        json!({"tool": tool, "client": client, "session": session, "route": what,
               "tier": route.tier().as_str(), "status": answer.status, "ok": ok, "outcome": outcome}),
    );
}

/// At most `max` characters of a header value, control characters replaced.
fn printable(value: &str, max: usize) -> String {
    value.chars().take(max).map(|c| if c.is_control() { '?' } else { c }).collect()
}

fn get(route: Route, query: &str, ctx: &Ctx) -> Answer {
    match route {
        Route::Page(file) => Answer {
            status: 200,
            body: file.body.to_string(),
            content_type: file.content_type,
            allow: None,
            extra: crate::dashboard::HEADERS,
        },
        Route::History => history(query, ctx),
        Route::Failed(project) => failed(&project, ctx),
        Route::Healthz => {
            let stale = ctx.shared.heartbeats.stale(Instant::now(), ctx.limits.stale_after);
            if stale.is_empty() {
                Answer::text(200, "ok".into(), "text/plain; charset=utf-8")
            } else {
                Answer::text(503, format!("stale roles: {}", stale.join(", ")), "text/plain; charset=utf-8")
            }
        }
        Route::Status => {
            let status = ctx.shared.status.read();
            match serde_json::to_value(&*status) {
                Ok(v) => Answer::json(200, v),
                Err(e) => Answer::error(500, format!("cannot serialise the status: {e}")),
            }
        }
        Route::Metrics => {
            let status = ctx.shared.status.read().clone();
            Answer::text(200, ctx.shared.metrics.render(&status), "text/plain; version=0.0.4")
        }
        Route::Events => match since(query) {
            Ok(n) => Answer::json(200, json!({ "events": ctx.shared.events.since(n) })),
            Err(why) => Answer::error(400, why),
        },
        Route::Task(project, name) => task(&project, &name, ctx),
        Route::Output(session) => output(&session, query, ctx),
        _ => Answer::error(405, "not a GET endpoint"),
    }
}

/// `GET /history?since=UNIX`: the usage readings per account.
fn history(query: &str, ctx: &Ctx) -> Answer {
    let since = match query_param(query, "since") {
        Ok(None) => i64::MIN,
        Ok(Some(v)) => match v.parse::<i64>() {
            Ok(n) => n,
            Err(_) => return Answer::error(400, format!("since={v:?}: expected a time in Unix seconds")),
        },
        Err(why) => return Answer::error(400, why),
    };
    let config = ctx.live.get();
    let accounts: serde_json::Map<String, serde_json::Value> = {
        let rings = ctx.shared.history.read();
        rings.since(since).into_iter().map(|(name, readings)| (name.to_string(), json!(readings))).collect()
    };
    Answer::json(
        200,
        json!({
            "poll_interval_secs": config.quota.poll_interval_secs,
            "thresholds": {"five_hour": config.quota.five_hour_threshold, "seven_day": config.quota.weekly_threshold},
            "accounts": accounts,
        }),
    )
}

/// The most failed tasks `GET /projects/{project}/failed` lists.
pub const MAX_FAILED_LISTED: usize = 50;

/// `GET /projects/{project}/failed`: the failed tasks and why, newest first.
fn failed(project: &str, ctx: &Ctx) -> Answer {
    let config = ctx.live.get();
    let queue = match open_queue(&config, project) {
        Ok(q) => q,
        Err(answer) => return answer,
    };
    match queue.failed_tasks(MAX_FAILED_LISTED) {
        Ok(tasks) => Answer::json(200, json!({"project": project, "tasks": tasks})),
        Err(e) => Answer::error(503, e.to_string()),
    }
}

/// The most lines `GET /sessions/{name}/output` returns.
pub const MAX_OUTPUT_LINES: usize = 200;
/// Lines returned when the query names no number.
const DEFAULT_OUTPUT_LINES: usize = 50;
/// tmux gets this long to capture a screen (the role thread waits for it).
const CAPTURE_WITHIN: Duration = Duration::from_secs(2);

fn output(session: &str, query: &str, ctx: &Ctx) -> Answer {
    let lines = match query_param(query, "lines") {
        Ok(None) => DEFAULT_OUTPUT_LINES,
        Ok(Some(v)) => match v.parse::<usize>() {
            Ok(n) if (1..=MAX_OUTPUT_LINES).contains(&n) => n,
            _ => {
                return Answer::error(400, format!("lines={v:?}: expected a whole number from 1 to {MAX_OUTPUT_LINES}"))
            }
        },
        Err(why) => return Answer::error(400, why),
    };
    let config = ctx.live.get();
    if config.session(session).is_none() {
        return Answer::error(404, no_such_session(&config, session));
    }
    let tmux = crate::tmux::Tmux::new(&config.tmux.socket_name).with_timeout(CAPTURE_WITHIN);
    match tmux.capture_pane_tail(session, lines) {
        Ok(text) => Answer::json(200, json!({"session": session, "lines": text})),
        Err(e) if e.is_missing() => {
            Answer::error(409, format!("session {session} has no screen now: its tmux session is not running"))
        }
        Err(e) => Answer::error(503, format!("cannot read the screen of session {session}: {e}")),
    }
}

fn no_such_session(config: &Config, session: &str) -> String {
    let known: Vec<&str> = config.sessions.iter().map(|s| s.name.as_str()).collect();
    format!("no session named {session:?} ({})", listed("sessions", &known))
}

fn no_such_project(config: &Config, project: &str) -> String {
    let known: Vec<&str> = config.projects.iter().map(|p| p.name.as_str()).collect();
    format!("no project named {project:?} ({})", listed("projects", &known))
}

fn listed(what: &str, names: &[&str]) -> String {
    if names.is_empty() {
        format!("no {what} are configured")
    } else {
        format!("{what}: {}", names.join(", "))
    }
}

fn open_queue(config: &Config, project: &str) -> Result<crate::queue::Queue, Answer> {
    let p = config.project(project).ok_or_else(|| Answer::error(404, no_such_project(config, project)))?;
    crate::queue::Queue::open(project, p.queue_root())
        .map_err(|e| Answer::error(503, format!("cannot open the queue of project {project}: {e}")))
}

fn task(project: &str, name: &str, ctx: &Ctx) -> Answer {
    let config = ctx.live.get();
    let queue = match open_queue(&config, project) {
        Ok(q) => q,
        Err(answer) => return answer,
    };
    match queue.find(name) {
        Ok(Some(found)) => match serde_json::to_value(found) {
            Ok(v) => Answer::json(200, v),
            Err(e) => Answer::error(500, format!("cannot serialise the task: {e}")),
        },
        Ok(None) => Answer::error(
            404,
            format!("no task named {name:?} in project {project} (inbox, active, done, failed or the archive)"),
        ),
        Err(e) => Answer::error(503, e.to_string()),
    }
}

/// `POST /projects/{project}/tasks`: the body is the task file; `priority`
/// and `session` in the query become its front matter.
fn enqueue(project: &str, query: &str, body: &str, ctx: &Ctx) -> Answer {
    let config = ctx.live.get();
    let queue = match open_queue(&config, project) {
        Ok(q) => q,
        Err(answer) => return answer,
    };
    let param = |key: &str| query_param(query, key);
    let (name, priority, session) = match (param("name"), param("priority"), param("session")) {
        (Ok(n), Ok(p), Ok(s)) => (n, p, s),
        (Err(why), _, _) | (_, Err(why), _) | (_, _, Err(why)) => return Answer::error(400, why),
    };
    let priority = match priority.map(|p| p.parse::<i64>().map_err(|_| p)) {
        None => None,
        Some(Ok(p)) => Some(p),
        Some(Err(p)) => return Answer::error(400, format!("priority={p:?}: expected a whole number")),
    };
    let text = match front_matter(priority, session.as_deref(), body) {
        Ok(text) => text,
        Err(why) => return Answer::error(400, why),
    };
    let known = |pin: &str| config.sessions.iter().any(|s| s.name == pin && s.project == project);
    let submitted =
        queue.submit(name.as_deref(), &text, config.dispatch.max_task_bytes, std::time::SystemTime::now(), known);
    match submitted {
        Ok(name) => Answer::json(201, json!({"project": project, "task": name, "folder": "inbox"})),
        Err(e @ crate::queue::SubmitError::Exists { .. }) => Answer::error(409, e),
        Err(crate::queue::SubmitError::Rejected(r)) => {
            Answer::json(400, json!({"error": format!("task rejected: {r}"), "reason": r.to_string()}))
        }
        Err(e @ crate::queue::SubmitError::BadName(_)) => Answer::error(400, e),
        Err(e @ crate::queue::SubmitError::Io(_)) => Answer::error(503, e),
    }
}

/// `body` with front matter for `priority` and `session` put in front, when
/// either is given (a body with front matter of its own then is refused).
fn front_matter(priority: Option<i64>, session: Option<&str>, body: &str) -> Result<String, String> {
    if priority.is_none() && session.is_none() {
        return Ok(body.to_string());
    }
    if body.starts_with("+++\n") || body.starts_with("+++\r\n") {
        return Err("the text has front matter of its own: give priority and session there or as parameters, \
                    not both"
            .into());
    }
    let mut text = String::from("+++\n");
    if let Some(p) = priority {
        text.push_str(&format!("priority = {p}\n"));
    }
    if let Some(s) = session {
        text.push_str(&format!("session = {}\n", toml::Value::String(s.to_string())));
    }
    text.push_str("+++\n");
    text.push_str(body);
    Ok(text)
}

fn since(query: &str) -> Result<u64, String> {
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key == "since" {
            return value.parse().map_err(|_| format!("since={value:?}: expected a non-negative integer"));
        }
    }
    Ok(0)
}

/// One parameter of a query string, percent-decoded.
fn query_param(query: &str, key: &str) -> Result<Option<String>, String> {
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == key {
            return percent_decode(v).map(Some);
        }
    }
    Ok(None)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FailoverBody {
    #[serde(default)]
    to: Option<String>,
}

fn post(route: &Route, body: &str, ctx: &Ctx, beat: Option<&Beat>) -> Answer {
    if *route != Route::Failover && !body.trim().is_empty() {
        if let Err(why) = parse_object::<NoArguments>(body) {
            return Answer::error(400, format!("bad request body: {why}"));
        }
    }
    let (control, status, default) = match route {
        Route::Failover => {
            let parsed: FailoverBody = if body.trim().is_empty() {
                FailoverBody { to: None }
            } else {
                match parse_object(body) {
                    Ok(b) => b,
                    Err(why) => return Answer::error(400, format!("bad failover request: {why}")),
                }
            };
            (Control::Failover { to: parsed.to }, 202, json!({"accepted": true}))
        }
        Route::Pause => (Control::PauseDispatch, 200, json!({"paused": true})),
        Route::Resume => (Control::ResumeDispatch, 200, json!({"paused": false})),
        Route::Restart(name) => (Control::RestartSession(name.clone()), 202, json!({"accepted": true})),
        _ => return Answer::error(405, "not a POST endpoint"),
    };
    match ask(ctx, control, beat) {
        // The coordinator may say more (e.g. the target account); an empty
        // answer gets the documented body.
        Ok(serde_json::Value::Object(map)) if !map.is_empty() => Answer::json(status, serde_json::Value::Object(map)),
        Ok(_) => Answer::json(status, default),
        Err(Refusal::Control(ControlError::BadRequest(m))) => Answer::error(400, m),
        Err(Refusal::Control(ControlError::NotFound(m))) => Answer::error(404, m),
        Err(Refusal::Control(ControlError::Conflict(m))) => Answer::error(409, m),
        Err(Refusal::Unavailable(m)) => Answer::error(503, m),
    }
}

/// The body of a write that takes no arguments: `{}` or nothing. A field is
/// refused rather than ignored, so a typo'd or misrouted request is not
/// silently taken for another.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoArguments {}

/// A JSON object into `T` (serde would also take an array for a struct).
fn parse_object<T: serde::de::DeserializeOwned>(body: &str) -> Result<T, String> {
    match serde_json::from_str(body).map_err(|e| e.to_string())? {
        v @ serde_json::Value::Object(_) => serde_json::from_value(v).map_err(|e| e.to_string()),
        _ => Err("expected a JSON object such as {} or {\"to\": \"beta\"}".into()),
    }
}

enum Refusal {
    Control(ControlError),
    Unavailable(&'static str),
}

fn ask(ctx: &Ctx, what: Control, beat: Option<&Beat>) -> Result<serde_json::Value, Refusal> {
    let (reply, answer) = crossbeam_channel::bounded::<Reply>(1);
    if ctx.control.send(ControlRequest { control: what, reply }).is_err() {
        return Err(Refusal::Unavailable("the coordinator is not running"));
    }
    let result = match answer.recv_timeout(ctx.limits.reply_timeout) {
        Ok(reply) => reply.map_err(Refusal::Control),
        Err(RecvTimeoutError::Timeout) => {
            Err(Refusal::Unavailable("the coordinator did not answer in time; try again"))
        }
        Err(RecvTimeoutError::Disconnected) => Err(Refusal::Unavailable("the coordinator dropped the request")),
    };
    if let Some(beat) = beat {
        beat.beat();
    }
    result
}

/// Reads at most `cap` bytes of body; 413 past that, 400 when it is not
/// UTF-8 or the connection breaks.
fn read_body(request: &mut Request, cap: usize) -> Result<String, Answer> {
    if request.body_length().is_some_and(|n| n > cap) {
        return Err(too_large(cap));
    }
    let mut body = Vec::new();
    let read = request.as_reader().take(cap as u64 + 1).read_to_end(&mut body);
    if let Err(e) = read {
        return Err(Answer::error(400, format!("cannot read the body: {e}")));
    }
    if body.len() > cap {
        return Err(too_large(cap));
    }
    String::from_utf8(body).map_err(|_| Answer::error(400, "the body is not UTF-8"))
}

fn too_large(cap: usize) -> Answer {
    Answer::error(413, format!("body over {cap} bytes"))
}

/// The checks that keep browsers' pages off the control plane
/// (docs/http.md#browsers), made before the token is looked at: a `Host`
/// that is neither loopback nor allowed (DNS rebinding), an `Origin` other
/// than the daemon's own (a cross-site request), a POST whose type a plain
/// cross-site form could send.
fn guard(request: &Request, ctx: &Ctx) -> Result<(), Answer> {
    let header = |name: &'static str| request.headers().iter().find(|h| h.field.equiv(name)).map(|h| h.value.as_str());
    // A request without a Host is no browser's (browsers always send one),
    // so no rebinding page's: it is not refused for that.
    let host = header("Host").map(str::trim);
    if host.is_some_and(|host| !ctx.hosts.allows(host)) {
        let host = host.unwrap_or_default();
        let shown = printable(host, 100);
        return Err(Answer::error(
            403,
            format!(
                "Host {shown:?} is not a loopback name or address nor in http.allowed_hosts: requests reaching \
                 the daemon under another name are refused (DNS rebinding); add the name to [http] allowed_hosts"
            ),
        ));
    }
    if let Some(origin) = header("Origin") {
        if !same_origin(origin.trim(), host.unwrap_or_default()) {
            let shown = printable(origin, 100);
            return Err(Answer::error(
                403,
                format!("Origin {shown:?} is not this daemon's own: cross-site requests are refused"),
            ));
        }
    }
    if *request.method() == Method::Post {
        let path = path_only(request.url());
        let wanted = match Route::parse(path) {
            Ok(Some(Route::Enqueue(_))) => TASK_TYPE,
            _ => "application/json",
        };
        let given = header("Content-Type").unwrap_or("");
        let media = given.split(';').next().unwrap_or("").trim();
        if !media.eq_ignore_ascii_case(wanted) {
            let shown = if given.is_empty() { "none".to_string() } else { format!("{:?}", printable(given, 100)) };
            return Err(Answer::error(415, format!("POST {path} takes Content-Type: {wanted} (given: {shown})")));
        }
    }
    Ok(())
}

/// The media type of a task file (`POST /projects/{project}/tasks`): like
/// `application/json`, one no cross-site form can send without the
/// browser asking first.
pub const TASK_TYPE: &str = "text/markdown";

/// Whether `origin` (`scheme://host[:port]`) names the site the request came
/// to: `http` or `https` (a proxy in front may add TLS) and exactly `host`.
fn same_origin(origin: &str, host: &str) -> bool {
    let rest = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://"));
    rest.is_some_and(|rest| !host.is_empty() && rest.eq_ignore_ascii_case(host))
}

/// The `Host` names the daemon answers to: loopback names and addresses
/// (with any port, as an SSH forward changes it), the address it listens on,
/// and `http.allowed_hosts`.
#[derive(Debug, Clone)]
struct Hosts {
    listen: Option<std::net::IpAddr>,
    allowed: Vec<String>,
}

impl Hosts {
    fn new(listen: &Listen, allowed: &[String]) -> Hosts {
        let listen = match listen {
            Listen::Tcp(addr) if !addr.ip().is_unspecified() => Some(addr.ip()),
            _ => None,
        };
        Hosts { listen, allowed: allowed.iter().map(|h| h.trim_end_matches('.').to_ascii_lowercase()).collect() }
    }

    fn allows(&self, host: &str) -> bool {
        let name = host_name(host).trim_end_matches('.').to_ascii_lowercase();
        if name.is_empty() {
            return false;
        }
        let ip = name.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>().ok();
        name == "localhost"
            || ip.is_some_and(|ip| ip.is_loopback() || Some(ip) == self.listen)
            || self.allowed.contains(&name)
    }
}

/// The host of a `Host` header without its port: `[::1]:8787` → `[::1]`.
fn host_name(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// Who the bearer token says sent the request, compared in constant time
/// (for a given token length); `None` when it is missing or wrong.
fn caller(request: &Request, ctx: &Ctx) -> Option<Caller> {
    let Some(token) = &ctx.token else {
        return Some(Caller::Operator);
    };
    let given = request.headers().iter().find(|h| h.field.equiv("Authorization")).map(|h| h.value.as_str())?;
    let (scheme, value) = given.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let value = value.trim().as_bytes();
    // Both comparisons always run, so timing tells nothing about which matched.
    let operator = constant_time_eq(value, token.expose().as_bytes());
    let mcp = ctx.mcp.as_ref().is_some_and(|(t, _)| constant_time_eq(value, t.expose().as_bytes()));
    if operator {
        Some(Caller::Operator)
    } else if mcp {
        Some(Caller::Mcp)
    } else {
        None
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for (i, byte) in b.iter().enumerate() {
        diff |= a.get(i).copied().unwrap_or(0) ^ byte;
    }
    std::hint::black_box(diff) == 0
}

fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent-escape in {s:?}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{s:?} is not UTF-8 once decoded"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_parse_and_unknown_paths_do_not() {
        assert_eq!(Route::parse("/status"), Ok(Some(Route::Status)));
        assert_eq!(Route::parse("/sessions/ccl%2Dauto-11/restart"), Ok(Some(Route::Restart("ccl-auto-11".into()))));
        assert_eq!(Route::parse("/sessions//restart"), Ok(None));
        assert_eq!(Route::parse("/sessions/a/b/restart"), Ok(None));
        assert_eq!(Route::parse("/sessions/s1/output"), Ok(Some(Route::Output("s1".into()))));
        assert_eq!(Route::parse("/projects/p/tasks"), Ok(Some(Route::Enqueue("p".into()))));
        assert_eq!(Route::parse("/projects/p/tasks/a%20b.md"), Ok(Some(Route::Task("p".into(), "a b.md".into()))));
        assert_eq!(Route::parse("/projects/p/tasks/"), Ok(None));
        assert_eq!(Route::parse("/projects//tasks"), Ok(None));
        assert_eq!(Route::parse("/nope"), Ok(None));
        assert!(Route::parse("/sessions/%zz/restart").is_err());
    }

    #[test]
    fn since_takes_a_number_or_defaults_to_zero() {
        assert_eq!(since(""), Ok(0));
        assert_eq!(since("since=12&x=1"), Ok(12));
        assert!(since("since=-1").is_err());
        assert!(since("since=").is_err());
    }

    #[test]
    fn parameters_become_front_matter() {
        assert_eq!(front_matter(None, None, "+++\nx\n+++\ny").unwrap(), "+++\nx\n+++\ny");
        assert_eq!(
            front_matter(Some(-2), Some("s\"1"), "do").unwrap(),
            "+++\npriority = -2\nsession = 's\"1'\n+++\ndo"
        );
        assert!(front_matter(Some(1), None, "+++\n+++\nx").is_err());
        assert_eq!(query_param("a=1&name=x%2Fy.md", "name"), Ok(Some("x/y.md".into())));
        assert_eq!(query_param("a=1", "name"), Ok(None));
    }

    #[test]
    fn hosts_are_loopback_the_listen_address_or_allowed() {
        let hosts = Hosts::new(&Listen::parse("192.168.1.5:8787").unwrap(), &["Failover.Example.org".into()]);
        for ok in ["127.0.0.1", "127.0.0.1:9", "localhost:8787", "LOCALHOST", "[::1]:8787", "[::1]", "127.1.2.3:80"] {
            assert!(hosts.allows(ok), "{ok}");
        }
        for ok in ["192.168.1.5:8787", "failover.example.org", "failover.example.org.:443"] {
            assert!(hosts.allows(ok), "{ok}");
        }
        for refused in
            ["", "evil.example", "localhost.evil.example", "127.0.0.1.evil.example", "[::2]:8787", "10.0.0.1"]
        {
            assert!(!hosts.allows(refused), "{refused}");
        }
        let any = Hosts::new(&Listen::parse("0.0.0.0:8787").unwrap(), &[]);
        assert!(!any.allows("0.0.0.0:8787"));
        assert!(any.allows("127.0.0.1:8787"));
    }

    #[test]
    fn an_origin_is_the_sites_own_only_with_the_same_host() {
        assert!(same_origin("http://127.0.0.1:8787", "127.0.0.1:8787"));
        assert!(same_origin("https://Failover.example.org", "failover.example.org"));
        assert!(!same_origin("http://127.0.0.1:8788", "127.0.0.1:8787"));
        assert!(!same_origin("null", "127.0.0.1:8787"));
        assert!(!same_origin("http://evil.example", "127.0.0.1:8787"));
        assert!(!same_origin("ftp://127.0.0.1:8787", "127.0.0.1:8787"));
        assert!(!same_origin("http://", ""));
    }

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abd", b"abc"));
        assert!(!constant_time_eq(b"ab", b"abc"));
        assert!(!constant_time_eq(b"abcd", b"abc"));
        assert!(!constant_time_eq(b"", b"abc"));
    }
}
