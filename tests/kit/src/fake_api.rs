//! A fake Anthropic API on loopback for tests and the demo: the Messages API as
//! Claude Code streams it, the OAuth usage endpoint, and per-token failure modes
//! (hard limit, plain 429, 529, 401). examples/fake_api.rs runs it as a program.
//!
//! Control from the same process goes through `FakeApi` methods; from another
//! process (make demo) through `POST /_control/<what>` with a JSON body, see
//! `control`. A new behaviour is a field of `State`, a setter on `FakeApi`, a
//! `control` verb, and its use in `messages` or `usage`.

use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// How the Messages API answers one access token.
#[derive(Clone, Debug, PartialEq)]
pub enum Mode {
    Ok,
    /// 429 with the `anthropic-ratelimit-unified-*` headers: a subscription quota hit.
    /// `claim` is `five_hour` or `seven_day`. Until `reset_unix` the usage
    /// endpoint shows that window at 100 % resetting then; from then on the
    /// token is answered as `Ok` again (the window reset as announced).
    HardLimit {
        claim: String,
        reset_unix: u64,
    },
    /// 400 `invalid_request_error`.
    InvalidRequest,
    /// 429 without unified headers: Claude Code retries these itself.
    PlainRateLimit,
    /// 529.
    Overloaded,
    /// 401 `authentication_error`: the token was revoked. The usage
    /// endpoint answers it 401 too.
    Unauthorized,
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The mode `token` is in now: a hard limit whose announced reset has
/// passed is over (and forgotten).
fn current_mode(st: &mut State, token: &str) -> Mode {
    let mode = st.modes.get(token).cloned().unwrap_or(Mode::Ok);
    if let Mode::HardLimit { reset_unix, .. } = mode {
        if unix_now() >= reset_unix {
            st.modes.remove(token);
            return Mode::Ok;
        }
    }
    mode
}

/// One Messages request that carried a user turn (the last user message has text).
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub token: String,
    pub session_id: Option<String>,
    pub text: String,
    /// When it arrived (before any [`FakeApi::set_delay`] wait).
    pub at: std::time::SystemTime,
    /// The token came in `x-api-key` with no `Authorization` header: an API
    /// key, as Claude Code sends one.
    pub api_key: bool,
}

/// What a token's successful answers say they used, and which model
/// answered (the request's model when None): an API key's spend is counted
/// from these, as Claude Code writes them into its transcript.
#[derive(Clone, Debug, PartialEq)]
pub struct AnswerUsage {
    pub model: Option<String>,
    pub input: u64,
    pub output: u64,
    pub cache_write: u64,
    pub cache_read: u64,
}

/// One successful Messages answer with the token it went to and its id.
#[derive(Clone, Debug)]
pub struct Answered {
    pub token: String,
    pub id: String,
    pub model: String,
    /// A conversation request (it carried tools): Claude Code writes its
    /// answer into the transcript; side requests (titles) are not.
    pub conversation: bool,
}

/// A `tool_result` block Claude Code sent back for a scripted tool call.
#[derive(Clone, Debug)]
pub struct ToolResult {
    /// The tool the scripted `tool_use` named.
    pub tool: String,
    pub is_error: bool,
    /// Its text content, blocks joined by newlines.
    pub text: String,
}

/// A scripted answer of the usage endpoint, replacing the utilization JSON.
#[derive(Clone, Debug)]
pub struct ScriptedUsage {
    pub status: u16,
    pub body: String,
    pub headers: Vec<(String, String)>,
}

#[derive(Clone, Debug)]
struct Usage {
    five_hour: f64,
    seven_day: f64,
    seven_day_opus: Option<f64>,
    /// When the windows reset (Unix seconds); None: an hour and four days
    /// from the moment of each answer.
    five_hour_reset: Option<u64>,
    seven_day_reset: Option<u64>,
    scripted: Option<ScriptedUsage>,
    delay: Duration,
}

impl Default for Usage {
    fn default() -> Self {
        Usage {
            five_hour: 0.0,
            seven_day: 0.0,
            seven_day_opus: None,
            five_hour_reset: None,
            seven_day_reset: None,
            scripted: None,
            delay: Duration::ZERO,
        }
    }
}

