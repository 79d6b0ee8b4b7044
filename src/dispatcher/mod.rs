//! The dispatcher role ("dispatcher" thread): the task queues' executor.
//!
//! It watches every project's inbox (inotify, through `queue::InboxWatcher`),
//! keeps an index of the tasks waiting there, and on the coordinator's orders
//! hands one to an idle session (claim, paste, confirm), finishes a settled
//! one into done/, and reconciles leases after a restart. Which session is
//! free, and when a task has settled, is the coordinator's call: this role
//! only picks *which task* a free session gets, by the queue's order.

pub mod delivery;

use crate::config::Config;
use crate::control::Shared;
use crate::events::Kind;
use crate::heartbeat::Beat;
use crate::queue::{self, Lease, LoadError, Queue, QueueCounts, Task, TaskResult, WatchEvent};
use crate::report::Reporter;
use crate::tmux::Tmux;
use crossbeam_channel::{select, Receiver, Sender};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Where a session's conversation lives, for pasting and reading back.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRef {
    pub session: String,
    pub project: String,
    pub account: String,
    pub config_dir: PathBuf,
    pub claude_session_id: String,
}

impl SessionRef {
    /// `<config_dir>/projects/<key>/<id>.jsonl`: the same file as the shared
    /// tree's once `setup` linked `projects/`, and right without it too.
    pub fn transcript(&self, cwd: &Path) -> PathBuf {
        crate::claude::transcript_path(&crate::claude::projects_dir(&self.config_dir), cwd, &self.claude_session_id)
    }
}

#[derive(Debug, Clone)]
pub enum Command {
    /// This session is idle and may take a task of its project.
    Offer(SessionRef),
    /// This session lost its turn on `task` (it died, a move failed, a limit
    /// or a dead login stopped it) and is back at its prompt: tell it to
    /// continue (no new lease, no attempt). `after` names the interruption
    /// in the prompt ("a restart of the session").
    Continue {
        at: SessionRef,
        task: String,
        after: &'static str,
    },
    /// This session's turn on `task` ended in an API error (`why`): count
    /// an attempt and tell it to continue, or move the task to failed/ with
    /// `why` as its reason once `max_attempts` are used.
    Retry {
        at: SessionRef,
        task: String,
        why: String,
    },
    /// The janitor's round: the (project, task) pairs some session holds.
    /// A lease held by nobody for long is handed back (counting an attempt).
    Reconcile {
        held: Vec<(String, String)>,
    },
    /// This session's task settled: move it to done/.
    Finish {
        at: SessionRef,
        task: String,
    },
    /// At start-up: every configured session as found (None: not running).
    Recover {
        sessions: Vec<(String, Option<SessionRef>)>,
    },
    Configure(Arc<Config>),
}

#[derive(Debug)]
pub enum Report {
    /// The project's inbox holds `tasks` takeable tasks.
    Waiting {
        project: String,
        tasks: usize,
    },
    Dispatched {
        session: String,
        task: String,
    },
    /// Nothing this session may take right now.
    NoTask {
        session: String,
    },
    DeliveryFailed {
        session: String,
        task: String,
        error: delivery::DeliveryError,
    },
    /// The task left active/: done, or failed after its attempts.
    Finished {
        session: String,
        task: String,
    },
    /// A lease kept through a restart: its prompt is in the session's
    /// conversation. `running`: the session still runs (else it is about to
    /// be relaunched, and must be told to continue).
    Resumed {
        session: String,
        task: String,
        running: bool,
    },
    /// Leases reconciled; offers may start.
    Recovered,
    Counts {
        project: String,
        counts: QueueCounts,
    },
}

/// How long recovery waits for a delivered prompt's transcript record.
const TRANSCRIPT_GRACE: Duration = Duration::from_secs(3);

/// What a delivery thread reports back.
struct DeliveryDone {
    /// A continuation of a task already held, not a new dispatch.
    continuation: bool,
    at: SessionRef,
    task: String,
    attempt: u32,
    seen_at: Instant,
    result: Result<delivery::Delivered, delivery::DeliveryError>,
}

