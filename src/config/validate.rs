//! Checks of values and of how they fit together (names unique, sessions
//! naming known projects, folders not shared), after serde built the config.
//! Token files are read here so their problems land beside the others.

use super::fields::quote_key;
use super::paths::{normalize, same_path};
use super::{Config, Listen, Secret, Tier, KIND_API_KEY, KIND_SUBSCRIPTION};
use std::path::{Component, Path, PathBuf};

impl Config {
    pub(super) fn read_secrets(&mut self, check: &mut Check) {
        if !self.http.token_file.is_empty() {
            self.http.token = read_secret(Path::new(&self.http.token_file), "http.token_file", check);
        }
        if !self.mcp.token_file.is_empty() {
            self.mcp.token = read_secret(Path::new(&self.mcp.token_file), "mcp.token_file", check);
        }
        if let Some(f) = &mut self.fleet {
            if f.host.is_empty() {
                f.host = super::types::hostname();
            }
            if !f.password_file.is_empty() {
                f.password = read_secret(Path::new(&f.password_file), "fleet.password_file", check);
            }
        }
        if let Some(t) = &mut self.notify.telegram {
            t.bot_token = read_secret(&t.bot_token_file, "notify.telegram.bot_token_file", check);
        }
        // Only checked here: the key is read again at each launch, so a
        // rotated key is used without a reload, and the config never holds it.
        for (i, a) in self.accounts.iter().enumerate() {
            if a.is_api_key() && !a.api_key_file.is_empty() {
                read_secret(Path::new(&a.api_key_file), &format!("accounts[{i}].api_key_file"), check);
            }
        }
    }

    pub(super) fn validate(&self, check: &mut Check) {
        if self.state_dir.as_os_str().is_empty() {
            check.add("state_dir", "must not be empty");
        }
        self.validate_claude(check);
        self.validate_numbers(check);

        if let Some(bad) = bad_socket_name(&self.tmux.socket_name) {
            check.add("tmux.socket_name", bad);
        }
        check_url(check, "quota.usage_url", &self.quota.usage_url);
        self.validate_http(check);
        self.validate_mcp(check);
        if !matches!(self.log.format.as_str(), "text" | "json") {
            check.add("log.format", format!("{:?}: expected \"text\" or \"json\"", self.log.format));
        }
        self.validate_fleet(check);
        if let Some(t) = &self.notify.telegram {
            if t.chat_id.trim().is_empty() {
                check.add("notify.telegram.chat_id", "must not be empty");
            }
            check_url(check, "notify.telegram.api_base", &t.api_base);
            for (i, chat) in t.chat_ids.iter().enumerate() {
                if chat.trim().is_empty() {
                    check.add(&format!("notify.telegram.chat_ids[{i}]"), "must not be empty");
                }
            }
            for (i, kind) in t.kinds.iter().flatten().enumerate() {
                if crate::events::Kind::parse(kind).is_none() {
                    let known: Vec<&str> = crate::events::Kind::ALL.iter().map(|k| k.as_str()).collect();
                    check.add(
                        &format!("notify.telegram.kinds[{i}]"),
                        format!("{kind:?} is not an event kind; one of: {}", known.join(", ")),
                    );
                }
            }
        }
        if let Some(w) = &self.notify.webhook {
            check_url(check, "notify.webhook.url", &w.url);
        }

        if self.accounts.is_empty() {
            check.add("accounts", "no accounts configured: add at least one [[accounts]] with name and config_dir");
        }
        let names: Vec<&str> = self.accounts.iter().map(|a| a.name.as_str()).collect();
        check_names(check, "accounts", &names);
        let names: Vec<&str> = self.projects.iter().map(|p| p.name.as_str()).collect();
        check_names(check, "projects", &names);
        let names: Vec<&str> = self.sessions.iter().map(|s| s.name.as_str()).collect();
        check_names(check, "sessions", &names);

        for (i, a) in self.accounts.iter().enumerate() {
            let key = format!("accounts[{i}].config_dir");
            if a.config_dir.as_os_str().is_empty() {
                check.add(&key, "must not be empty");
                continue;
            }
            if let Some(j) = self.accounts[..i].iter().position(|b| same_path(&b.config_dir, &a.config_dir)) {
                check.add(
                    &key,
                    format!(
                        "{} is also the config_dir of accounts[{j}] ({:?}): each account needs its own folder",
                        a.config_dir.display(),
                        self.accounts[j].name
                    ),
                );
            }
            // setup turns <config_dir>/projects into a symlink to the shared
            // tree; the tree cannot be that symlink itself.
            if same_path(&crate::claude::projects_dir(&a.config_dir), &self.claude.shared_projects_dir) {
                check.add(
                    "claude.shared_projects_dir",
                    format!(
                        "is {}, the projects/ folder of account {:?}: the shared tree must live \
                         outside every account (setup links each account's projects/ to it)",
                        self.claude.shared_projects_dir.display(),
                        a.name
                    ),
                );
            }
        }
        self.validate_api_keys(check);
        self.validate_projects(check);
        for (i, s) in self.sessions.iter().enumerate() {
            if self.project(&s.project).is_none() {
                let known: Vec<&str> = self.projects.iter().map(|p| p.name.as_str()).collect();
                let known = if known.is_empty() {
                    "no [[projects]] are configured".to_string()
                } else {
                    format!("configured projects: {}", known.join(", "))
                };
                check.add(&format!("sessions[{i}].project"), format!("unknown project {:?} ({known})", s.project));
            }
        }
    }