/// After `remaining` more user turns the token flips to `then`.
#[derive(Clone, Debug)]
struct Quota {
    remaining: u64,
    then: Mode,
}

#[derive(Default)]
struct State {
    modes: HashMap<String, Mode>,
    quotas: HashMap<String, Quota>,
    reply: Option<String>,
    delay: Duration,
    /// Bash commands to answer with a tool_use block, one per user turn, in order.
    tool_uses: Vec<String>,
    /// Tool calls (name, input) to answer with, one per conversation request
    /// that ends in a user turn or a tool result, in order.
    tool_calls: Vec<(String, Value)>,
    /// The tool each scripted tool_use id named, until its result arrives.
    issued: HashMap<String, String>,
    calls_made: u64,
    tool_results: Vec<ToolResult>,
    requests: Vec<RecordedRequest>,
    usage: HashMap<String, Usage>,
    usage_calls: HashMap<String, u64>,
    /// Every request seen as (method, url, token), for debugging a test.
    log: Vec<(String, String, String)>,
    /// User turns that have arrived, answered or not (a turn is recorded in
    /// `requests` only when it is answered, after any delay).
    turns_arrived: usize,
    /// User turns answered with a hard limit's 429.
    turns_limited: usize,
    /// When each token was first answered a hard limit's 429.
    first_limit: HashMap<String, std::time::Instant>,
    answer_usage: HashMap<String, AnswerUsage>,
    answered: Vec<Answered>,
    next_message: u64,
}

pub struct FakeApi {
    state: Arc<Mutex<State>>,
    server: Arc<tiny_http::Server>,
    url: String,
    thread: Option<JoinHandle<()>>,
}

impl FakeApi {
    /// Listens on 127.0.0.1 with a port the system picks.
    pub fn start() -> FakeApi {
        FakeApi::start_on(0).expect("fake API: bind 127.0.0.1:0")
    }

    pub fn start_on(port: u16) -> Result<FakeApi, String> {
        let server = tiny_http::Server::http(("127.0.0.1", port))
            .map_err(|e| format!("fake API: cannot listen on 127.0.0.1:{port}: {e}"))?;
        let addr = server.server_addr().to_ip().ok_or("fake API: not an IP listener")?;
        let server = Arc::new(server);
        let state = Arc::new(Mutex::new(State::default()));
        let thread = {
            let server = server.clone();
            let state = state.clone();
            std::thread::Builder::new()
                .name("fake-api".into())
                .spawn(move || accept_loop(&server, &state))
                .map_err(|e| format!("fake API: cannot start its thread: {e}"))?
        };
        Ok(FakeApi { state, server, url: format!("http://{addr}"), thread: Some(thread) })
    }

