//! The configuration file as an operator writes it: the shipped example, every
//! validation rule (key and message), path resolution, and that secrets never
//! leak into errors or Debug output.

use claude_failover::config::{config_path, Config, ConfigError, Listen, DEFAULT_PATH};
use kit::{repo_root, temp_dir, write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A valid file with relative paths; tests prepend sections or replace lines.
const BASE: &str = r#"
[[accounts]]
name = "alpha"
config_dir = "accounts/alpha"

[[accounts]]
name = "beta"
config_dir = "accounts/beta"

[[projects]]
name = "web"
path = "srv/web"

[[sessions]]
name = "web-1"
project = "web"
"#;

struct Loaded {
    dir: tempfile::TempDir,
    result: Result<Config, ConfigError>,
}

impl Loaded {
    fn ok(self) -> Config {
        match self.result {
            Ok(c) => c,
            Err(e) => panic!("expected a valid config, got:\n{e}"),
        }
    }

    fn err(self) -> ConfigError {
        match self.result {
            Ok(c) => panic!("expected problems, the config loaded: {c:?}"),
            Err(e) => e,
        }
    }
}

fn load_in(dir: tempfile::TempDir, text: &str) -> Loaded {
    let path = dir.path().join("config.toml");
    write(&path, text);
    let result = Config::load(&path);
    Loaded { dir, result }
}

fn load(text: &str) -> Loaded {
    load_in(temp_dir(), text)
}

/// `head` goes before BASE so plain `[section]` tables stay top-level.
fn with(head: &str) -> Loaded {
    load(&format!("{head}\n{BASE}"))
}

/// Asserts there is a problem at `key` whose message contains `needle`.
#[track_caller]
fn has(err: &ConfigError, key: &str, needle: &str) {
    let found = err.problems.iter().any(|p| p.key == key && p.message.contains(needle));
    assert!(found, "no problem at {key:?} mentioning {needle:?}; problems were:\n{err}");
}

#[track_caller]
fn only(err: &ConfigError, key: &str, needle: &str) {
    has(err, key, needle);
    assert_eq!(err.problems.len(), 1, "expected one problem:\n{err}");
}

/// `s` as a TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out + "\""
}

// ---- the shipped example ----

#[test]
fn the_example_validates_and_says_what_it_shows() {
    let path = repo_root().join("etc/config.example.toml");
    let c = Config::load(&path).unwrap_or_else(|e| panic!("example invalid:\n{e}"));
    assert_eq!(c.source, path);
    let names: Vec<&str> = c.accounts.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["alpha", "beta"]);
    assert_eq!(c.projects.len(), 1);
    assert_eq!(c.sessions.len(), 2);
    assert!(c.sessions[0].dispatch);
    assert!(!c.sessions[1].dispatch);
    assert!(c.notify.telegram.is_none() && c.notify.webhook.is_none());
    assert!(c.http.token.is_none());
    assert_eq!(c.project("secumon").unwrap().queue_root(), Path::new("/srv/secumon/.agent-queue"));
}

#[test]
fn the_example_states_every_default() {
    let example = Config::load(&repo_root().join("etc/config.example.toml")).unwrap();
    let minimal = with("").ok();
    // Debug of each section compares every field at once.
    for (a, b) in [
        (format!("{:?}", example.claude), format!("{:?}", minimal.claude)),
        (format!("{:?}", example.tmux), format!("{:?}", minimal.tmux)),
        (format!("{:?}", example.quota), format!("{:?}", minimal.quota)),
        (format!("{:?}", example.dispatch), format!("{:?}", minimal.dispatch)),
        (format!("{:?}", example.janitor), format!("{:?}", minimal.janitor)),
        (format!("{:?}", example.http), format!("{:?}", minimal.http)),
        (format!("{:?}", example.notify), format!("{:?}", minimal.notify)),
        (format!("{:?}", example.state_dir), format!("{:?}", minimal.state_dir)),
    ] {
        assert_eq!(a, b);
    }
}

#[test]
fn defaults_fill_what_is_left_out() {
    let c = with("").ok();
    assert_eq!(c.state_dir, Path::new("/var/lib/claude-failover"));
    assert_eq!(c.claude.binary, "claude");
    assert_eq!(c.quota.five_hour_threshold, 90.0);
    assert_eq!(c.quota.poll_interval(), Duration::from_secs(180));
    assert_eq!(c.dispatch.max_task_bytes, 262_144);
    assert_eq!(c.janitor.archive_done_after(), Duration::from_secs(604_800));
    assert_eq!(c.notify.min_interval(), Duration::from_secs(30));
    assert_eq!(c.http.listen_addr(), Listen::Tcp("127.0.0.1:8787".parse().unwrap()));
    assert_eq!(c.projects[0].queue_dir, Path::new(".agent-queue"));
    assert!(c.sessions[0].dispatch);
    assert_eq!(c.session("web-1").unwrap().project, "web");
    assert_eq!(c.account("beta").unwrap().name, "beta");
    assert!(c.session("nope").is_none() && c.account("nope").is_none());
}