    fn validate_claude(&self, check: &mut Check) {
        let c = &self.claude;
        if c.binary.trim().is_empty() {
            check.add("claude.binary", "must not be empty");
        }
        if c.shared_projects_dir.as_os_str().is_empty() {
            check.add("claude.shared_projects_dir", "must not be empty");
        }
        for (i, arg) in c.args.iter().enumerate() {
            let key = format!("claude.args[{i}]");
            let flag = arg.split('=').next().unwrap_or(arg);
            if DAEMON_ARGS.contains(&flag) {
                check.add(&key, format!("{flag} is chosen by the daemon for every launch; remove it"));
            } else if arg.contains('\0') {
                check.add(&key, "must not contain a NUL character");
            }
        }
        for (name, value) in &c.env {
            let key = format!("claude.env.{}", quote_key(name));
            if !is_env_name(name) {
                check.add(
                    &key,
                    "not a valid environment variable name (letters, digits and '_', not starting with a digit)",
                );
            } else if DAEMON_ENV.contains(&name.as_str()) {
                check.add(&key, format!("{name} is controlled by the daemon (it selects the account); remove it"));
            } else if value.contains('\0') {
                check.add(&key, "value must not contain a NUL character");
            }
        }
    }

    fn validate_numbers(&self, check: &mut Check) {
        let nonzero: [(&str, u64); 10] = [
            ("claude.startup_timeout_secs", self.claude.startup_timeout_secs),
            ("claude.stop_timeout_secs", self.claude.stop_timeout_secs),
            ("tmux.width", self.tmux.width.into()),
            ("tmux.height", self.tmux.height.into()),
            ("quota.poll_interval_secs", self.quota.poll_interval_secs),
            ("quota.request_timeout_secs", self.quota.request_timeout_secs),
            ("dispatch.submit_confirm_secs", self.dispatch.submit_confirm_secs),
            ("dispatch.max_attempts", self.dispatch.max_attempts.into()),
            ("dispatch.max_task_bytes", self.dispatch.max_task_bytes),
            ("janitor.interval_secs", self.janitor.interval_secs),
        ];
        for (key, value) in nonzero {
            if value == 0 {
                check.add(key, "must be greater than 0");
            }
        }
        // tmux refuses windows this small to be useful and Claude Code's
        // prompt wraps into nonsense below it.
        if self.tmux.width != 0 && self.tmux.width < 40 {
            check.add("tmux.width", "must be at least 40 columns");
        }
        if self.tmux.height != 0 && self.tmux.height < 10 {
            check.add("tmux.height", "must be at least 10 rows");
        }
        let prefer = self.quota.prefer.as_str();
        if ![super::types::PREFER_PRIORITY, super::types::PREFER_RESETS_SOONEST].contains(&prefer) {
            check.add("quota.prefer", format!("must be \"priority\" or \"resets_soonest\", found {prefer:?}"));
        }
        for (key, value) in [
            ("quota.five_hour_threshold", self.quota.five_hour_threshold),
            ("quota.weekly_threshold", self.quota.weekly_threshold),
        ] {
            if !(0.0..=100.0).contains(&value) {
                check.add(key, format!("must be a percentage from 0 to 100, found {value}"));
            }
        }
    }