/// A task waiting in an inbox, as much as choosing needs.
#[derive(Debug, Clone)]
struct Waiting {
    priority: i64,
    session: Option<String>,
    /// When the daemon first saw it (for the dispatch-latency histogram).
    seen_at: Instant,
}

pub struct Role {
    config: Arc<Config>,
    shared: Shared,
    tmux: Tmux,
    out: Reporter<Report>,
    queues: BTreeMap<String, Queue>,
    index: BTreeMap<String, BTreeMap<String, Waiting>>,
    watcher: Option<queue::InboxWatcher>,
    last_status_json: HashMap<String, String>,
    /// Per delivered (project, task): the transcript offset its prompt went
    /// in at, so the result quotes this task's answer and no earlier one.
    answers_from: HashMap<(String, String), u64>,
    delivered_tx: Sender<DeliveryDone>,
    delivered_rx: Receiver<DeliveryDone>,
}

impl Role {
    pub fn new(config: Arc<Config>, shared: Shared, out: Reporter<Report>) -> Role {
        let tmux = Tmux::new(&config.tmux.socket_name);
        let (delivered_tx, delivered_rx) = crossbeam_channel::unbounded();
        Role {
            config,
            shared,
            tmux,
            out,
            queues: BTreeMap::new(),
            index: BTreeMap::new(),
            watcher: None,
            last_status_json: HashMap::new(),
            answers_from: HashMap::new(),
            delivered_tx,
            delivered_rx,
        }
    }

    pub fn run(mut self, commands: Receiver<Command>, beat: Beat) {
        let (watch_tx, watch_rx) = crossbeam_channel::unbounded();
        self.open_queues(&watch_tx);
        let ticks = crossbeam_channel::tick(Duration::from_secs(1));
        loop {
            beat.beat();
            select! {
                recv(commands) -> cmd => match cmd {
                    Ok(cmd) => {
                        // select! picks among ready channels at random: read
                        // the inbox changes already reported first, so an
                        // offer chooses among every task seen so far.
                        watch_rx.try_iter().for_each(|ev| self.on_watch(ev));
                        self.handle(cmd, &watch_tx)
                    }
                    Err(_) => break,
                },
                recv(watch_rx) -> ev => if let Ok(ev) = ev { self.on_watch(ev) },
                recv(self.delivered_rx.clone()) -> done => if let Ok(done) = done { self.delivered(done) },
                recv(ticks) -> _ => self.write_status_files(),
            }
        }
        if let Some(w) = self.watcher.take() {
            w.stop();
        }
    }

    fn report(&self, r: Report) {
        self.out.send(r);
    }

    /// Opens (creating) every project's queue, starts watching the inboxes,
    /// then scans them: watch first, so nothing written in between is missed.
    fn open_queues(&mut self, watch_tx: &Sender<WatchEvent>) {
        let mut inboxes = Vec::new();
        for p in &self.config.projects {
            if self.queues.contains_key(&p.name) {
                continue;
            }
            match Queue::open(&p.name, p.queue_root()) {
                Ok(q) => {
                    inboxes.push((p.name.clone(), q.inbox_dir()));
                    self.queues.insert(p.name.clone(), q);
                }
                Err(e) => log::error!("project {}: cannot open its queue: {e}", p.name),
            }
        }
        match &self.watcher {
            Some(w) => inboxes.iter().for_each(|(p, inbox)| w.add(p, inbox.clone())),
            None => match queue::InboxWatcher::start(inboxes.clone(), watch_tx.clone()) {
                Ok(w) => self.watcher = Some(w),
                Err(e) => log::error!("{e}; new tasks will be seen only at the next start"),
            },
        }
        for (project, _) in inboxes {
            self.rescan(&project);
        }
    }

    fn handle(&mut self, cmd: Command, watch_tx: &Sender<WatchEvent>) {
        match cmd {
            Command::Offer(at) => self.offer(&at),
            Command::Continue { at, task, after } => self.continue_task(at, task, after),
            Command::Retry { at, task, why } => self.retry(at, task, &why),
            Command::Reconcile { held } => self.reconcile(&held),
            Command::Finish { at, task } => self.finish(&at, &task),
            Command::Recover { sessions } => self.recover(&sessions),
            Command::Configure(config) => {
                self.config = config;
                self.open_queues(watch_tx);
            }
        }
    }