// ---- reading and syntax ----

#[test]
fn a_missing_file_is_one_problem() {
    let dir = temp_dir();
    let err = Config::load(&dir.path().join("nope.toml")).unwrap_err();
    only(&err, "(file)", "cannot read");
}

#[test]
fn syntax_errors_give_line_and_column() {
    let err = load("[quota]\npoll_interval_secs = 5\nweekly_threshold = = 3\n").err();
    only(&err, "(syntax)", "line 3, column");
    let err = load("state_dir = \"/x\"\nstate_dir = \"/y\"\n").err();
    only(&err, "(syntax)", "line 2");
}

#[test]
fn type_errors_name_the_key() {
    let err = with("[quota]\npoll_interval_secs = \"180\"\nfailback = 1\n").err();
    has(&err, "quota.poll_interval_secs", "expected a whole number, found a string");
    has(&err, "quota.failback", "expected true or false");
    assert_eq!(err.problems.len(), 2, "{err}");

    let err = with("[tmux]\nwidth = 70000\n[dispatch]\nmax_attempts = -1\n").err();
    has(&err, "tmux.width", "from 0 to 65535, found 70000");
    has(&err, "dispatch.max_attempts", "found -1");

    let err = with("[claude]\nargs = [\"--x\", 3]\nenv = { A = 1 }\n").err();
    has(&err, "claude.args[1]", "expected a string");
    has(&err, "claude.env.A", "expected a string");

    let err = with("claude = 3\n").err();
    only(&err, "claude", "expected a table");
}

#[test]
fn integers_are_accepted_as_percentages() {
    let c = with("[quota]\nfive_hour_threshold = 80\nweekly_threshold = 0\n").ok();
    assert_eq!(c.quota.five_hour_threshold, 80.0);
    assert_eq!(c.quota.weekly_threshold, 0.0);
}

// ---- unknown keys ----

#[test]
fn unknown_keys_are_reported_with_a_hint() {
    let err = with("[quota]\nfive_hour_treshold = 80\npoll_interval = 60\nbanana = 1\n").err();
    has(&err, "quota.five_hour_treshold", "did you mean \"five_hour_threshold\"");
    has(&err, "quota.poll_interval", "did you mean \"poll_interval_secs\"");
    has(&err, "quota.banana", "unknown key");
    assert_eq!(err.problems.len(), 3, "{err}");
}

#[test]
fn a_key_in_the_wrong_section_says_where_it_belongs() {
    let err = with("poll_interval_secs = 60\n[http]\nchat_id = \"1\"\n").err();
    has(&err, "poll_interval_secs", "belongs in [quota]");
    has(&err, "http.chat_id", "belongs in [notify.telegram]");
}

#[test]
fn unknown_sections_and_entry_keys_are_reported() {
    let err =
        load(&format!("[qouta]\nx = 1\n{BASE}\n[[sessions]]\nname = \"s2\"\nproject = \"web\"\ndispatc = false\n"))
            .err();
    has(&err, "qouta", "did you mean \"quota\"");
    has(&err, "sessions[1].dispatc", "did you mean \"dispatch\"");
    assert_eq!(err.problems.len(), 2, "{err}");
}

#[test]
fn a_single_table_where_a_list_belongs_says_so() {
    let err = load("[accounts]\nname = \"a\"\nconfig_dir = \"/a\"\n").err();
    has(&err, "accounts", "write [[accounts]], not [accounts]");
}

#[test]
fn missing_required_keys_are_named() {
    let err = load("[[accounts]]\nname = \"a\"\n[[projects]]\npath = \"/p\"\n[[sessions]]\nname = \"s\"\n").err();
    has(&err, "accounts[0].config_dir", "required");
    has(&err, "projects[0].name", "required");
    has(&err, "sessions[0].project", "required");
    // The placeholders behind those problems raise no second complaint.
    assert_eq!(err.problems.len(), 3, "{err}");
}

// ---- validation rules ----

#[test]
fn no_accounts_is_refused() {
    let err = load("[[projects]]\nname = \"p\"\npath = \"/p\"\n").err();
    only(&err, "accounts", "no accounts");
}

#[test]
fn duplicate_names_are_refused() {
    let text = BASE.replace("name = \"beta\"", "name = \"alpha\"")
        + "[[projects]]\nname = \"web\"\npath = \"/other\"\n"
        + "[[sessions]]\nname = \"web-1\"\nproject = \"web\"\n";
    let err = load(&text).err();
    has(&err, "accounts[1].name", "duplicate name \"alpha\" (also accounts[0])");
    has(&err, "projects[1].name", "duplicate name \"web\" (also projects[0])");
    has(&err, "sessions[1].name", "duplicate name \"web-1\" (also sessions[0])");
    assert_eq!(err.problems.len(), 3, "{err}");
}

