//! A fake Telegram Bot API on loopback: `getUpdates` long-polls the updates a
//! test queues (commands, button presses, replies, as Telegram words them),
//! every other method is recorded and answered `ok` (a `sendMessage` gets a
//! message id), and a method can be told to fail once with a status and body
//! (a 429 with `retry_after`). Set `notify.telegram.api_base` to [`FakeTelegram::url`].

use serde_json::{json, Value};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The token the kit's configs use; the fake takes any.
pub const TOKEN: &str = "123456:KIT-bot-token";

/// One recorded Bot API call.
#[derive(Clone, Debug)]
pub struct Call {
    pub method: String,
    pub body: Value,
    pub at: Instant,
}

#[derive(Default)]
struct State {
    updates: Vec<Value>,
    next_update: i64,
    next_message: i64,
    calls: Vec<Call>,
    /// (method, status, body): the next call of `method` is answered so.
    failures: Vec<(String, u16, String)>,
    /// getUpdates requests seen (the daemon's polls).
    polls: u64,
}

pub struct FakeTelegram {
    state: Arc<(Mutex<State>, Condvar)>,
    server: Arc<tiny_http::Server>,
    url: String,
}

impl FakeTelegram {
    pub fn start() -> FakeTelegram {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("fake Telegram: bind"));
        let addr = server.server_addr().to_ip().expect("fake Telegram: an IP listener");
        let state =
            Arc::new((Mutex::new(State { next_update: 1, next_message: 1000, ..State::default() }), Condvar::new()));
        let (s, st) = (Arc::clone(&server), Arc::clone(&state));
        std::thread::Builder::new()
            .name("fake-telegram".into())
            .spawn(move || {
                while let Ok(request) = s.recv() {
                    let st = Arc::clone(&st);
                    let _ = std::thread::Builder::new()
                        .name("fake-telegram-req".into())
                        .spawn(move || handle(request, &st));
                }
            })
            .expect("fake Telegram thread");
        FakeTelegram { state, server, url: format!("http://{addr}") }
    }

    /// What `notify.telegram.api_base` is set to.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues an update; returns the message id it was given.
    fn push(&self, make: impl FnOnce(i64, i64) -> Value) -> i64 {
        let mut st = self.lock();
        let (update_id, message_id) = (st.next_update, st.next_message);
        st.next_update += 1;
        st.next_message += 1;
        let mut update = make(update_id, message_id);
        update["update_id"] = json!(update_id);
        st.updates.push(update);
        self.state.1.notify_all();
        message_id
    }

    /// A text message (a command) from `user` in `chat`; its message id.
    pub fn message(&self, chat: i64, user: i64, text: &str) -> i64 {
        let now = unix_now();
        self.push(|_, message_id| {
            json!({"message": {"message_id": message_id, "date": now, "text": text,
                               "from": {"id": user, "is_bot": false, "first_name": "Tester", "username": format!("user{user}")},
                               "chat": {"id": chat, "type": "group"}}})
        })
    }

    /// Text from `user` in reply to the message `replied` (as [`FakeTelegram::sent`] gives it); its message id.
    pub fn reply(&self, chat: i64, user: i64, text: &str, replied: &Value) -> i64 {
        let now = unix_now();
        let replied = replied.clone();
        self.push(|_, message_id| {
            json!({"message": {"message_id": message_id, "date": now, "text": text,
                               "from": {"id": user, "is_bot": false, "first_name": "Tester", "username": format!("user{user}")},
                               "chat": {"id": chat, "type": "group"},
                               "reply_to_message": replied}})
        })
    }

    /// A press of the button carrying `data` under `message` (a sent message as [`FakeTelegram::sent`] gives it).
    pub fn press(&self, chat: i64, user: i64, message: &Value, data: &str) {
        let message = message.clone();
        self.push(|update_id, _| {
            json!({"callback_query": {"id": format!("cb{update_id}"), "data": data, "chat_instance": "1",
                                      "from": {"id": user, "is_bot": false, "first_name": "Tester", "username": format!("user{user}")},
                                      "message": {"message_id": message["message_id"], "chat": {"id": chat},
                                                  "text": message["text"]}}})
        });
    }

    /// The messages sent in reply to message `id`.
    pub fn replies_to(&self, id: i64) -> Vec<Value> {
        self.calls_of("sendMessage")
            .into_iter()
            .filter(|c| c.body.pointer("/reply_parameters/message_id").and_then(Value::as_i64) == Some(id))
            .filter_map(|c| c.body.get("_sent").cloned())
            .collect()
    }

    /// Waits for the first reply to message `id`; its text.
    pub fn wait_reply(&self, id: i64, timeout: Duration) -> String {
        super::wait_until(timeout, &format!("a reply to message {id}"), || {
            self.replies_to(id).first().map(|m| m["text"].as_str().unwrap_or_default().to_string())
        })
    }

    /// The next call of `method` is answered with `status` and `body`.
    pub fn fail_next(&self, method: &str, status: u16, body: &str) {
        self.lock().failures.push((method.to_string(), status, body.to_string()));
    }

    /// Every call so far except the polls, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// The calls of `method`.
    pub fn calls_of(&self, method: &str) -> Vec<Call> {
        self.calls().into_iter().filter(|c| c.method == method).collect()
    }

    /// The messages sent so far, as Telegram would hold them (with their
    /// `message_id`, `text`, `reply_markup`).
    pub fn sent(&self) -> Vec<Value> {
        self.calls_of("sendMessage").into_iter().filter_map(|c| c.body.get("_sent").cloned()).collect()
    }

    /// How many times the daemon polled.
    pub fn polls(&self) -> u64 {
        self.lock().polls
    }

    /// Waits for a sent message whose text satisfies `pred`.
    pub fn wait_sent(&self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> Value {
        super::wait_until(timeout, what, || {
            self.sent().into_iter().find(|m| pred(m["text"].as_str().unwrap_or_default()))
        })
    }
}