    fn on_watch(&mut self, ev: WatchEvent) {
        match ev {
            WatchEvent::Arrived { project, name } => {
                if self.admit(&project, &name, Instant::now()) {
                    self.announce(&project);
                }
            }
            WatchEvent::Rescan { project } => self.rescan(&project),
        }
    }

    /// Reads every inbox entry of a project into the index.
    fn rescan(&mut self, project: &str) {
        let Some(q) = self.queues.get(project) else { return };
        let scan = match q.scan_inbox() {
            Ok(scan) => scan,
            Err(e) => {
                log::error!("project {project}: cannot scan the inbox: {e}");
                return;
            }
        };
        for (task, reason) in &scan.rejected {
            self.task_failed(project, task, reason, 0);
        }
        let now = Instant::now();
        let mut present = std::collections::HashSet::new();
        for entry in scan.entries {
            present.insert(entry.name.clone());
            let known = self.index.get(project).is_some_and(|i| i.contains_key(&entry.name));
            if !known {
                self.admit(project, &entry.name, now);
            }
        }
        if let Some(i) = self.index.get_mut(project) {
            i.retain(|name, _| present.contains(name));
        }
        self.announce(project);
    }

    /// Validates one inbox entry: good ones join the index, bad ones go to
    /// failed/ with the reason. True when the index gained it.
    fn admit(&mut self, project: &str, name: &str, seen_at: Instant) -> bool {
        let Some(q) = self.queues.get(project) else { return false };
        let loaded = q.load(name, self.config.dispatch.max_task_bytes).and_then(|task| {
            // A task pinned to a session that is not one of this project's
            // would wait forever: it is bad input.
            match &task.session {
                Some(pin) if !self.config.sessions.iter().any(|s| s.name == *pin && s.project == project) => {
                    Err(LoadError::Rejected(queue::Rejection::FrontMatter(format!(
                        "session = \"{pin}\" names no session of project {project}"
                    ))))
                }
                _ => Ok(task),
            }
        });
        match loaded {
            Ok(task) => {
                let waiting = Waiting { priority: task.priority, session: task.session, seen_at };
                self.index.entry(project.into()).or_default().entry(name.into()).or_insert(waiting);
                true
            }
            Err(LoadError::Gone) => false,
            Err(LoadError::Rejected(why)) => {
                let reason = why.to_string();
                match q.reject(name, &reason, 0) {
                    Ok(moved) => self.task_failed(project, &moved, &reason, 0),
                    Err(e) => log::error!("project {project}: cannot move {name} to failed/: {e}"),
                }
                false
            }
        }
    }

    fn task_failed(&self, project: &str, task: &str, reason: &str, attempts: u32) {
        self.shared.events.emit(
            Kind::TaskFailed,
            task,
            format!("task {task} of {project} failed: {reason}"),
            json!({"project": project, "task": task, "reason": reason, "attempts": attempts}),
        );
        self.shared.metrics.inc("claude_failover_tasks_finished_total", &[("project", project), ("outcome", "failed")]);
        self.counts(project);
    }

    fn announce(&self, project: &str) {
        let tasks = self.index.get(project).map_or(0, BTreeMap::len);
        self.report(Report::Waiting { project: project.into(), tasks });
        self.counts(project);
    }

    fn counts(&self, project: &str) {
        if let Some(q) = self.queues.get(project) {
            match q.counts() {
                Ok(counts) => self.report(Report::Counts { project: project.into(), counts }),
                Err(e) => log::warn!("project {project}: cannot count the queue: {e}"),
            }
        }
    }

    /// The first waiting task `session` may take: pinned to it or to nobody,
    /// highest priority first, then oldest by name.
    fn choose(&self, project: &str, session: &str) -> Option<String> {
        let index = self.index.get(project)?;
        index
            .iter()
            .filter(|(_, w)| queue::may_take(w.session.as_deref(), session))
            .min_by(|(a_name, a), (b_name, b)| queue::takes_first((a.priority, a_name), (b.priority, b_name)))
            .map(|(name, _)| name.clone())
    }