#[test]
fn two_accounts_sharing_a_config_dir_are_refused() {
    let text = BASE.replace("accounts/beta", "accounts/./alpha");
    only(&load(&text).err(), "accounts[1].config_dir", "also the config_dir of accounts[0]");
}

#[test]
fn a_session_naming_an_unknown_project_is_refused() {
    let text = BASE.replace("project = \"web\"", "project = \"wbe\"");
    only(&load(&text).err(), "sessions[0].project", "unknown project \"wbe\" (configured projects: web)");
}

#[test]
fn thresholds_must_be_percentages() {
    for (value, shown) in [("100.5", "100.5"), ("-1", "-1"), ("nan", "NaN"), ("inf", "inf")] {
        let err = with(&format!("[quota]\nfive_hour_threshold = {value}\nweekly_threshold = {value}\n")).err();
        has(&err, "quota.five_hour_threshold", &format!("from 0 to 100, found {shown}"));
        has(&err, "quota.weekly_threshold", "from 0 to 100");
        assert_eq!(err.problems.len(), 2, "{err}");
    }
    with("[quota]\nfive_hour_threshold = 100.0\nweekly_threshold = 0.0\n").ok();
}

#[test]
fn zero_is_refused_where_it_makes_no_sense() {
    for (section, key) in [
        ("claude", "startup_timeout_secs"),
        ("claude", "stop_timeout_secs"),
        ("tmux", "width"),
        ("tmux", "height"),
        ("quota", "poll_interval_secs"),
        ("quota", "request_timeout_secs"),
        ("dispatch", "submit_confirm_secs"),
        ("dispatch", "max_attempts"),
        ("dispatch", "max_task_bytes"),
        ("janitor", "interval_secs"),
    ] {
        let err = with(&format!("[{section}]\n{key} = 0\n")).err();
        only(&err, &format!("{section}.{key}"), "must be greater than 0");
    }
    // Zero is meaningful here: no dwell, no throttle, archive at once.
    with("[quota]\nmin_dwell_secs = 0\n[dispatch]\nsettle_secs = 0\n[janitor]\narchive_done_after_secs = 0\n[notify]\nmin_interval_secs = 0\n").ok();
}

#[test]
fn a_tiny_window_is_refused() {
    let err = with("[tmux]\nwidth = 20\nheight = 5\n").err();
    has(&err, "tmux.width", "at least 40");
    has(&err, "tmux.height", "at least 10");
}

#[test]
fn names_must_work_as_tmux_session_and_file_names() {
    for bad in ["", "a.b", "a:b", "a/b", "a b", "tab\there", "bell\u{7}", "-flag", "dollar$"] {
        let quoted = toml_string(bad);
        let text = BASE
            .replace("name = \"web-1\"", &format!("name = {quoted}"))
            .replace("name = \"beta\"", &format!("name = {quoted}"))
            .replace("name = \"web\"", &format!("name = {quoted}"))
            .replace("project = \"web\"", &format!("project = {quoted}"));
        let err = load(&text).err();
        for key in ["accounts[1].name", "projects[0].name", "sessions[0].name"] {
            let problem = err.problem(key).unwrap_or_else(|| panic!("{bad:?}: nothing at {key}:\n{err}"));
            assert!(
                problem.message.contains("empty")
                    || problem.message.contains("letters, digits")
                    || problem.message.contains("start with '-'"),
                "{bad:?}: {problem}"
            );
        }
        assert_eq!(err.problems.len(), 3, "{bad:?}:\n{err}");
    }
    let long = "x".repeat(65);
    let err = load(&BASE.replace("name = \"web-1\"", &format!("name = \"{long}\""))).err();
    only(&err, "sessions[0].name", "longer than 64");
    load(&BASE.replace("name = \"web-1\"", "name = \"Ünï_cödé-2\"")).ok();
}

#[test]
fn tmux_socket_names_are_plain() {
    only(&with("[tmux]\nsocket_name = \"a/b\"\n").err(), "tmux.socket_name", "plain name");
    with("[tmux]\nsocket_name = \"cf-test\"\n").ok();
}

#[test]
fn urls_must_be_http() {
    let err = with(
        "[quota]\nusage_url = \"ftp://example.com/usage\"\n\
         [notify.telegram]\nchat_id = \"1\"\nbot_token_file = \"tg\"\napi_base = \"https://\"\n\
         [notify.webhook]\nurl = \"not a url\"\n",
    );
    write(&err.dir.path().join("tg"), "123:abc\n");
    let err = Config::load(&err.dir.path().join("config.toml")).unwrap_err();
    has(&err, "quota.usage_url", "must start with http:// or https://");
    has(&err, "notify.telegram.api_base", "\"https://\"");
    has(&err, "notify.webhook.url", "not a URL");
    assert_eq!(err.problems.len(), 3, "{err}");
}