    /// `http://127.0.0.1:PORT`, what ANTHROPIC_BASE_URL is set to.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    pub fn set_mode(&self, token: &str, mode: Mode) {
        self.lock().modes.insert(token.to_string(), mode);
    }

    pub fn mode(&self, token: &str) -> Mode {
        current_mode(&mut self.lock(), token)
    }

    /// When `token` was first refused with a hard limit's 429, if it was.
    pub fn first_limit_at(&self, token: &str) -> Option<std::time::Instant> {
        self.lock().first_limit.get(token).copied()
    }

    /// `token` may make `turns` more user turns; the next one meets a hard limit.
    pub fn set_quota(&self, token: &str, turns: u64, claim: &str, reset_unix: u64) {
        let then = Mode::HardLimit { claim: claim.to_string(), reset_unix };
        self.lock().quotas.insert(token.to_string(), Quota { remaining: turns, then });
    }

    /// The text every answer carries; None restores "Done: <prompt start>".
    pub fn set_reply(&self, text: Option<&str>) {
        self.lock().reply = text.map(str::to_string);
    }

    /// Every Messages answer waits this long first (to watch a busy screen);
    /// the token's mode is read after the wait.
    pub fn set_delay(&self, delay: Duration) {
        self.lock().delay = delay;
    }

    /// The next user turn is answered by a Bash tool_use running `command`
    /// (which makes Claude Code ask for permission).
    pub fn push_tool_use(&self, command: &str) {
        self.lock().tool_uses.push(command.to_string());
    }

    /// The next conversation request that ends in a user turn or a tool
    /// result is answered by a `tool_use` of `name` (an MCP tool is
    /// `mcp__<server>__<tool>`) with `input`; Claude Code runs it and sends
    /// the result, recorded in [`FakeApi::tool_results`].
    pub fn push_tool_call(&self, name: &str, input: Value) {
        self.lock().tool_calls.push((name.to_string(), input));
    }

    /// The results of scripted tool calls, in the order they arrived.
    pub fn tool_results(&self) -> Vec<ToolResult> {
        self.lock().tool_results.clone()
    }

    /// User turns that have reached the API so far, even those still waiting
    /// out a [`FakeApi::set_delay`] (which [`FakeApi::requests`] lists only
    /// once answered).
    pub fn turns_arrived(&self) -> usize {
        self.lock().turns_arrived
    }

    /// User turns answered with a hard limit's 429 so far.
    pub fn turns_limited(&self) -> usize {
        self.lock().turns_limited
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().requests.clone()
    }

    pub fn user_texts(&self) -> Vec<String> {
        self.lock().requests.iter().map(|r| r.text.clone()).collect()
    }

    /// How many recorded user turns contain `s`.
    pub fn count_text(&self, s: &str) -> usize {
        self.lock().requests.iter().filter(|r| r.text.contains(s)).count()
    }

    pub fn log(&self) -> Vec<(String, String, String)> {
        self.lock().log.clone()
    }

    pub fn set_usage(&self, token: &str, five_hour: f64, seven_day: f64, opus: Option<f64>) {
        let mut st = self.lock();
        let u = st.usage.entry(token.to_string()).or_default();
        u.five_hour = five_hour;
        u.seven_day = seven_day;
        u.seven_day_opus = opus;
        u.scripted = None;
    }

    /// The usage windows of `token` reset at these Unix times (None: the
    /// default, an hour and four days ahead of each answer). With
    /// [`FakeApi::set_usage`] at low values, this is a window the server
    /// reset early: a low reading and a new reset days away.
    pub fn set_usage_resets(&self, token: &str, five_hour: Option<u64>, seven_day: Option<u64>) {
        let mut st = self.lock();
        let u = st.usage.entry(token.to_string()).or_default();
        u.five_hour_reset = five_hour;
        u.seven_day_reset = seven_day;
    }

    /// The usage endpoint answers `token` with exactly this until `set_usage`.
    pub fn script_usage(&self, token: &str, answer: ScriptedUsage) {
        self.lock().usage.entry(token.to_string()).or_default().scripted = Some(answer);
    }

    pub fn set_usage_delay(&self, token: &str, delay: Duration) {
        self.lock().usage.entry(token.to_string()).or_default().delay = delay;
    }

    /// `token`'s successful answers report this usage and model from now on.
    pub fn set_answer_usage(&self, token: &str, usage: AnswerUsage) {
        self.lock().answer_usage.insert(token.to_string(), usage);
    }

    /// Every successful Messages answer so far, oldest first.
    pub fn answered(&self) -> Vec<Answered> {
        self.lock().answered.clone()
    }

    pub fn usage_calls(&self, token: &str) -> u64 {
        self.lock().usage_calls.get(token).copied().unwrap_or(0)
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panicking handler thread must not take the whole fake down with it.
    state.lock().unwrap_or_else(|p| p.into_inner())
}

fn accept_loop(server: &Arc<tiny_http::Server>, state: &Arc<Mutex<State>>) {
    // One thread per request: answers can be delayed on purpose, and a delayed
    // answer must not hold up the others.
    while let Ok(request) = server.recv() {
        let state = state.clone();
        let _ = std::thread::Builder::new().name("fake-api-req".into()).spawn(move || handle(request, &state));
    }
}

type Answer = (u16, Vec<(String, String)>, String);