    fn offer(&mut self, at: &SessionRef) {
        let project = at.project.clone();
        while let Some(name) = self.choose(&project, &at.session) {
            let waiting = self.index.get_mut(&project).and_then(|i| i.remove(&name));
            let Some(q) = self.queues.get(&project) else { break };
            let task = match q.load(&name, self.config.dispatch.max_task_bytes) {
                Ok(t) => t,
                Err(LoadError::Gone) => continue,
                Err(LoadError::Rejected(why)) => {
                    let reason = why.to_string();
                    if let Ok(moved) = q.reject(&name, &reason, 0) {
                        self.task_failed(&project, &moved, &reason, 0);
                    }
                    continue;
                }
            };
            let seen_at = waiting.map_or_else(Instant::now, |w| w.seen_at);
            self.dispatch(at, task, seen_at);
            self.announce(&project);
            return;
        }
        self.report(Report::NoTask { session: at.session.clone() });
    }

    fn dispatch(&mut self, at: &SessionRef, task: Task, seen_at: Instant) {
        let Some(q) = self.queues.get(&at.project) else { return };
        let attempt = task.attempts + 1;
        let lease = Lease {
            session: at.session.clone(),
            account: at.account.clone(),
            attempt,
            dispatched_at: crate::time::rfc3339(SystemTime::now()),
            claude_session_id: Some(at.claude_session_id.clone()),
        };
        if let Err(e) = q.claim(&task.name, &lease) {
            log::error!("project {}: cannot claim {}: {e}", at.project, task.name);
            self.report(Report::NoTask { session: at.session.clone() });
            return;
        }
        let Some(cwd) = self.config.project(&at.project).map(|p| p.path.clone()) else { return };
        let confirm = Duration::from_secs(self.config.dispatch.submit_confirm_secs);
        // Each delivery waits ~1 s by design (the paste pause, then the
        // confirmation): it runs on its own thread so sessions are served in
        // parallel and this role keeps answering.
        let (tmux, done, transcript) = (self.tmux.clone(), self.delivered_tx.clone(), at.transcript(&cwd));
        let at = at.clone();
        let spawned = std::thread::Builder::new().name("deliver".into()).spawn(move || {
            let result = delivery::deliver(&tmux, &at.session, &task.body, &transcript, confirm, &|| {});
            let _ = done.send(DeliveryDone { continuation: false, at, task: task.name, attempt, seen_at, result });
        });
        if let Err(e) = spawned {
            log::error!("cannot start a delivery thread: {e}");
        }
    }

    /// Leases no session holds, older than a delivery could take, go back to
    /// the inbox (or to failed/ after `max_attempts`): e.g. a session removed
    /// from the config by a reload while it held a task.
    fn reconcile(&mut self, held: &[(String, String)]) {
        let grace = Duration::from_secs(self.config.dispatch.submit_confirm_secs * 3 + 60);
        let now = SystemTime::now();
        let projects: Vec<String> = self.queues.keys().cloned().collect();
        for project in projects {
            let Some(q) = self.queues.get(&project) else { continue };
            let Ok(leases) = q.leases() else { continue };
            for (name, lease) in leases {
                if held.iter().any(|(p, t)| *p == project && *t == name) {
                    continue;
                }
                let age = crate::time::parse_rfc3339(&lease.dispatched_at)
                    .and_then(|t| now.duration_since(t).ok())
                    .unwrap_or(Duration::MAX);
                if age < grace {
                    continue;
                }
                log::warn!(
                    "project {project}: {name} is leased to {} but no session holds it; handing it back",
                    lease.session
                );
                self.shared.metrics.inc("claude_failover_janitor_actions_total", &[("action", "stale_lease")]);
                self.give_back(&project, &name, lease.attempt, "its session no longer held it");
            }
            self.announce(&project);
        }
    }