#[test]
fn telegram_needs_a_chat_and_a_readable_token() {
    let err = with("[notify.telegram]\nchat_id = \" \"\nbot_token_file = \"missing-token\"\n").err();
    has(&err, "notify.telegram.chat_id", "must not be empty");
    has(&err, "notify.telegram.bot_token_file", "missing-token");
    assert_eq!(err.problems.len(), 2, "{err}");

    let err = with("[notify.telegram]\nbot_token_file = \"/dev/null\"\n").err();
    has(&err, "notify.telegram.chat_id", "required");
    has(&err, "notify.telegram.bot_token_file", "/dev/null is empty");

    only(&with("[notify.webhook]\n").err(), "notify.webhook.url", "required");
}

#[test]
fn the_telegram_token_is_read_and_trimmed() {
    let dir = temp_dir();
    write(&dir.path().join("secrets/tg"), "123:abc\n");
    let c =
        load_in(dir, &format!("[notify.telegram]\nchat_id = \"-100\"\nbot_token_file = \"secrets/tg\"\n{BASE}")).ok();
    let t = c.notify.telegram.as_ref().unwrap();
    assert_eq!(t.bot_token.as_ref().unwrap().expose(), "123:abc");
    assert_eq!(t.api_base, "https://api.telegram.org");
    assert!(t.bot_token_file.is_absolute());
}

#[test]
fn claude_env_keys_must_be_names_the_daemon_does_not_own() {
    let err = with(
        "[claude.env]\nANTHROPIC_API_KEY = \"x\"\nANTHROPIC_AUTH_TOKEN = \"x\"\n\
         CLAUDE_CODE_OAUTH_TOKEN = \"x\"\nCLAUDE_CONFIG_DIR = \"x\"\n\"1BAD\" = \"x\"\n\"A-B\" = \"x\"\n\
         ANTHROPIC_BASE_URL = \"http://127.0.0.1:1\"\n",
    )
    .err();
    for key in ["ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN", "CLAUDE_CONFIG_DIR"] {
        has(&err, &format!("claude.env.{key}"), "controlled by the daemon");
    }
    has(&err, "claude.env.1BAD", "not a valid environment variable name");
    has(&err, "claude.env.A-B", "not a valid environment variable name");
    assert_eq!(err.problems.len(), 6, "{err}");
}

#[test]
fn claude_args_the_daemon_chooses_are_refused() {
    let err = with("[claude]\nargs = [\"--model\", \"opus\", \"--resume=abc\", \"-c\"]\n").err();
    has(&err, "claude.args[2]", "--resume is chosen by the daemon");
    has(&err, "claude.args[3]", "-c is chosen by the daemon");
    assert_eq!(err.problems.len(), 2, "{err}");
}

#[test]
fn queue_dir_stays_inside_its_project() {
    for (dir, needle) in [
        ("/abs/queue", "is absolute"),
        ("../queue", "'..' is not allowed"),
        ("q/../../x", "'..' is not allowed"),
        ("", "must name a folder"),
        (".", "must name a folder"),
    ] {
        let text = BASE.replace("path = \"srv/web\"", &format!("path = \"srv/web\"\nqueue_dir = {dir:?}"));
        only(&load(&text).err(), "projects[0].queue_dir", needle);
    }
}

#[test]
fn two_projects_sharing_a_queue_are_refused() {
    let text = format!("{BASE}\n[[projects]]\nname = \"web2\"\npath = \"srv/./web/\"\n");
    only(&load(&text).err(), "projects[1].queue_dir", "also the queue of projects[0] (\"web\")");
    // The same folder with different queues is fine.
    let text = format!("{BASE}\n[[projects]]\nname = \"web2\"\npath = \"srv/web\"\nqueue_dir = \"queue-2\"\n");
    load(&text).ok();
}

#[test]
fn the_shared_tree_cannot_be_an_accounts_own_projects_folder() {
    let err = with("[claude]\nshared_projects_dir = \"accounts/beta/projects\"\n").err();
    only(&err, "claude.shared_projects_dir", "the projects/ folder of account \"beta\"");
}

// ---- the control plane ----

#[test]
fn listen_must_parse() {
    for bad in ["localhost:8787", "127.0.0.1", "unix:relative.sock", ""] {
        let err = with(&format!("[http]\nlisten = {bad:?}\n")).err();
        only(&err, "http.listen", "");
        let msg = &err.problems[0].message;
        assert!(msg.contains("not an address") || msg.contains("absolute path"), "{bad}: {msg}");
    }
}

#[test]
fn loopback_and_unix_sockets_need_no_token() {
    for (listen, want) in [
        ("127.0.0.1:9000", Listen::Tcp("127.0.0.1:9000".parse().unwrap())),
        ("127.5.0.1:9000", Listen::Tcp("127.5.0.1:9000".parse().unwrap())),
        ("[::1]:9000", Listen::Tcp("[::1]:9000".parse().unwrap())),
        ("unix:/run/cf/control.sock", Listen::Unix(PathBuf::from("/run/cf/control.sock"))),
    ] {
        let c = with(&format!("[http]\nlisten = {listen:?}\n")).ok();
        assert_eq!(c.http.listen_addr(), want);
    }
}