    fn validate_http(&self, check: &mut Check) {
        match Listen::parse(&self.http.listen) {
            Err(why) => check.add("http.listen", why),
            Ok(listen) => {
                if !listen.is_local() && self.http.token_file.is_empty() {
                    check.add(
                        "http.listen",
                        format!(
                            "{listen} is reachable from other machines and http.token_file is empty: \
                             that would open the control plane to the network without auth; \
                             set http.token_file or listen on 127.0.0.1, ::1 or unix:/path"
                        ),
                    );
                }
            }
        }
        for (i, host) in self.http.allowed_hosts.iter().enumerate() {
            let bad = host.is_empty()
                || host.contains(|c: char| c.is_whitespace() || c.is_control() || "/@?#,".contains(c))
                || (host.contains(':') && !host.starts_with('['));
            if bad {
                check.add(
                    &format!("http.allowed_hosts[{i}]"),
                    format!(
                        "{host:?} is not a host name: give the name (or address) as a browser's Host header                          carries it, without scheme, port or path, e.g. \"failover.example.org\""
                    ),
                );
            }
        }
    }

    fn validate_fleet(&self, check: &mut Check) {
        let Some(f) = &self.fleet else { return };
        if f.endpoints.is_empty() {
            check.add("fleet.endpoints", "must name at least one etcd client URL, e.g. \"http://10.0.0.1:2379\"");
        }
        for (i, url) in f.endpoints.iter().enumerate() {
            check_url(check, &format!("fleet.endpoints[{i}]"), url);
        }
        let prefix = f.prefix.as_str();
        if !prefix.starts_with('/') || !prefix.ends_with('/') || prefix.len() < 2 {
            check.add(
                "fleet.prefix",
                format!("must start and end with '/' and name something, e.g. \"/claude-failover/\"; found {prefix:?}"),
            );
        } else if prefix.chars().any(|c| c.is_control() || c.is_whitespace()) {
            check.add("fleet.prefix", format!("must not contain spaces or control characters, found {prefix:?}"));
        }
        if f.host.is_empty() {
            check.add("fleet.host", "is empty and the machine's hostname could not be read: name this host");
        } else if let Some(bad) = bad_name(&f.host) {
            check.add("fleet.host", bad);
        }
        if f.lease_ttl_secs < 2 || f.lease_ttl_secs > 3600 {
            check.add(
                "fleet.lease_ttl_secs",
                format!(
                    "must be from 2 to 3600 seconds (etcd's shortest lease is about 2 s), found {}",
                    f.lease_ttl_secs
                ),
            );
        }
        if super::types::FleetPolicy::parse(&f.policy).is_none() {
            check.add("fleet.policy", format!("must be \"shared\" or \"exclusive\", found {:?}", f.policy));
        }
        match (f.username.is_empty(), f.password_file.is_empty()) {
            (false, true) => {
                check.add("fleet.password_file", format!("must be set with fleet.username ({:?})", f.username))
            }
            (true, false) => check.add("fleet.username", "must be set with fleet.password_file"),
            _ => {}
        }
        if f.cert_file.is_empty() != f.key_file.is_empty() {
            let (missing, given) =
                if f.cert_file.is_empty() { ("cert_file", "key_file") } else { ("key_file", "cert_file") };
            check.add(&format!("fleet.{missing}"), format!("must be set with fleet.{given}"));
        }
        if f.tls() {
            for (i, url) in f.endpoints.iter().enumerate() {
                if !url.starts_with("https://") {
                    check.add(
                        &format!("fleet.endpoints[{i}]"),
                        format!("{url:?} is not https:// while fleet.ca_file, cert_file or key_file is set"),
                    );
                }
            }
            if let Err((key, why)) = super::tls::fleet_tls(f) {
                check.add(&format!("fleet.{key}"), why);
            }
        }
    }