    /// A turn on `task` ended in an API error: the attempt is counted on the
    /// lease and the session told to continue, or, with `max_attempts` used,
    /// the task goes to failed/ with the error as its reason.
    fn retry(&mut self, at: SessionRef, task: String, why: &str) {
        let Some(q) = self.queues.get(&at.project) else { return };
        let lease = match q.lease(&task) {
            Ok(Some(lease)) => lease,
            Ok(None) => return log::warn!("project {}: {task} has no lease to count a retry on", at.project),
            Err(e) => return log::error!("project {}: {e}", at.project),
        };
        if lease.attempt >= self.config.dispatch.max_attempts {
            let reason = format!("gave up after {} attempts; last: {why}", lease.attempt);
            match q.fail(&task, &reason, lease.attempt) {
                Ok(moved) => {
                    self.task_failed(&at.project, &moved, &reason, lease.attempt);
                    self.report(Report::Finished { session: at.session.clone(), task });
                }
                Err(e) => log::error!("project {}: cannot move {task} to failed/: {e}", at.project),
            }
            return;
        }
        let attempt = lease.attempt + 1;
        if let Err(e) = q.update_lease(&task, &Lease { attempt, ..lease }) {
            log::error!("project {}: cannot count attempt {attempt} of {task}: {e}", at.project);
        }
        log::warn!("{}: {task} failed on {why}; continuing it (attempt {attempt})", at.session);
        self.continue_task(at, task, "an API error that ended the last turn");
    }

    /// Sends the continuation prompt for a task the session already holds;
    /// `after` says what interrupted it.
    fn continue_task(&mut self, at: SessionRef, task: String, after: &str) {
        let Some(cwd) = self.config.project(&at.project).map(|p| p.path.clone()) else { return };
        let confirm = Duration::from_secs(self.config.dispatch.submit_confirm_secs);
        let (tmux, done, transcript) = (self.tmux.clone(), self.delivered_tx.clone(), at.transcript(&cwd));
        let text = crate::sessions::launch::continuation_prompt(&task, after);
        let spawned = std::thread::Builder::new().name("deliver".into()).spawn(move || {
            let result = delivery::deliver(&tmux, &at.session, &text, &transcript, confirm, &|| {});
            let seen_at = Instant::now();
            let _ = done.send(DeliveryDone { continuation: true, at, task, attempt: 0, seen_at, result });
        });
        if let Err(e) = spawned {
            log::error!("cannot start a delivery thread: {e}");
        }
    }

    /// A delivery thread's outcome.
    fn delivered(&mut self, done: DeliveryDone) {
        let DeliveryDone { continuation, at, task, attempt, seen_at, result } = done;
        if continuation {
            match result {
                Ok(_) => {
                    log::info!("{}: told to continue {task}", at.session);
                    self.report(Report::Dispatched { session: at.session.clone(), task });
                }
                Err(error) => {
                    log::warn!("{}: the continuation prompt for {task} was not taken: {error}", at.session);
                    self.report(Report::DeliveryFailed { session: at.session.clone(), task, error });
                }
            }
            return;
        }
        match result {
            Ok(delivered) => {
                self.answers_from.insert((at.project.clone(), task.clone()), delivered.transcript_offset);
                let latency = delivered.pasted_at.saturating_duration_since(seen_at).as_secs_f64();
                self.shared.metrics.observe("claude_failover_dispatch_latency_seconds", latency);
                self.shared.metrics.inc("claude_failover_tasks_dispatched_total", &[("project", &at.project)]);
                self.shared.events.emit(
                    Kind::TaskDispatched,
                    &task,
                    format!("task {task} handed to {} on {} (attempt {attempt})", at.session, at.account),
                    json!({"project": at.project, "task": task, "session": at.session,
                           "account": at.account, "attempt": attempt}),
                );
                self.report(Report::Dispatched { session: at.session.clone(), task });
            }
            Err(error) => {
                log::warn!("{}: delivering {task} failed: {error}", at.session);
                self.give_back(&at.project, &task, attempt, &error.to_string());
                self.report(Report::DeliveryFailed { session: at.session.clone(), task, error });
            }
        }
        self.announce(&at.project);
    }