#[test]
fn a_network_address_without_a_token_is_refused() {
    for listen in ["0.0.0.0:8787", "[::]:8787", "192.168.1.10:8787"] {
        let err = with(&format!("[http]\nlisten = {listen:?}\n")).err();
        only(&err, "http.listen", "would open the control plane to the network without auth");
    }
}

#[test]
fn a_network_address_with_a_token_is_accepted() {
    let dir = temp_dir();
    write(&dir.path().join("http-token"), "tok-123\r\n");
    let c = load_in(dir, &format!("[http]\nlisten = \"0.0.0.0:8787\"\ntoken_file = \"http-token\"\n{BASE}")).ok();
    assert_eq!(c.http.token.as_ref().unwrap().expose(), "tok-123");
    assert!(Path::new(&c.http.token_file).is_absolute());
}

#[test]
fn token_files_must_be_readable_and_hold_one_token() {
    let err = with("[http]\ntoken_file = \"no-such-token\"\n").err();
    only(&err, "http.token_file", "cannot read");
    assert!(err.problems[0].message.contains("no-such-token"));

    let dir = temp_dir();
    write(&dir.path().join("empty"), "\n");
    let err = load_in(dir, &format!("[http]\ntoken_file = \"empty\"\n{BASE}")).err();
    only(&err, "http.token_file", "is empty");

    let dir = temp_dir();
    write(&dir.path().join("two"), "one\ntwo\n");
    let err = load_in(dir, &format!("[http]\ntoken_file = \"two\"\n{BASE}")).err();
    only(&err, "http.token_file", "must hold only the token");

    // A folder is not a token file.
    let err = with("[http]\ntoken_file = \".\"\n").err();
    only(&err, "http.token_file", "cannot read");
}

// ---- all at once ----

#[test]
fn every_problem_in_a_file_is_reported_together() {
    let text = r#"
state_dir = 3
[quota]
five_hour_threshold = 150
pol_interval_secs = 60
[http]
listen = "0.0.0.0:80"
[dispatch]
max_attempts = 0
[[accounts]]
name = "a"
config_dir = "/a"
[[accounts]]
name = "a"
config_dir = "/b"
colour = "red"
[[projects]]
name = "p"
path = "/p"
[[sessions]]
name = "s.1"
project = "q"
"#;
    let err = load(text).err();
    has(&err, "state_dir", "expected a string");
    has(&err, "quota.five_hour_threshold", "from 0 to 100");
    has(&err, "quota.pol_interval_secs", "did you mean \"poll_interval_secs\"");
    has(&err, "http.listen", "without auth");
    has(&err, "dispatch.max_attempts", "greater than 0");
    has(&err, "accounts[1].name", "duplicate");
    has(&err, "accounts[1].colour", "unknown key");
    has(&err, "sessions[0].name", "letters, digits");
    has(&err, "sessions[0].project", "unknown project \"q\"");
    assert_eq!(err.problems.len(), 9, "{err}");
    // Display lists each on its own line, naming the file.
    let shown = err.to_string();
    assert_eq!(shown.lines().count(), 9);
    for line in shown.lines() {
        assert!(line.contains("config.toml: "), "{line}");
    }
}

// ---- paths ----

#[test]
fn relative_paths_resolve_against_the_config_folder() {
    let dir = temp_dir();
    write(&dir.path().join("etc/tok"), "t\n");
    write(&dir.path().join("etc/tg"), "b\n");
    let text = format!(
        "state_dir = \"state\"\n\
         [claude]\nbinary = \"./bin/claude\"\nshared_projects_dir = \"../shared\"\n\
         [http]\ntoken_file = \"tok\"\n\
         [notify.telegram]\nchat_id = \"1\"\nbot_token_file = \"./tg\"\n{BASE}"
    );
    let path = dir.path().join("etc/config.toml");
    write(&path, &text);
    let c = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let etc = dir.path().join("etc");
    assert_eq!(c.source, etc.join("config.toml"));
    assert_eq!(c.state_dir, etc.join("state"));
    assert_eq!(c.claude.binary, etc.join("bin/claude").to_str().unwrap());
    assert_eq!(c.claude.shared_projects_dir, etc.join("../shared"));
    assert_eq!(c.http.token_file, etc.join("tok").to_str().unwrap());
    assert_eq!(c.notify.telegram.as_ref().unwrap().bot_token_file, etc.join("tg"));
    assert_eq!(c.accounts[0].config_dir, etc.join("accounts/alpha"));
    assert_eq!(c.projects[0].path, etc.join("srv/web"));
    // queue_dir stays relative to the project.
    assert_eq!(c.projects[0].queue_dir, Path::new(".agent-queue"));
    assert_eq!(c.projects[0].queue_root(), etc.join("srv/web/.agent-queue"));
}