fn handle(mut request: tiny_http::Request, state: &Mutex<State>) {
    let mut body = String::new();
    let _ = request.as_reader().read_to_string(&mut body);
    let method = request.method().as_str().to_string();
    let url = request.url().to_string();
    let path = url.split('?').next().unwrap_or("").to_string();
    let header = |name: &str| {
        request
            .headers()
            .iter()
            .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str().to_string())
    };
    let api_key = header("authorization").is_none() && header("x-api-key").is_some();
    let token = header("authorization")
        .and_then(|v| v.strip_prefix("Bearer ").map(str::to_string))
        .or_else(|| header("x-api-key"))
        .unwrap_or_default();
    let session_header = header("x-claude-code-session-id");
    lock(state).log.push((method.clone(), url.clone(), token.clone()));
    if std::env::var_os("FAKE_API_DUMP").is_some() {
        eprintln!("fake-api: {method} {url} token={token} body={body}");
    }

    let (status, headers, text) = match (method.as_str(), path.as_str()) {
        ("POST", "/v1/messages") => messages(state, &token, api_key, session_header, &body),
        ("POST", "/v1/messages/count_tokens") => json_answer(200, json!({"input_tokens": 12})),
        ("GET", "/api/oauth/usage") => usage(state, &token),
        ("POST", p) if p.starts_with("/_control/") => control(state, &p[10..], &body),
        ("GET", "/_control/requests") => {
            let reqs: Vec<Value> = lock(state)
                .requests
                .iter()
                .map(|r| json!({"token": r.token, "session_id": r.session_id, "text": r.text}))
                .collect();
            json_answer(200, Value::Array(reqs))
        }
        _ => json_answer(200, json!({})),
    };
    let mut response = tiny_http::Response::from_string(text).with_status_code(status);
    for (k, v) in headers {
        if let Ok(h) = tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()) {
            response.add_header(h);
        }
    }
    let _ = request.respond(response);
}

fn json_answer(status: u16, v: Value) -> Answer {
    (status, vec![("Content-Type".into(), "application/json".into())], v.to_string())
}

/// The text of the last message (system ones aside) if it is a user message with
/// text blocks (tool results are not a user turn).
fn last_user_text(req: &Value) -> Option<String> {
    // 2.1.332 ends the list with a "system" message: look for the last user one.
    let last = req
        .get("messages")?
        .as_array()?
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) != Some("system"))?;
    if last.get("role")?.as_str()? != "user" {
        return None;
    }
    let text = match last.get("content")? {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => {
            // Tool results alone are not a user turn; 2.1.332 puts the next
            // prompt in the same message as the last turn's tool results.
            let texts: Vec<&str> = blocks
                .iter()
                .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
                .filter_map(|b| b.get("text").and_then(Value::as_str))
                // Claude Code adds its own reminders as extra text blocks.
                .filter(|t| !t.starts_with("<system-reminder>"))
                .collect();
            texts.join("\n")
        }
        _ => return None,
    };
    (!text.trim().is_empty()).then_some(text)
}

/// The `tool_result` blocks of the last user message: (tool_use_id,
/// is_error, text).
fn last_tool_results(req: &Value) -> Vec<(String, bool, String)> {
    let Some(last) = req
        .get("messages")
        .and_then(Value::as_array)
        .and_then(|m| m.iter().rev().find(|m| m.get("role").and_then(Value::as_str) != Some("system")))
    else {
        return Vec::new();
    };
    if last.get("role").and_then(Value::as_str) != Some("user") {
        return Vec::new();
    }
    let blocks = last.get("content").and_then(Value::as_array).cloned().unwrap_or_default();
    blocks
        .iter()
        .filter(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
        .map(|b| {
            let id = b.get("tool_use_id").and_then(Value::as_str).unwrap_or_default().to_string();
            let is_error = b.get("is_error").and_then(Value::as_bool).unwrap_or(false);
            let text = match b.get("content") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Array(parts)) => {
                    parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join("\n")
                }
                _ => String::new(),
            };
            (id, is_error, text)
        })
        .collect()
}

/// Claude Code puts its session id in a header (newer) or in `metadata.user_id`,
/// either as JSON `{"session_id":..}` or as `..._session_<uuid>`.
fn session_from_metadata(req: &Value) -> Option<String> {
    let user_id = req.get("metadata")?.get("user_id")?.as_str()?;
    if let Ok(v) = serde_json::from_str::<Value>(user_id) {
        if let Some(s) = v.get("session_id").and_then(Value::as_str) {
            return Some(s.to_string());
        }
    }
    user_id.rsplit_once("_session_").map(|(_, s)| s.to_string())
}

/// A side request (title, topic, quota probe) has no tools; the conversation
/// loop always sends its tool list.
fn is_conversation(req: &Value) -> bool {
    req.get("tools").and_then(Value::as_array).is_some_and(|t| !t.is_empty())
}