    /// An active task nobody works on: back to the inbox, or to failed/ once
    /// `max_attempts` are used.
    fn give_back(&mut self, project: &str, task: &str, attempts: u32, why: &str) {
        let Some(q) = self.queues.get(project) else { return };
        if attempts >= self.config.dispatch.max_attempts {
            let reason = format!("gave up after {attempts} attempts; last: {why}");
            match q.fail(task, &reason, attempts) {
                Ok(moved) => self.task_failed(project, &moved, &reason, attempts),
                Err(e) => log::error!("project {project}: cannot move {task} to failed/: {e}"),
            }
            return;
        }
        match q.requeue(task) {
            Ok(name) => {
                self.admit(project, &name, Instant::now());
            }
            Err(e) => log::error!("project {project}: cannot requeue {task}: {e}"),
        }
    }

    fn finish(&mut self, at: &SessionRef, task: &str) {
        let Some(q) = self.queues.get(&at.project) else { return };
        let lease = q.lease(task).ok().flatten();
        let cwd = self.config.project(&at.project).map(|p| p.path.clone()).unwrap_or_default();
        let result = TaskResult {
            session: at.session.clone(),
            account: at.account.clone(),
            attempts: lease.as_ref().map_or(1, |l| l.attempt),
            started_at: lease.as_ref().map_or_else(String::new, |l| l.dispatched_at.clone()),
            finished_at: crate::time::rfc3339(SystemTime::now()),
            last_assistant_message: last_assistant_text(
                &at.transcript(&cwd),
                self.answers_from.remove(&(at.project.clone(), task.to_string())).unwrap_or(0),
            ),
        };
        match q.finish(task, &result) {
            Ok(moved) => {
                self.shared
                    .metrics
                    .inc("claude_failover_tasks_finished_total", &[("project", &at.project), ("outcome", "done")]);
                self.shared.events.emit(
                    Kind::TaskDone,
                    &moved,
                    format!("task {moved} done by {} on {}", at.session, at.account),
                    json!({"project": at.project, "task": moved, "session": at.session,
                           "account": at.account, "attempts": result.attempts}),
                );
                self.report(Report::Finished { session: at.session.clone(), task: task.into() });
                self.counts(&at.project);
            }
            Err(e) => log::error!("project {}: cannot move {task} to done/: {e}", at.project),
        }
    }