#[test]
fn a_symlinked_config_anchors_paths_where_it_is_linked() {
    let dir = temp_dir();
    let real = dir.path().join("real/config.toml");
    write(&real, BASE);
    std::fs::create_dir_all(dir.path().join("etc")).unwrap();
    let link = dir.path().join("etc/config.toml");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let c = Config::load(&link).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.source, link);
    assert_eq!(c.projects[0].path, dir.path().join("etc/srv/web"));
}

#[test]
fn absolute_paths_and_bare_binaries_are_left_alone() {
    let c = with("state_dir = \"/var/x\"\n[claude]\nbinary = \"claude-beta\"\n").ok();
    assert_eq!(c.state_dir, Path::new("/var/x"));
    assert_eq!(c.claude.binary, "claude-beta");
}

#[test]
fn from_toml_anchors_paths_at_the_named_file() {
    let c = Config::from_toml(BASE, Path::new("/opt/cf/config.toml")).unwrap();
    assert_eq!(c.projects[0].path, Path::new("/opt/cf/srv/web"));
    let err = Config::from_toml("x = 1", Path::new("/opt/cf/config.toml")).unwrap_err();
    assert_eq!(err.problems[0].file, Path::new("/opt/cf/config.toml"));
}

#[test]
fn config_path_prefers_the_flag_then_the_environment() {
    // The only test touching this variable, so setting it is race-free.
    std::env::remove_var("CLAUDE_FAILOVER_CONFIG");
    assert_eq!(config_path(None), Path::new(DEFAULT_PATH));
    std::env::set_var("CLAUDE_FAILOVER_CONFIG", "/env/config.toml");
    assert_eq!(config_path(None), Path::new("/env/config.toml"));
    assert_eq!(config_path(Some(Path::new("/cli.toml"))), Path::new("/cli.toml"));
    std::env::set_var("CLAUDE_FAILOVER_CONFIG", "");
    assert_eq!(config_path(None), Path::new(DEFAULT_PATH));
    std::env::remove_var("CLAUDE_FAILOVER_CONFIG");
}

// ---- secrets ----

const SECRET_HTTP: &str = "sEcReT-http-7c41e9";
const SECRET_BOT: &str = "sEcReT-bot-52d0aa";

fn assert_no_secret(what: &str, text: &str) {
    for secret in [SECRET_HTTP, SECRET_BOT] {
        assert!(!text.contains(secret), "{what} leaks a secret:\n{text}");
    }
}

#[test]
fn secrets_never_show_in_config_debug() {
    let dir = temp_dir();
    write(&dir.path().join("http"), &format!("{SECRET_HTTP}\n"));
    write(&dir.path().join("bot"), &format!("{SECRET_BOT}\n"));
    let text = format!(
        "[http]\nlisten = \"0.0.0.0:1\"\ntoken_file = \"http\"\n\
         [notify.telegram]\nchat_id = \"1\"\nbot_token_file = \"bot\"\n{BASE}"
    );
    let c = load_in(dir, &text).ok();
    assert_eq!(c.http.token.as_ref().unwrap().expose(), SECRET_HTTP);
    assert_no_secret("Config Debug", &format!("{c:?}"));
    assert_no_secret("Config pretty Debug", &format!("{c:#?}"));
}

#[test]
fn secrets_never_show_in_problems() {
    // Token files that are wrong in every way a loader complains about, next to
    // other problems, and a config that points a token key at a secret's path.
    let dir = temp_dir();
    write(&dir.path().join("http"), &format!("{SECRET_HTTP} {SECRET_HTTP}\n"));
    write(&dir.path().join("bot"), &format!("{SECRET_BOT}\n\n{SECRET_BOT}\n"));
    let text = format!(
        "[http]\nlisten = \"0.0.0.0:1\"\ntoken_file = \"http\"\n\
         [notify.telegram]\nchat_id = \"\"\nbot_token_file = \"bot\"\n\
         [quota]\nweekly_threshold = 101\n{BASE}"
    );
    let err = load_in(dir, &text).err();
    has(&err, "http.token_file", "must hold only the token");
    has(&err, "notify.telegram.bot_token_file", "must hold only the token");
    has(&err, "quota.weekly_threshold", "0 to 100");
    assert_no_secret("ConfigError Display", &err.to_string());
    assert_no_secret("ConfigError Debug", &format!("{err:?}"));
    for p in &err.problems {
        assert_no_secret("Problem", &format!("{p} {p:?}"));
    }

    // A token file that is not UTF-8 is named, not printed.
    let dir = temp_dir();
    let mut bytes = SECRET_HTTP.as_bytes().to_vec();
    bytes.push(0xff);
    std::fs::write(dir.path().join("http"), bytes).unwrap();
    let err = load_in(dir, &format!("[http]\ntoken_file = \"http\"\n{BASE}")).err();
    only(&err, "http.token_file", "not UTF-8");
    assert_no_secret("non-UTF-8 problem", &format!("{err} {err:?}"));
}