    fn validate_mcp(&self, check: &mut Check) {
        for (i, name) in self.mcp.allow.iter().enumerate() {
            if Tier::parse(name).is_none() {
                let known: Vec<&str> = Tier::ALL.iter().map(|t| t.as_str()).collect();
                check.add(&format!("mcp.allow[{i}]"), format!("unknown tier {name:?} (tiers: {})", known.join(", ")));
            }
        }
        if let (Some(mcp), Some(http)) = (&self.mcp.token, &self.http.token) {
            if mcp.matches(http.expose()) {
                check.add(
                    "mcp.token_file",
                    "holds the same token as http.token_file: the MCP server would have every tier; \
                     give it a token of its own",
                );
            }
        }
    }

    /// `kind`, the keys only `api_key` accounts take, and the price table
    /// their spend is counted with.
    fn validate_api_keys(&self, check: &mut Check) {
        let mut paid = None;
        for (i, a) in self.accounts.iter().enumerate() {
            let key = |k: &str| format!("accounts[{i}].{k}");
            match a.kind.as_str() {
                KIND_SUBSCRIPTION => {
                    if !a.api_key_file.is_empty() {
                        check.add(&key("api_key_file"), "only an account with kind = \"api_key\" takes a key file");
                    }
                    if a.max_spend_usd_per_day.is_some() {
                        check.add(
                            &key("max_spend_usd_per_day"),
                            "only an account with kind = \"api_key\" has a spend cap",
                        );
                    }
                    continue;
                }
                KIND_API_KEY => {}
                other => {
                    check.add(&key("kind"), format!("must be \"subscription\" or \"api_key\", found {other:?}"));
                    continue;
                }
            }
            paid.get_or_insert((i, a.name.clone()));
            if a.api_key_file.is_empty() {
                check.add(
                    &key("api_key_file"),
                    "missing: an api_key account needs the file holding its key (one line, e.g. sk-ant-api03-...)",
                );
            }
            match a.max_spend_usd_per_day {
                None => check.add(
                    &key("max_spend_usd_per_day"),
                    "missing: an api_key account needs a daily spend cap in USD (e.g. 20.0); \
                     without one a night of failover could spend without bound",
                ),
                Some(cap) if !cap.is_finite() || cap <= 0.0 => {
                    check.add(&key("max_spend_usd_per_day"), format!("must be a positive amount of USD, found {cap}"))
                }
                Some(_) => {}
            }
        }
        if let (Some((i, name)), true) = (&paid, self.quota.prices.is_empty()) {
            check.add(
                "quota.prices",
                format!(
                    "accounts[{i}] ({name:?}) is an api_key account, whose spend is priced per model, and no \
                     [quota.prices.\"<model>\"] table is configured; add one for each model its sessions use \
                     (input, output, cache_write, cache_read in USD per million tokens)"
                ),
            );
        }
        for (model, price) in &self.quota.prices {
            let key = format!("quota.prices.{}", quote_key(model));
            if !is_model_id(model) {
                check.add(
                    &key,
                    format!(
                        "{model:?} is not a Claude model id: the table is looked up by the model the API \
                         answers with, e.g. \"claude-opus-4-1\" or \"claude-sonnet-4-5\""
                    ),
                );
            }
            for (field, value) in [
                ("input", price.input),
                ("output", price.output),
                ("cache_write", price.cache_write),
                ("cache_read", price.cache_read),
            ] {
                if !value.is_finite() || value < 0.0 {
                    check.add(
                        &format!("{key}.{field}"),
                        format!("must be a price of 0 or more (USD per million tokens), found {value}"),
                    );
                }
            }
        }
    }

    fn validate_projects(&self, check: &mut Check) {
        let mut roots: Vec<(usize, PathBuf)> = Vec::new();
        for (i, p) in self.projects.iter().enumerate() {
            if p.path.as_os_str().is_empty() {
                check.add(&format!("projects[{i}].path"), "must not be empty");
                continue;
            }
            let key = format!("projects[{i}].queue_dir");
            if let Some(why) = bad_queue_dir(&p.queue_dir) {
                check.add(&key, why);
                continue;
            }
            let root = normalize(&p.queue_root());
            if let Some((j, _)) = roots.iter().find(|(_, r)| *r == root) {
                check.add(
                    &key,
                    format!(
                        "queue folder {} is also the queue of projects[{j}] ({:?}): each project needs its own",
                        root.display(),
                        self.projects[*j].name
                    ),
                );
            }
            roots.push((i, root));
        }
    }
}

