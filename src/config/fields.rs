//! The schema again, as a table of keys and kinds: it finds every unknown key
//! (with a guess at the one meant) and every wrong type in one pass, and
//! leaves serde a table it cannot reject. The test at the end holds this
//! table and the serde types in `types` to the same keys.

#[derive(Clone, Copy)]
enum Kind {
    Str,
    Bool,
    /// A non-negative integer up to this value.
    Uint(u64),
    Float,
    StrList,
    /// An array of whole numbers (any sign: Telegram ids).
    IntList,
    StrMap,
    Table(&'static [Field]),
    TableList(&'static [Field]),
    /// A table whose keys are free (model names), each a table of these fields.
    TableMap(&'static [Field]),
}

struct Field {
    key: &'static str,
    kind: Kind,
    required: bool,
}

const fn opt(key: &'static str, kind: Kind) -> Field {
    Field { key, kind, required: false }
}

const fn req(key: &'static str, kind: Kind) -> Field {
    Field { key, kind, required: true }
}

const SECS: Kind = Kind::Uint(i64::MAX as u64);

const ROOT: &[Field] = &[
    opt("state_dir", Kind::Str),
    opt("claude", Kind::Table(CLAUDE)),
    opt("tmux", Kind::Table(TMUX)),
    opt("quota", Kind::Table(QUOTA)),
    opt("dispatch", Kind::Table(DISPATCH)),
    opt("janitor", Kind::Table(JANITOR)),
    opt("http", Kind::Table(HTTP)),
    opt("notify", Kind::Table(NOTIFY)),
    opt("mcp", Kind::Table(MCP)),
    opt("log", Kind::Table(LOG)),
    opt("fleet", Kind::Table(FLEET)),
    opt("accounts", Kind::TableList(ACCOUNT)),
    opt("projects", Kind::TableList(PROJECT)),
    opt("sessions", Kind::TableList(SESSION)),
];
const CLAUDE: &[Field] = &[
    opt("binary", Kind::Str),
    opt("args", Kind::StrList),
    opt("env", Kind::StrMap),
    opt("shared_projects_dir", Kind::Str),
    opt("auto_trust", Kind::Bool),
    opt("startup_timeout_secs", SECS),
    opt("stop_timeout_secs", SECS),
];
const TMUX: &[Field] = &[
    opt("socket_name", Kind::Str),
    opt("width", Kind::Uint(u16::MAX as u64)),
    opt("height", Kind::Uint(u16::MAX as u64)),
];
const QUOTA: &[Field] = &[
    opt("usage_url", Kind::Str),
    opt("poll_interval_secs", SECS),
    opt("request_timeout_secs", SECS),
    opt("five_hour_threshold", Kind::Float),
    opt("weekly_threshold", Kind::Float),
    opt("failback", Kind::Bool),
    opt("min_dwell_secs", SECS),
    opt("prefer", Kind::Str),
    opt("resume_spread_secs", SECS),
    opt("prices", Kind::TableMap(PRICE)),
];
const PRICE: &[Field] = &[
    req("input", Kind::Float),
    req("output", Kind::Float),
    req("cache_write", Kind::Float),
    req("cache_read", Kind::Float),
];
const DISPATCH: &[Field] = &[
    opt("enabled", Kind::Bool),
    opt("settle_secs", SECS),
    opt("submit_confirm_secs", SECS),
    opt("max_attempts", Kind::Uint(u32::MAX as u64)),
    opt("max_task_bytes", Kind::Uint(i64::MAX as u64)),
];
const JANITOR: &[Field] =
    &[opt("interval_secs", SECS), opt("archive_done_after_secs", SECS), opt("prune_checkpoints_after_secs", SECS)];
const HTTP: &[Field] = &[opt("listen", Kind::Str), opt("token_file", Kind::Str), opt("allowed_hosts", Kind::StrList)];
const LOG: &[Field] = &[opt("format", Kind::Str)];
const MCP: &[Field] = &[opt("allow", Kind::StrList), opt("token_file", Kind::Str), opt("register", Kind::Bool)];
const FLEET: &[Field] = &[
    req("endpoints", Kind::StrList),
    opt("prefix", Kind::Str),
    opt("host", Kind::Str),
    opt("lease_ttl_secs", SECS),
    opt("policy", Kind::Str),
    opt("username", Kind::Str),
    opt("password_file", Kind::Str),
    opt("ca_file", Kind::Str),
    opt("cert_file", Kind::Str),
    opt("key_file", Kind::Str),
];
const NOTIFY: &[Field] =
    &[opt("min_interval_secs", SECS), opt("telegram", Kind::Table(TELEGRAM)), opt("webhook", Kind::Table(WEBHOOK))];
const TELEGRAM: &[Field] = &[
    opt("bot_token_file", Kind::Str),
    req("chat_id", Kind::Str),
    opt("chat_ids", Kind::StrList),
    opt("user_ids", Kind::IntList),
    opt("kinds", Kind::StrList),
    opt("api_base", Kind::Str),
];
const WEBHOOK: &[Field] = &[req("url", Kind::Str)];
const ACCOUNT: &[Field] = &[
    req("name", Kind::Str),
    req("config_dir", Kind::Str),
    opt("kind", Kind::Str),
    opt("api_key_file", Kind::Str),
    opt("max_spend_usd_per_day", Kind::Float),
];
const PROJECT: &[Field] = &[req("name", Kind::Str), req("path", Kind::Str), opt("queue_dir", Kind::Str)];
const SESSION: &[Field] = &[req("name", Kind::Str), req("project", Kind::Str), opt("dispatch", Kind::Bool)];

/// Checks a whole file's table against the schema: see [`check_table`].
pub(super) fn check_root(table: &mut toml::Table, out: &mut Vec<(String, String)>) {
    check_table(table, ROOT, "", out);
}

/// Removes unknown and mistyped keys (reporting each) and fills missing
/// required keys with placeholders, so serde can then build the rest.
fn check_table(table: &mut toml::Table, fields: &[Field], at: &str, out: &mut Vec<(String, String)>) {
    let keys: Vec<String> = table.keys().cloned().collect();
    for key in keys {
        let path = join_key(at, &key);
        let Some(field) = fields.iter().find(|f| f.key == key) else {
            out.push((path, unknown_key(&key, fields)));
            table.remove(&key);
            continue;
        };
        let keep = match table.get_mut(&key) {
            Some(value) => check_value(value, field.kind, &path, out),
            None => true,
        };
        if !keep && field.required {
            // Already reported; the placeholder keeps "missing" from being said too.
            table.insert(key, placeholder(field.kind));
        } else if !keep {
            table.remove(&key);
        }
    }
    for field in fields.iter().filter(|f| f.required) {
        if !table.contains_key(field.key) {
            out.push((join_key(at, field.key), "missing: this key is required".into()));
            table.insert(field.key.into(), placeholder(field.kind));
        }
    }
}

/// Checks one value; false means it is unusable and was reported.
fn check_value(value: &mut toml::Value, kind: Kind, path: &str, out: &mut Vec<(String, String)>) -> bool {
    use toml::Value as V;
    let mut wrong = |expected: &str, value: &V| {
        out.push((path.to_string(), format!("expected {expected}, found {}", describe(value))));
        false
    };
    match (kind, &mut *value) {
        (Kind::Str, V::String(_)) | (Kind::Bool, V::Boolean(_)) => true,
        (Kind::Float, V::Float(_)) => true,
        (Kind::Float, V::Integer(i)) => {
            *value = V::Float(*i as f64);
            true
        }
        (Kind::Uint(max), V::Integer(i)) => {
            if *i < 0 || *i as u64 > max {
                out.push((path.to_string(), format!("must be a whole number from 0 to {max}, found {i}")));
                false
            } else {
                true
            }
        }
        (Kind::StrList, V::Array(items)) => {
            let mut ok = true;
            for (i, item) in items.iter().enumerate() {
                if !item.is_str() {
                    out.push((format!("{path}[{i}]"), format!("expected a string, found {}", describe(item))));
                    ok = false;
                }
            }
            ok
        }
        (Kind::IntList, V::Array(items)) => {
            let mut ok = true;
            for (i, item) in items.iter().enumerate() {
                if !item.is_integer() {
                    out.push((format!("{path}[{i}]"), format!("expected a whole number, found {}", describe(item))));
                    ok = false;
                }
            }
            ok
        }
        (Kind::StrMap, V::Table(map)) => {
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                if let Some(item) = map.get(&key).filter(|v| !v.is_str()) {
                    out.push((join_key(path, &key), format!("expected a string, found {}", describe(item))));
                    map.remove(&key);
                }
            }
            true
        }
        (Kind::Table(fields), V::Table(t)) => {
            check_table(t, fields, path, out);
            true
        }
        (Kind::TableList(fields), V::Array(items)) => {
            for (i, item) in items.iter_mut().enumerate() {
                let at = format!("{path}[{i}]");
                match item {
                    V::Table(t) => check_table(t, fields, &at, out),
                    other => {
                        out.push((at, format!("expected a table, found {}", describe(other))));
                        // Keep the index of every later entry stable.
                        *other = placeholder(Kind::Table(fields));
                    }
                }
            }
            true
        }
        (Kind::TableMap(fields), V::Table(map)) => {
            for (key, item) in map.iter_mut() {
                let at = join_key(path, key);
                match item {
                    V::Table(t) => check_table(t, fields, &at, out),
                    other => {
                        out.push((at, format!("expected a table, found {}", describe(other))));
                        *other = placeholder(Kind::Table(fields));
                    }
                }
            }
            true
        }
        (Kind::TableList(_), V::Table(_)) => {
            let name = path.rsplit('.').next().unwrap_or(path);
            wrong(&format!("an array of tables (write [[{name}]], not [{name}])"), value)
        }
        (kind, _) => {
            let expected = match kind {
                Kind::Str => "a string",
                Kind::Bool => "true or false",
                Kind::Uint(_) => "a whole number",
                Kind::Float => "a number",
                Kind::StrList => "an array of strings",
                Kind::IntList => "an array of whole numbers",
                Kind::StrMap => "a table of strings",
                Kind::Table(_) => "a table",
                Kind::TableList(_) => "an array of tables",
                Kind::TableMap(_) => "a table of tables",
            };
            wrong(expected, value)
        }
    }
}

fn placeholder(kind: Kind) -> toml::Value {
    match kind {
        Kind::Table(fields) | Kind::TableList(fields) => {
            let mut t = toml::Table::new();
            for f in fields.iter().filter(|f| f.required) {
                t.insert(f.key.into(), placeholder(f.kind));
            }
            toml::Value::Table(t)
        }
        Kind::TableMap(_) => toml::Value::Table(toml::Table::new()),
        Kind::Float => toml::Value::Float(0.0),
        Kind::Uint(_) => toml::Value::Integer(0),
        Kind::Bool => toml::Value::Boolean(false),
        Kind::StrList | Kind::IntList => toml::Value::Array(Vec::new()),
        _ => toml::Value::String(String::new()),
    }
}

fn describe(value: &toml::Value) -> String {
    use toml::Value as V;
    match value {
        V::String(_) => "a string".into(),
        V::Integer(i) => format!("the integer {i}"),
        V::Float(x) => format!("the number {x}"),
        V::Boolean(b) => format!("{b}"),
        V::Datetime(_) => "a date-time".into(),
        V::Array(_) => "an array".into(),
        V::Table(_) => "a table".into(),
    }
}

fn unknown_key(key: &str, fields: &[Field]) -> String {
    let close = fields
        .iter()
        .map(|f| (edit_distance(key, f.key), f.key))
        .filter(|(d, name)| {
            *d <= (key.len() / 4).max(1) || (key.len() >= 4 && (name.starts_with(key) || key.starts_with(name)))
        })
        .min_by_key(|(d, _)| *d);
    if let Some((_, name)) = close {
        return format!("unknown key (did you mean {name:?}?)");
    }
    let mut homes = Vec::new();
    sections_with(key, ROOT, "", &mut homes);
    match homes.first() {
        Some(home) => format!("unknown key here (it belongs in {home})"),
        None => "unknown key".into(),
    }
}

/// The sections (`[quota]`, `[[accounts]]`) that have a key by this name.
fn sections_with(key: &str, fields: &[Field], at: &str, out: &mut Vec<String>) {
    for f in fields {
        let path = join_key(at, f.key);
        match f.kind {
            Kind::Table(sub) => {
                if sub.iter().any(|s| s.key == key) {
                    out.push(format!("[{path}]"));
                }
                sections_with(key, sub, &path, out);
            }
            Kind::TableList(sub) if sub.iter().any(|s| s.key == key) => {
                out.push(format!("[[{path}]]"));
            }
            Kind::TableMap(sub) if sub.iter().any(|s| s.key == key) => {
                out.push(format!("[{path}.\"<name>\"]"));
            }
            _ => {}
        }
    }
}

/// Edits (insert, delete, substitute, swap two neighbours) from `a` to `b`:
/// optimal string alignment distance, so "qouta" is one edit from "quota".
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    d[0] = (0..=b.len()).collect();
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

fn join_key(at: &str, key: &str) -> String {
    if at.is_empty() {
        quote_key(key)
    } else {
        format!("{at}.{}", quote_key(key))
    }
}

/// A key as TOML would need it written: bare when it can be.
pub(super) fn quote_key(key: &str) -> String {
    let bare = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        return key.to_string();
    }
    let mut out = String::from("\"");
    for c in key.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// True when `reported` is `key` or one of its parents.
pub(super) fn covers(reported: &str, key: &str) -> bool {
    key.strip_prefix(reported).is_some_and(|rest| rest.is_empty() || rest.starts_with('.') || rest.starts_with('['))
}

pub(super) fn syntax_problem(text: &str, e: &toml::de::Error) -> (String, String) {
    let message = syntax_reason(e.message().trim_end());
    let Some(span) = e.span() else {
        return ("(syntax)".into(), format!("not valid TOML: {message}"));
    };
    let before = &text[..span.start.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    ("(syntax)".into(), format!("line {line}, column {column}: {message}"))
}

/// toml's own words for a syntax error, under the headline this program has
/// always given for the constructs a user most often leaves open: toml 1.x
/// says "unclosed table, expected `]`" where the messages users and scripts
/// know say "invalid table header".
fn syntax_reason(toml_message: &str) -> String {
    const HEADLINES: &[(&str, &str)] = &[
        ("unclosed table", "invalid table header"),
        ("unclosed array table", "invalid table header"),
        ("unclosed array", "invalid array"),
        ("unclosed inline table", "invalid inline table"),
    ];
    let head = toml_message.split(", expected").next().unwrap_or(toml_message);
    match HEADLINES.iter().find(|(said, _)| *said == head) {
        Some((_, headline)) => format!("{headline}: {toml_message}"),
        None => toml_message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("listen", "listen"), 0);
        assert_eq!(edit_distance("five_hour_treshold", "five_hour_threshold"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("qouta", "quota"), 1);
    }

    #[test]
    fn covers_matches_the_key_and_its_children_only() {
        assert!(covers("accounts[1]", "accounts[1].name"));
        assert!(covers("accounts", "accounts"));
        assert!(covers("accounts", "accounts[0].name"));
        assert!(!covers("accounts[1]", "accounts[10].name"));
        assert!(!covers("http.token", "http.token_file"));
    }

    #[test]
    fn keys_are_quoted_as_toml_writes_them() {
        assert_eq!(quote_key("A_1-b"), "A_1-b");
        assert_eq!(quote_key("a.b"), "\"a.b\"");
        assert_eq!(quote_key("a\"b\\"), "\"a\\\"b\\\\\"");
        assert_eq!(quote_key("\u{7}"), "\"\\u0007\"");
        assert_eq!(quote_key(""), "\"\"");
    }

    /// Whatever shape the TOML has, the shape check leaves serde nothing to
    /// reject: every problem carries a real key, never "(schema)".
    #[test]
    fn odd_shapes_are_caught_before_serde() {
        let odd = [
            "claude = []",
            "[[claude]]\nbinary = 1",
            "accounts = \"x\"",
            "accounts = [1, {name = \"a\"}, []]",
            "sessions = [{}]",
            "[notify]\ntelegram = []\nwebhook = 1",
            "[notify.telegram]\nchat_id = 1\napi_base = 2",
            "[claude]\nenv = []\nargs = {}",
            "[claude.env]\nA = {}",
            "state_dir = 1979-05-27T07:32:00Z",
            "[quota]\nfive_hour_threshold = \"90\"\npoll_interval_secs = 1.5",
            "[dispatch]\nmax_attempts = 4294967296",
            "[tmux]\nwidth = true",
            "[[projects]]\nname = []\npath = {}\nqueue_dir = 1",
            "[[accounts]]\n[[accounts]]\n[[sessions]]",
        ];
        for text in odd {
            let err = Config::from_toml(text, Path::new("/nowhere/c.toml")).unwrap_err();
            assert!(err.problems.iter().all(|p| p.key != "(schema)" && !p.key.is_empty()), "{text:?}:\n{err}");
        }
    }

    #[test]
    fn syntax_errors_keep_their_headline() {
        assert_eq!(syntax_reason("unclosed table, expected `]`"), "invalid table header: unclosed table, expected `]`");
        assert_eq!(syntax_reason("unclosed array, expected `]`"), "invalid array: unclosed array, expected `]`");
        assert_eq!(syntax_reason("duplicate key"), "duplicate key");
    }

    // ---- the field tables and the serde types describe one schema ----

    use toml::Value as V;

    /// How a step's table sits under its key.
    #[derive(Clone, Copy, PartialEq)]
    enum Shape {
        Table,
        List,
        /// Under a free key of a table of tables.
        Map,
    }

    /// One step from the document's root down to a table: the table holding
    /// the key, the key, and how the table sits there.
    type Step = (&'static [Field], &'static str, Shape);

    fn sample(kind: Kind) -> V {
        match kind {
            Kind::Str => V::String("x".into()),
            Kind::Bool => V::Boolean(true),
            Kind::Uint(max) => V::Integer(max.min(i64::MAX as u64) as i64),
            Kind::Float => V::Float(1.5),
            Kind::StrList => V::Array(vec![V::String("x".into())]),
            Kind::IntList => V::Array(vec![V::Integer(-100123)]),
            Kind::StrMap => V::Table(toml::Table::from_iter([("A".to_string(), V::String("x".into()))])),
            Kind::Table(fields) => V::Table(required(fields)),
            Kind::TableList(fields) => V::Array(vec![V::Table(required(fields))]),
            Kind::TableMap(fields) => V::Table(toml::Table::from_iter([("x".to_string(), V::Table(required(fields)))])),
        }
    }

    /// A value of another kind than `kind`, which serde must refuse.
    fn wrong(kind: Kind) -> V {
        match kind {
            Kind::Str
            | Kind::StrList
            | Kind::IntList
            | Kind::StrMap
            | Kind::Table(_)
            | Kind::TableList(_)
            | Kind::TableMap(_) => V::Integer(1),
            Kind::Bool | Kind::Uint(_) | Kind::Float => V::String("1".into()),
        }
    }

    fn required(fields: &[Field]) -> toml::Table {
        fields.iter().filter(|f| f.required).map(|f| (f.key.to_string(), sample(f.kind))).collect()
    }

    /// The whole document with `inner` as the table at the end of `steps`.
    fn document(steps: &[Step], inner: toml::Table) -> toml::Table {
        steps.iter().rev().fold(inner, |inner, (parent, key, list)| {
            let mut table = required(parent);
            let value = match list {
                Shape::List => V::Array(vec![V::Table(inner)]),
                Shape::Table => V::Table(inner),
                Shape::Map => V::Table(toml::Table::from_iter([("x".to_string(), V::Table(inner))])),
            };
            table.insert(key.to_string(), value);
            table
        })
    }

    fn serde(doc: toml::Table) -> Result<Config, String> {
        V::Table(doc).try_into::<Config>().map_err(|e| e.message().to_string())
    }

    /// The keys serde knows in the table at `steps`: its "unknown field"
    /// answer lists them all.
    fn serde_keys(steps: &[Step], fields: &[Field]) -> Vec<String> {
        let mut probe = required(fields);
        probe.insert("not_a_key_of_any_table".into(), V::Integer(1));
        let said = serde(document(steps, probe)).err().unwrap_or_default();
        let expected = said.split_once("expected").map_or("", |(_, rest)| rest);
        let mut keys: Vec<String> = expected.split('`').skip(1).step_by(2).map(str::to_string).collect();
        keys.sort();
        keys
    }

    fn check_schema(steps: &mut Vec<Step>, fields: &'static [Field]) {
        let at = steps.iter().map(|(_, key, _)| *key).collect::<Vec<_>>().join(".");
        let mut ours: Vec<String> = fields.iter().map(|f| f.key.to_string()).collect();
        ours.sort();
        assert_eq!(serde_keys(steps, fields), ours, "[{at}]: the field table and the serde type list other keys");
        assert!(serde(document(steps, required(fields))).is_ok(), "[{at}]: serde refuses the required keys alone");
        for f in fields {
            let with = |value: V| {
                let mut table = required(fields);
                table.insert(f.key.to_string(), value);
                serde(document(steps, table))
            };
            let key = format!("{at}.{}", f.key);
            if let Err(e) = with(sample(f.kind)) {
                panic!("{key}: serde refuses a value the field table allows: {e}");
            }
            assert!(with(wrong(f.kind)).is_err(), "{key}: serde takes a value the field table refuses");
            if let Kind::Uint(max) = f.kind {
                if max < i64::MAX as u64 {
                    assert!(with(V::Integer(max as i64 + 1)).is_err(), "{key}: serde takes more than {max}");
                }
                assert!(with(V::Integer(-1)).is_err(), "{key}: serde takes a negative number");
            }
            let mut without = required(fields);
            without.remove(f.key);
            let missing = serde(document(steps, without));
            assert_eq!(missing.is_err(), f.required, "{key}: required in one schema and not in the other");
            if let Kind::Table(sub) | Kind::TableList(sub) | Kind::TableMap(sub) = f.kind {
                let shape = match f.kind {
                    Kind::TableList(_) => Shape::List,
                    Kind::TableMap(_) => Shape::Map,
                    _ => Shape::Table,
                };
                steps.push((fields, f.key, shape));
                check_schema(steps, sub);
                steps.pop();
            }
        }
    }

    /// Two copies of the schema exist: the serde types (what the program
    /// reads) and the field tables (what the shape check reports on). Every
    /// table must list the same keys, with kinds, bounds and required-ness
    /// serde agrees with, so the two cannot drift apart.
    #[test]
    fn the_field_tables_and_the_serde_types_are_one_schema() {
        check_schema(&mut Vec::new(), ROOT);
    }
}