#[test]
fn a_secret_pasted_into_the_config_is_not_echoed_by_syntax_errors() {
    // A token pasted unquoted is a syntax error; the message points at it by
    // line and column instead of quoting the line.
    let err = load(&format!("[http]\ntoken_file = {SECRET_HTTP}\n{BASE}")).err();
    has(&err, "(syntax)", "line 2");
    assert_no_secret("syntax error", &format!("{err} {err:?}"));
}

// ---- api_key accounts and the price table ----

const PRICES: &str =
    "[quota.prices.\"claude-opus-5-5\"]\ninput = 15.0\noutput = 75.0\ncache_write = 18.75\ncache_read = 1.5\n";

fn paid_account(lines: &str) -> String {
    format!("{BASE}\n[[accounts]]\nname = \"paid\"\nconfig_dir = \"accounts/paid\"\nkind = \"api_key\"\n{lines}")
}

#[test]
fn an_api_key_account_loads_with_its_key_file_cap_and_prices() {
    let dir = temp_dir();
    write(&dir.path().join("secrets/key"), "sk-ant-api03-TESTconfigkey-0000000000-KEYCFG-AA\n");
    let c = load_in(
        dir,
        &format!("{PRICES}{}", paid_account("api_key_file = \"secrets/key\"\nmax_spend_usd_per_day = 20")),
    )
    .ok();
    let paid = c.account("paid").unwrap();
    assert!(paid.is_api_key() && Path::new(&paid.api_key_file).is_absolute());
    assert_eq!(paid.daily_cap(), Some(20.0));
    assert!(!c.account("alpha").unwrap().is_api_key(), "subscription is the default kind");
    assert_eq!(c.first_account().unwrap().name, "alpha");
    assert_eq!(c.quota.prices["claude-opus-5-5"].output, 75.0);
    assert!(!format!("{c:?}").contains("KEYCFG"), "the key is never held in the config");
}

#[test]
fn api_key_accounts_are_checked_key_by_key() {
    let cases: [(&str, &str, &str); 7] = [
        ("max_spend_usd_per_day = 5.0", "accounts[2].api_key_file", "missing"),
        ("api_key_file = \"no-such-key\"\nmax_spend_usd_per_day = 5.0", "accounts[2].api_key_file", "cannot read"),
        ("api_key_file = \"/dev/null\"\nmax_spend_usd_per_day = 5.0", "accounts[2].api_key_file", "is empty"),
        ("api_key_file = \"key\"", "accounts[2].max_spend_usd_per_day", "missing"),
        ("api_key_file = \"key\"\nmax_spend_usd_per_day = -1", "accounts[2].max_spend_usd_per_day", "positive"),
        ("api_key_file = \"key\"\nmax_spend_usd_per_day = 0", "accounts[2].max_spend_usd_per_day", "positive"),
        ("api_key_file = \"key\"\nmax_spend_usd_per_day = \"5\"", "accounts[2].max_spend_usd_per_day", "a number"),
    ];
    for (lines, key, needle) in cases {
        let dir = temp_dir();
        write(&dir.path().join("key"), "sk-ant-api03-TESTconfigkey\n");
        let err = load_in(dir, &format!("{PRICES}{}", paid_account(lines))).err();
        only(&err, key, needle);
    }
}

#[test]
fn kinds_and_the_keys_only_a_paid_account_takes() {
    let err =
        load(&BASE.replacen("config_dir = \"accounts/alpha\"", "config_dir = \"accounts/alpha\"\nkind = \"paid\"", 1))
            .err();
    only(&err, "accounts[0].kind", "\"subscription\" or \"api_key\"");
    let err = load(&BASE.replacen(
        "config_dir = \"accounts/alpha\"",
        "config_dir = \"accounts/alpha\"\napi_key_file = \"k\"\nmax_spend_usd_per_day = 3.0",
        1,
    ))
    .err();
    has(&err, "accounts[0].api_key_file", "kind = \"api_key\"");
    has(&err, "accounts[0].max_spend_usd_per_day", "kind = \"api_key\"");
}