    /// After a restart: a lease whose session's conversation holds the task's
    /// prompt is kept (the session is still on it); any other goes back to the
    /// inbox with the attempt counted, or to failed/.
    fn recover(&mut self, sessions: &[(String, Option<SessionRef>)]) {
        let running: HashMap<&str, &SessionRef> =
            sessions.iter().filter_map(|(name, at)| at.as_ref().map(|a| (name.as_str(), a))).collect();
        let projects: Vec<String> = self.queues.keys().cloned().collect();
        for project in projects {
            let Some(q) = self.queues.get(&project) else { continue };
            let leases = match q.leases() {
                Ok(l) => l,
                Err(e) => {
                    log::error!("project {project}: cannot read leases: {e}");
                    continue;
                }
            };
            let cwd = self.config.project(&project).map(|p| p.path.clone()).unwrap_or_default();
            // Where each lease's prompt would be, if it was delivered: the
            // conversation may have moved accounts since the lease was
            // written, so where it was then and where it is now.
            let mut looking: Vec<(&String, &Lease, String, Vec<PathBuf>)> = Vec::new();
            // A session not running now still has its conversation on disk:
            // a prompt found there was delivered, and is not sent again.
            for (name, lease) in &leases {
                let now_at = running.get(lease.session.as_str()).map(|at| at.transcript(&cwd));
                let then = self.config.account(&lease.account).map(|a| {
                    crate::claude::transcript_path(
                        &crate::claude::projects_dir(&a.config_dir),
                        &cwd,
                        lease.claude_session_id.as_deref().unwrap_or_default(),
                    )
                });
                let places = now_at.into_iter().chain(then).collect();
                looking.push((name, lease, q.active_body(name).unwrap_or_default(), places));
            }
            // Claude Code writes a prompt's record to the transcript a moment
            // after the prompt goes out: a daemon killed right after an Enter
            // must give the record time to land before calling the task
            // undelivered (and sending it again).
            let mut now = HashMap::new();
            let deadline = Instant::now() + TRANSCRIPT_GRACE;
            loop {
                looking.retain(|(name, lease, body, places)| {
                    let found = places.iter().any(|p| transcript_has_prompt(p, body));
                    if found {
                        now.insert(lease.session.clone(), queue::SessionNow::WorkingOn((*name).clone()));
                    }
                    !found
                });
                if looking.is_empty() || Instant::now() >= deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            for (name, verdict) in queue::recover(&leases, &now, self.config.dispatch.max_attempts) {
                let session = leases.iter().find(|(n, _)| *n == name).map(|(_, l)| l.session.clone());
                match verdict {
                    queue::Recovery::Keep | queue::Recovery::Done => {
                        log::info!("project {project}: {name} stays with {}", session.as_deref().unwrap_or("?"));
                        if let Some(session) = session {
                            let running = running.contains_key(session.as_str());
                            self.report(Report::Resumed { session, task: name, running });
                        }
                    }
                    queue::Recovery::Requeue { next_attempt } => {
                        log::info!("project {project}: {name} was not delivered before the restart; back to the inbox");
                        self.give_back(&project, &name, next_attempt - 1, "the daemon restarted before delivery")
                    }
                    queue::Recovery::Fail { attempts } => {
                        self.give_back(&project, &name, attempts, "the daemon restarted before delivery")
                    }
                }
            }
            self.announce(&project);
        }
        self.report(Report::Recovered);
    }

    /// `status.json` per project: its queue and its sessions, rewritten
    /// (atomically) when either changed.
    fn write_status_files(&mut self) {
        let status = self.shared.status.read().clone();
        for (project, q) in &self.queues {
            let sessions: Vec<_> = status.sessions.iter().filter(|s| &s.project == project).collect();
            let queue = status.queues.iter().find(|x| &x.project == project);
            let doc = json!({"project": project, "active_account": status.active_account,
                             "dispatch_paused": status.dispatch_paused, "queue": queue, "sessions": sessions});
            let text = doc.to_string();
            if self.last_status_json.get(project) == Some(&text) {
                continue;
            }
            let mut doc = doc;
            doc["updated_at"] = json!(crate::time::rfc3339(SystemTime::now()));
            match q.write_status(&doc) {
                Ok(()) => {
                    self.last_status_json.insert(project.clone(), text);
                }
                Err(e) => log::warn!("project {project}: cannot write status.json: {e}"),
            }
        }
    }
}

/// The last assistant text after `offset` (where the task's prompt went in).
fn last_assistant_text(transcript: &Path, offset: u64) -> Option<String> {
    let records = crate::claude::transcript::TranscriptReader::at(transcript, offset).read_new().ok()?;
    records.into_iter().rev().find_map(|r| match r.kind {
        crate::claude::transcript::RecordKind::AssistantText { text } => Some(text),
        _ => None,
    })
}

/// Whether the conversation holds a user turn with this task's text.
/// Compared with white space collapsed: Claude Code 2.1.332 records a pasted
/// tab as four spaces (and wraps the paste in `<pasted_content>`), so an exact
/// match would miss a delivered task and send it a second time.
fn transcript_has_prompt(transcript: &Path, body: &str) -> bool {
    let want = collapse_space(body);
    if want.is_empty() {
        return false;
    }
    let Ok(records) = crate::claude::transcript::TranscriptReader::new(transcript).read_new() else {
        return false;
    };
    records.iter().any(|r| match &r.kind {
        crate::claude::transcript::RecordKind::UserTurn { text } => collapse_space(text).contains(&want),
        _ => false,
    })
}

/// Every run of white space as one space, trimmed.
fn collapse_space(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prompt_is_found_through_pasted_content_and_tab_expansion() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("t.jsonl");
        let recorded = "\n\n<pasted_content id=\"ab12\">\nfix it:\n    a    b\n</pasted_content id=\"ab12\">\n";
        let line = json!({"type": "user", "message": {"role": "user", "content": recorded}});
        std::fs::write(&path, format!("{line}\n")).expect("write");
        assert!(transcript_has_prompt(&path, "fix it:\n\ta\tb\n"));
        assert!(!transcript_has_prompt(&path, "fix it:\n\ta\tc\n"));
        assert!(!transcript_has_prompt(&path, " \n"));
    }
}