fn messages(state: &Mutex<State>, token: &str, api_key: bool, session_header: Option<String>, body: &str) -> Answer {
    let req: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let stream = req.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let model = req.get("model").and_then(Value::as_str).unwrap_or("claude-sonnet-4-5").to_string();
    let user_text = last_user_text(&req);
    let turn = user_text.is_some() && is_conversation(&req);
    let results = last_tool_results(&req);
    let arrived = std::time::SystemTime::now();
    if turn {
        lock(state).turns_arrived += 1;
    }
    // The wait comes first, so the answer follows the token's mode as it is
    // when the answer goes out (a limit set meanwhile meets requests in flight).
    let delay = lock(state).delay;
    if !delay.is_zero() {
        std::thread::sleep(delay);
    }

    let (mode, reply, tool_use, answer_usage) = {
        let mut st = lock(state);
        let mut mode = current_mode(&mut st, token);
        if turn && mode == Mode::Ok {
            if let Some(q) = st.quotas.get_mut(token) {
                if q.remaining == 0 {
                    mode = q.then.clone();
                    st.modes.insert(token.to_string(), mode.clone());
                    st.quotas.remove(token);
                } else {
                    q.remaining -= 1;
                }
            }
        }
        if matches!(mode, Mode::HardLimit { .. }) {
            st.first_limit.entry(token.to_string()).or_insert_with(std::time::Instant::now);
            if turn {
                st.turns_limited += 1;
            }
        }
        if turn {
            let session_id = session_header.or_else(|| session_from_metadata(&req));
            st.requests.push(RecordedRequest {
                token: token.to_string(),
                session_id,
                text: user_text.clone().unwrap_or_default(),
                at: arrived,
                api_key,
            });
        }
        for (id, is_error, text) in &results {
            // Claude Code may send the same history twice (a side request):
            // each result counts once.
            if let Some(tool) = st.issued.remove(id) {
                st.tool_results.push(ToolResult { tool, is_error: *is_error, text: text.clone() });
            }
        }
        let answers_call = (turn || !results.is_empty()) && is_conversation(&req) && mode == Mode::Ok;
        let call = if answers_call && !st.tool_calls.is_empty() {
            let (name, input) = st.tool_calls.remove(0);
            st.calls_made += 1;
            let id = format!("toolu_fake_call_{}", st.calls_made);
            st.issued.insert(id.clone(), name.clone());
            Some((id, name, input))
        } else {
            None
        };
        let tool_use = match call {
            Some(call) => Some(call),
            None if turn && mode == Mode::Ok && !st.tool_uses.is_empty() => {
                let command = st.tool_uses.remove(0);
                let input = json!({"command": command, "description": "Run the requested command"});
                Some(("toolu_fake_1".to_string(), "Bash".to_string(), input))
            }
            None => None,
        };
        (mode, st.reply.clone(), tool_use, st.answer_usage.get(token).cloned())
    };

    match mode {
        Mode::Ok => {}
        Mode::HardLimit { claim, reset_unix } => {
            let (s, mut h, b) = api_error(
                429,
                "rate_limit_error",
                "This request would exceed your account's rate limit. Please try again later.",
            );
            h.push(("anthropic-ratelimit-unified-status".into(), "rejected".into()));
            h.push(("anthropic-ratelimit-unified-reset".into(), reset_unix.to_string()));
            h.push(("anthropic-ratelimit-unified-representative-claim".into(), claim.clone()));
            return (s, h, b);
        }
        Mode::PlainRateLimit => {
            return api_error(
                429,
                "rate_limit_error",
                "Number of request tokens has exceeded your per-minute rate limit",
            )
        }
        Mode::Overloaded => return api_error(529, "overloaded_error", "Overloaded"),
        Mode::InvalidRequest => {
            return api_error(400, "invalid_request_error", "messages: the request is not valid (fake API)")
        }
        Mode::Unauthorized => {
            return api_error(401, "authentication_error", "OAuth token has been revoked. Please obtain a new token.")
        }
    }

    let text = reply.unwrap_or_else(|| {
        let prompt: String = user_text.unwrap_or_default().chars().take(40).collect();
        format!("Done: {prompt}")
    });
    let (id, model) = {
        let mut st = lock(state);
        st.next_message += 1;
        let id = format!("msg_fake_{}_{}", std::process::id(), st.next_message);
        let model = answer_usage.as_ref().and_then(|u| u.model.clone()).unwrap_or(model);
        let conversation = is_conversation(&req);
        st.answered.push(Answered { token: token.to_string(), id: id.clone(), model: model.clone(), conversation });
        (id, model)
    };
    let u = answer_usage.unwrap_or(AnswerUsage { model: None, input: 12, output: 8, cache_write: 0, cache_read: 0 });
    let usage = json!({"input_tokens": u.input, "output_tokens": u.output,
                       "cache_creation_input_tokens": u.cache_write, "cache_read_input_tokens": u.cache_read});
    let (block, stop_reason) = match &tool_use {
        Some((id, name, input)) => (json!({"type": "tool_use", "id": id, "name": name, "input": input}), "tool_use"),
        None => (json!({"type": "text", "text": text}), "end_turn"),
    };
    if !stream {
        return json_answer(
            200,
            json!({"id": id, "type": "message", "role": "assistant", "model": model,
                   "content": [block], "stop_reason": stop_reason, "stop_sequence": null,
                   "usage": usage}),
        );
    }
    let (start_block, delta) = match &tool_use {
        Some((id, name, _)) => (
            json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
            json!({"type": "input_json_delta", "partial_json": block["input"].to_string()}),
        ),
        None => (json!({"type": "text", "text": ""}), json!({"type": "text_delta", "text": text})),
    };
    let events = [
        (
            "message_start",
            json!({"type": "message_start", "message": {"id": id, "type": "message",
            "role": "assistant", "model": model, "content": [], "stop_reason": null,
            "stop_sequence": null, "usage": usage}}),
        ),
        ("content_block_start", json!({"type": "content_block_start", "index": 0, "content_block": start_block})),
        ("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": delta})),
        ("content_block_stop", json!({"type": "content_block_stop", "index": 0})),
        (
            "message_delta",
            json!({"type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": null},
            "usage": {"output_tokens": u.output}}),
        ),
        ("message_stop", json!({"type": "message_stop"})),
    ];
    let mut sse = String::new();
    for (name, data) in events {
        sse.push_str(&format!("event: {name}\ndata: {data}\n\n"));
    }
    (200, vec![("Content-Type".into(), "text/event-stream".into()), ("Cache-Control".into(), "no-cache".into())], sse)
}