#[test]
fn the_price_table_is_needed_by_a_paid_account_and_names_real_models() {
    let dir = temp_dir();
    write(&dir.path().join("key"), "sk-ant-api03-TESTconfigkey\n");
    let err = load_in(dir, &paid_account("api_key_file = \"key\"\nmax_spend_usd_per_day = 5.0")).err();
    only(&err, "quota.prices", "no [quota.prices.\"<model>\"] table");

    let err = with("[quota.prices.opus]\ninput = 15.0\noutput = 75.0\ncache_write = 18.75\ncache_read = 1.5\n").err();
    only(&err, "quota.prices.opus", "not a Claude model id");
    let err =
        with("[quota.prices.\"claude-opus-5-5\"]\ninput = -1\noutput = 75.0\ncache_write = 18.75\ncache_read = 1.5\n")
            .err();
    only(&err, "quota.prices.claude-opus-5-5.input", "0 or more");
    let err = with("[quota.prices.\"claude-opus-5-5\"]\ninput = 15.0\noutput = 75.0\ncache_write = 18.75\n").err();
    only(&err, "quota.prices.claude-opus-5-5.cache_read", "missing");
    let err = with("[quota.prices.\"claude-opus-5-5\"]\ninput = 15.0\noutput = 75.0\ncache_write = 18.75\ncache_read = 1.5\ncache = 1\n").err();
    only(&err, "quota.prices.claude-opus-5-5.cache", "did you mean");

    // Prices without a paid account: valid, and said to be unused.
    let c = with(PRICES).ok();
    assert!(c.notes().iter().any(|n| n.key == "quota.prices" && n.message.contains("not used")));
}

#[test]
fn fleet_is_off_unless_configured_and_its_defaults_fill_in() {
    assert!(with("").ok().fleet.is_none(), "no [fleet]: a single host, as before");
    let c = with("[fleet]\nendpoints = [\"http://127.0.0.1:2379\"]\nhost = \"web1\"").ok();
    let f = c.fleet.expect("[fleet]");
    assert_eq!(
        (f.prefix.as_str(), f.host.as_str(), f.lease_ttl_secs, f.policy.as_str()),
        ("/claude-failover/", "web1", 10, "shared")
    );
    let named = with("[fleet]\nendpoints = [\"http://127.0.0.1:2379\"]").ok();
    assert!(!named.fleet.expect("[fleet]").host.is_empty(), "host defaults to the hostname");
}

#[test]
fn fleet_problems_name_their_keys() {
    let err = with(
        "[fleet]\nendpoints = [\"127.0.0.1:2379\"]\nprefix = \"cf\"\nhost = \"a b\"\nlease_ttl_secs = 1\npolicy = \"mine\"",
    )
    .err();
    has(&err, "fleet.endpoints[0]", "must start with http://");
    has(&err, "fleet.prefix", "must start and end with '/'");
    has(&err, "fleet.host", "");
    has(&err, "fleet.lease_ttl_secs", "from 2 to 3600");
    has(&err, "fleet.policy", "\"shared\" or \"exclusive\"");
    only(&with("[fleet]\nendpoints = []").err(), "fleet.endpoints", "at least one etcd client URL");
    only(&with("[fleet]\nprefix = \"/x/\"").err(), "fleet.endpoints", "");
}

#[test]
fn fleet_tls_and_etcd_users_are_read_at_load_and_their_problems_name_their_keys() {
    let dir = temp_dir();
    let out = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
        .args(["-keyout", "client.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=test"])
        .current_dir(dir.path())
        .output()
        .expect("openssl (apt-get install openssl)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    write(&dir.path().join("password"), "etcd-s3cret\n");
    write(&dir.path().join("garbage.pem"), "not a certificate");
    let fleet = |extra: &str| {
        format!("[fleet]\nendpoints = [\"https://10.0.0.1:2379\", \"https://10.0.0.2:2379\"]\n{extra}\n{BASE}")
    };

    // Relative to the config; the password read, never shown.
    let good = "username = \"fleet\"\npassword_file = \"password\"\nca_file = \"ca.pem\"\n\
                cert_file = \"ca.pem\"\nkey_file = \"client.key\"";
    let Loaded { dir: _kept, result } = load_in(dir, &fleet(good));
    let c = result.expect("a valid config");
    let f = c.fleet.clone().expect("[fleet]");
    assert_eq!(f.password.as_ref().map(|p| p.expose()), Some("etcd-s3cret"));
    assert!(f.ca_file.starts_with('/') && f.ca_file.ends_with("/ca.pem"), "{}", f.ca_file);
    assert!(claude_failover::config::fleet_tls(&f).expect("the files read").is_some());
    assert!(!format!("{c:?}").contains("etcd-s3cret"), "the password in Debug");

    let dir = temp_dir();
    write(&dir.path().join("garbage.pem"), "not a certificate");
    let err =
        load_in(dir, &fleet("username = \"fleet\"\nca_file = \"garbage.pem\"\ncert_file = \"missing.pem\"")).err();
    has(&err, "fleet.password_file", "must be set with fleet.username (\"fleet\")");
    has(&err, "fleet.key_file", "must be set with fleet.cert_file");
    has(&err, "fleet.ca_file", "holds no PEM certificate");

    let err =
        with("[fleet]\nendpoints = [\"http://10.0.0.1:2379\"]\npassword_file = \"nope\"\nca_file = \"x.pem\"").err();
    has(&err, "fleet.username", "must be set with fleet.password_file");
    has(&err, "fleet.password_file", "cannot read");
    has(&err, "fleet.endpoints[0]", "is not https://");
    has(&err, "fleet.ca_file", "cannot read");
}