/// Flags the daemon passes itself; a second copy from `claude.args` would
/// start the wrong conversation or none.
const DAEMON_ARGS: &[&str] = &["--resume", "-r", "--continue", "-c", "--session-id", "--print", "-p", "--fork-session"];

/// Variables that pick the account: setting them would bypass failover.
const DAEMON_ENV: &[&str] =
    &["ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN", "CLAUDE_CONFIG_DIR"];

#[derive(Default)]
pub(super) struct Check(pub(super) Vec<(String, String)>);

impl Check {
    fn add(&mut self, key: &str, message: impl Into<String>) {
        self.0.push((key.to_string(), message.into()));
    }
}

/// Reads a token; problems name the key and the path, never the content.
fn read_secret(path: &Path, key: &str, check: &mut Check) -> Option<Secret> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            check.add(key, format!("cannot read {}: {e}", path.display()));
            return None;
        }
    };
    let Ok(text) = String::from_utf8(bytes) else {
        check.add(key, format!("{} is not UTF-8 text", path.display()));
        return None;
    };
    let token = text.trim();
    if token.is_empty() {
        check.add(key, format!("{} is empty", path.display()));
        return None;
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        check.add(key, format!("{} holds more than one line or word; it must hold only the token", path.display()));
        return None;
    }
    Some(Secret::new(token.to_string()))
}

fn check_names(check: &mut Check, list: &str, names: &[&str]) {
    for (i, name) in names.iter().enumerate() {
        let key = format!("{list}[{i}].name");
        if let Some(why) = bad_name(name) {
            check.add(&key, why);
        } else if let Some(j) = names[..i].iter().position(|n| n == name) {
            check.add(&key, format!("duplicate name {name:?} (also {list}[{j}])"));
        }
    }
}

/// Names become tmux session names and file names: keep them plain.
fn bad_name(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("must not be empty".into());
    }
    if name.chars().count() > 64 {
        return Some(format!("{name:?} is longer than 64 characters"));
    }
    if name.starts_with('-') {
        return Some(format!("{name:?} must not start with '-' (tools would read it as an option)"));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_alphanumeric() || *c == '-' || *c == '_')) {
        return Some(format!(
            "{name:?} contains {c:?}: use only letters, digits, '-' and '_' \
             (it is used as a tmux session name and a file name)"
        ));
    }
    None
}

fn bad_socket_name(name: &str) -> Option<String> {
    if name.chars().any(|c| c == '/' || c.is_whitespace() || c.is_control()) {
        return Some(format!(
            "{name:?} must be a plain name (tmux -L NAME), without '/', spaces or control characters"
        ));
    }
    None
}

fn bad_queue_dir(dir: &Path) -> Option<String> {
    if dir.is_absolute() {
        return Some(format!("{} is absolute: queue_dir is relative to the project's path", dir.display()));
    }
    if dir.components().any(|c| matches!(c, Component::ParentDir)) {
        return Some(format!("{} leaves the project folder: '..' is not allowed in queue_dir", dir.display()));
    }
    if !dir.components().any(|c| matches!(c, Component::Normal(_))) {
        return Some("must name a folder inside the project, e.g. \".agent-queue\"".into());
    }
    None
}

fn check_url(check: &mut Check, key: &str, url: &str) {
    let why = match ureq::http::Uri::try_from(url) {
        Err(_) => Some(format!("{url:?} is not a URL")),
        Ok(uri) => match (uri.scheme_str(), uri.host()) {
            (Some("http") | Some("https"), Some(h)) if !h.is_empty() => None,
            (Some("http") | Some("https"), _) => Some(format!("{url:?} has no host")),
            _ => Some(format!("{url:?} must start with http:// or https://")),
        },
    };
    if let Some(why) = why {
        check.add(key, why);
    }
}

/// A model id as the API names it in `message.model`: `claude-` and then
/// lowercase letters, digits, '-', '.' or '_'.
fn is_model_id(model: &str) -> bool {
    model.strip_prefix("claude-").is_some_and(|rest| {
        !rest.is_empty() && rest.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-._".contains(c))
    })
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_plain() {
        assert!(bad_name("ccl-auto_11").is_none());
        for bad in ["", "a.b", "a:b", "a/b", "a b", "a\tb", "-x", "a\u{7}"] {
            assert!(bad_name(bad).is_some(), "{bad:?}");
        }
    }
}