fn api_error(status: u16, kind: &str, message: &str) -> Answer {
    let (s, mut h, b) = json_answer(status, json!({"type": "error", "error": {"type": kind, "message": message}}));
    h.push(("request-id".into(), "req_fake".into()));
    (s, h, b)
}

/// The usage endpoint: what `set_usage` set, except that a token in a hard
/// limit shows its claimed window full until the announced reset, and a
/// revoked one gets a 401, as the real endpoint would.
fn usage(state: &Mutex<State>, token: &str) -> Answer {
    let (u, mode) = {
        let mut st = lock(state);
        *st.usage_calls.entry(token.to_string()).or_default() += 1;
        (st.usage.get(token).cloned().unwrap_or_default(), current_mode(&mut st, token))
    };
    if !u.delay.is_zero() {
        std::thread::sleep(u.delay);
    }
    if let Some(s) = u.scripted {
        return (s.status, s.headers, s.body);
    }
    if mode == Mode::Unauthorized {
        return api_error(401, "authentication_error", "OAuth token has been revoked. Please obtain a new token.");
    }
    // Resets an hour and four days from now unless set, in the endpoint's RFC 3339 form.
    let now = unix_now();
    let window = |util: f64, reset: u64| json!({"utilization": util, "resets_at": rfc3339(reset)});
    let mut five_hour = window(u.five_hour, u.five_hour_reset.unwrap_or(now + 3600));
    let mut seven_day = window(u.seven_day, u.seven_day_reset.unwrap_or(now + 4 * 86400));
    if let Mode::HardLimit { claim, reset_unix } = &mode {
        let full = window(100.0, *reset_unix);
        match claim.as_str() {
            "seven_day" => seven_day = full,
            _ => five_hour = full,
        }
    }
    json_answer(
        200,
        json!({
            "five_hour": five_hour,
            "seven_day": seven_day,
            "seven_day_sonnet": window(0.0, now + 4 * 86400),
            "seven_day_opus": u.seven_day_opus.map(|o| window(o, now + 4 * 86400)),
            "extra_usage": {"is_enabled": false},
        }),
    )
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SS.000000+00:00`, the usage endpoint's
/// form (civil-from-days, proleptic Gregorian calendar). Written here rather
/// than taken from the daemon, so the daemon's parser meets an independent
/// formatter.
pub fn rfc3339(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let rest = unix % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.000000+00:00", rest / 3600, rest % 3600 / 60, rest % 60)
}

/// `POST /_control/<what>` with a JSON body:
/// - `mode` `{"token", "mode": "ok"|"hard_limit"|"plain_rate_limit"|"overloaded"|"unauthorized"|"invalid_request", "claim", "reset_unix"}`
/// - `quota` `{"token", "turns", "claim", "reset_unix"}`
/// - `usage` `{"token", "five_hour", "seven_day", "seven_day_opus", "five_hour_reset", "seven_day_reset"}` (resets in Unix seconds)
/// - `usage_script` `{"token", "status", "body", "headers": {..}, "delay_ms"}`
/// - `reply` `{"text"}` (null for the default), `delay` `{"ms"}`, `tool_use` `{"command"}`,
///   `tool_call` `{"name", "input"}`
fn control(state: &Mutex<State>, what: &str, body: &str) -> Answer {
    let v: Value = match serde_json::from_str(body) {
        Ok(v) => v,
        Err(e) => return json_answer(400, json!({"error": format!("body is not JSON: {e}")})),
    };
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let n = |k: &str| v.get(k).and_then(Value::as_u64);
    let f = |k: &str| v.get(k).and_then(Value::as_f64);
    let token = s("token").unwrap_or_default();
    let claim = s("claim").unwrap_or_else(|| "five_hour".into());
    let reset_unix = n("reset_unix").unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() + 3600).unwrap_or(0)
    });
    let mut st = lock(state);
    match what {
        "mode" => {
            let mode = match s("mode").as_deref() {
                Some("ok") => Mode::Ok,
                Some("hard_limit") => Mode::HardLimit { claim, reset_unix },
                Some("plain_rate_limit") => Mode::PlainRateLimit,
                Some("overloaded") => Mode::Overloaded,
                Some("unauthorized") => Mode::Unauthorized,
                Some("invalid_request") => Mode::InvalidRequest,
                other => return json_answer(400, json!({"error": format!("unknown mode {other:?}")})),
            };
            st.modes.insert(token, mode);
        }
        "quota" => {
            let then = Mode::HardLimit { claim, reset_unix };
            let remaining = n("turns").unwrap_or(0);
            st.quotas.insert(token, Quota { remaining, then });
        }
        "usage" => {
            let u = st.usage.entry(token).or_default();
            u.five_hour = f("five_hour").unwrap_or(0.0);
            u.seven_day = f("seven_day").unwrap_or(0.0);
            u.seven_day_opus = f("seven_day_opus");
            u.five_hour_reset = n("five_hour_reset");
            u.seven_day_reset = n("seven_day_reset");
            u.scripted = None;
        }
        "usage_script" => {
            let headers = v
                .get("headers")
                .and_then(Value::as_object)
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
                .unwrap_or_default();
            let u = st.usage.entry(token).or_default();
            u.scripted = Some(ScriptedUsage {
                status: n("status").and_then(|s| u16::try_from(s).ok()).unwrap_or(200),
                body: s("body").unwrap_or_default(),
                headers,
            });
            u.delay = Duration::from_millis(n("delay_ms").unwrap_or(0));
        }
        "reply" => st.reply = s("text"),
        "delay" => st.delay = Duration::from_millis(n("ms").unwrap_or(0)),
        "tool_use" => st.tool_uses.push(s("command").unwrap_or_default()),
        "tool_call" => {
            st.tool_calls.push((s("name").unwrap_or_default(), v.get("input").cloned().unwrap_or(json!({}))))
        }
        _ => return json_answer(404, json!({"error": format!("no control {what:?}")})),
    }
    json_answer(200, json!({"ok": true}))
}