impl Drop for FakeTelegram {
    fn drop(&mut self) {
        self.server.unblock();
        self.state.1.notify_all();
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

fn handle(mut request: tiny_http::Request, state: &(Mutex<State>, Condvar)) {
    let mut body = String::new();
    let _ = request.as_reader().read_to_string(&mut body);
    let url = request.url().to_string();
    // /bot<token>/<method>
    let method = url.rsplit('/').next().unwrap_or_default().split('?').next().unwrap_or_default().to_string();
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let (status, answer) = answer(&method, body, state);
    let _ =
        request.respond(tiny_http::Response::from_string(answer).with_status_code(status).with_header(
            tiny_http::Header::from_bytes(&b"Content-Type"[..], &b"application/json"[..]).expect("header"),
        ));
}

fn answer(method: &str, mut body: Value, state: &(Mutex<State>, Condvar)) -> (u16, String) {
    let (lock, wake) = state;
    let mut st = lock.lock().unwrap_or_else(|p| p.into_inner());
    if method == "getUpdates" {
        st.polls += 1;
        let offset = body.get("offset").and_then(Value::as_i64).unwrap_or(0);
        let timeout = Duration::from_secs(body.get("timeout").and_then(Value::as_u64).unwrap_or(0));
        let until = Instant::now() + timeout;
        loop {
            let ready: Vec<Value> =
                st.updates.iter().filter(|u| u["update_id"].as_i64().unwrap_or(0) >= offset).cloned().collect();
            let left = until.saturating_duration_since(Instant::now());
            if !ready.is_empty() || left.is_zero() {
                return (200, json!({"ok": true, "result": ready}).to_string());
            }
            st = wake.wait_timeout(st, left).unwrap_or_else(|p| p.into_inner()).0;
        }
    }
    if let Some(i) = st.failures.iter().position(|(m, _, _)| m == method) {
        let (_, status, text) = st.failures.remove(i);
        st.calls.push(Call { method: format!("{method} (failed {status})"), body, at: Instant::now() });
        return (status, text);
    }
    let result = if method == "sendMessage" {
        let message_id = st.next_message;
        st.next_message += 1;
        let sent = json!({"message_id": message_id, "chat": {"id": body["chat_id"]}, "text": body["text"],
                          "reply_markup": body.get("reply_markup").cloned().unwrap_or(Value::Null)});
        body["_sent"] = sent.clone();
        sent
    } else {
        Value::Bool(true)
    };
    st.calls.push(Call { method: method.to_string(), body, at: Instant::now() });
    (200, json!({"ok": true, "result": result}).to_string())
}
