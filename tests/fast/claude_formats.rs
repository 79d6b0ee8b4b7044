//! Every fixture captured from the real Claude Code (tests/fixtures/claude-<version>/,
//! recreated by tests/fixtures/capture.sh) is classified right, for each version.

use claude_failover::claude::pane::{classify, LimitKind, PaneState};
use claude_failover::claude::session_file::{SessionFile, SessionStatus};
use claude_failover::claude::transcript::{RecordKind, TranscriptReader};
use std::path::PathBuf;

const VERSIONS: [&str; 2] = ["2.1.197", "2.1.332"];

fn fixture(version: &str, name: &str) -> PathBuf {
    kit::repo_root().join("tests/fixtures").join(format!("claude-{version}")).join(name)
}

/// A limit whose reset text has the shape `resets` once every run of digits is
/// written `9`, am/pm `xm` and a month `Mon` (times differ from capture to capture).
fn limited(kind: LimitKind, resets: &str, auto_continue: bool) -> PaneState {
    PaneState::RateLimited { kind, resets_text: Some(resets.to_string()), auto_continue }
}

fn shape(state: PaneState) -> PaneState {
    match state {
        PaneState::RateLimited { kind, resets_text, auto_continue } => {
            PaneState::RateLimited { kind, resets_text: resets_text.map(|t| time_shape(&t)), auto_continue }
        }
        other => other,
    }
}

fn time_shape(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            if !out.ends_with('9') {
                out.push('9');
            }
        } else {
            out.push(c);
        }
    }
    let out = out.replace("am", "xm").replace("pm", "xm");
    let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    months.iter().fold(out, |t, m| t.replace(m, "Mon"))
}

/// (version, file, expected state).
fn screens() -> Vec<(&'static str, &'static str, PaneState)> {
    use PaneState::*;
    vec![
        ("2.1.332", "trust-dialog.txt", TrustDialog),
        ("2.1.332", "auto-mode-offer.txt", OtherDialog),
        ("2.1.332", "auto-mode-dialog.txt", OtherDialog),
        ("2.1.332", "idle.txt", Idle),
        ("2.1.332", "idle-auto-mode.txt", Idle),
        ("2.1.332", "busy.txt", Busy),
        ("2.1.332", "permission-prompt.txt", PermissionPrompt),
        ("2.1.332", "server-limited.txt", ServerRetrying),
        ("2.1.332", "server-overloaded.txt", ServerRetrying),
        ("2.1.332", "login-needed.txt", LoginNeeded),
        ("2.1.332", "rate-limit-five-hour.txt", limited(LimitKind::FiveHour, "9:9xm (UTC)", true)),
        ("2.1.332", "rate-limit-seven-day.txt", limited(LimitKind::Weekly, "Mon 9, 9:9xm (UTC)", false)),
        ("2.1.197", "trust-dialog.txt", TrustDialog),
        ("2.1.197", "idle.txt", Idle),
        ("2.1.197", "busy.txt", Busy),
        ("2.1.197", "permission-prompt.txt", PermissionPrompt),
        // 2.1.197 does not retry a plain 429: the turn ends at once with an API
        // error that is no quota limit, and the session is idle.
        ("2.1.197", "server-limited.txt", Idle),
        ("2.1.197", "server-overloaded.txt", ServerRetrying),
        ("2.1.197", "login-needed.txt", LoginNeeded),
        ("2.1.197", "rate-limit-five-hour.txt", limited(LimitKind::FiveHour, "9:9xm (UTC)", false)),
        ("2.1.197", "rate-limit-seven-day.txt", limited(LimitKind::Weekly, "Mon 9, 9:9xm (UTC)", false)),
    ]
}

#[test]
fn every_screen_fixture_is_classified_right() {
    let mut failures = Vec::new();
    for (version, name, want) in screens() {
        let path = fixture(version, name);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let got = shape(classify(&text));
        if got != want {
            failures.push(format!("{version}/{name}: got {got:?}, want {want:?}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn no_screen_fixture_goes_unchecked() {
    let table = screens();
    for version in VERSIONS {
        let dir = fixture(version, "");
        for entry in std::fs::read_dir(&dir).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            if name.ends_with(".txt") {
                assert!(
                    table.iter().any(|(v, n, _)| *v == version && *n == name),
                    "{version}/{name} is not in the table"
                );
            }
        }
    }
}

/// Old limit text scrolled above a later, successful turn is history.
#[test]
fn a_limit_above_a_newer_turn_is_not_current() {
    let text = std::fs::read_to_string(fixture("2.1.332", "rate-limit-five-hour.txt")).unwrap();
    let idle = std::fs::read_to_string(fixture("2.1.332", "idle.txt")).unwrap();
    // The limit screen's history, then a new prompt and answer, then the idle box.
    let history: Vec<&str> = text.lines().take_while(|l| !l.starts_with("───")).collect();
    let bottom: Vec<&str> = idle.lines().skip_while(|l| !l.starts_with("───")).collect();
    let screen = format!("{}\n❯ Next task\n\n● Done: Next task\n\n{}", history.join("\n"), bottom.join("\n"));
    assert_eq!(classify(&screen), PaneState::Idle, "{screen}");
}

fn transcript_kinds(version: &str, name: &str) -> Vec<RecordKind> {
    let mut reader = TranscriptReader::new(fixture(version, name));
    reader.read_new().unwrap().into_iter().map(|r| r.kind).collect()
}

#[test]
fn normal_transcript_has_the_turn_the_answer_and_its_normal_end_only() {
    for version in VERSIONS {
        let (usage, kinds): (Vec<RecordKind>, Vec<RecordKind>) = transcript_kinds(version, "transcript-normal.jsonl")
            .into_iter()
            .partition(|k| matches!(k, RecordKind::Usage { .. }));
        // The answer's tokens, counted by an api_key account's spend.
        assert!(
            matches!(&usage[..], [RecordKind::Usage { tokens, .. }] if tokens.input == 12 && tokens.output == 8),
            "{version}: {usage:?}"
        );
        assert_eq!(
            kinds,
            [
                RecordKind::UserTurn { text: "Say hello to the fixture capture".into() },
                RecordKind::AssistantText { text: "Done: Say hello to the fixture capture".into() },
                RecordKind::TurnEnded,
            ],
            "{version}"
        );
    }
}

#[test]
fn limit_transcript_tells_quota_from_other_errors() {
    for version in VERSIONS {
        let kinds = transcript_kinds(version, "transcript-limit.jsonl");
        let quota: Vec<_> = kinds
            .iter()
            .filter_map(|k| match k {
                RecordKind::QuotaLimit { rate_limit_type, resets_at, structured, .. } => {
                    Some((rate_limit_type.clone(), resets_at.is_some(), *structured))
                }
                _ => None,
            })
            .collect();
        // 2.1.332 writes quotaLimits; 2.1.197 only the message text.
        let structured = version != "2.1.197";
        assert_eq!(quota, [(Some("five_hour".to_string()), structured, structured)], "{version}: {kinds:#?}");
        assert!(
            kinds.iter().any(|k| matches!(k, RecordKind::AuthFailure { status: Some(401), .. })),
            "{version}: {kinds:#?}"
        );
        // Plain 429s and 529s are turns that failed, never quota limits.
        for k in &kinds {
            if let RecordKind::ApiError { error, .. } = k {
                assert!(error == "rate_limit" || error == "server_error", "{version}: {k:?}");
            }
        }
    }
}

#[test]
fn session_files() {
    for version in VERSIONS {
        for (name, want) in [
            ("session.json", SessionStatus::Idle),
            ("session-busy.json", SessionStatus::Busy),
            ("session-waiting.json", SessionStatus::Waiting),
        ] {
            let path = fixture(version, name);
            if version == "2.1.197" && !path.exists() {
                continue;
            }
            let f = SessionFile::read(&path).unwrap();
            assert_eq!(f.status, Some(want), "{version}/{name}");
            assert!(f.session_id.is_some() && f.pid.is_some() && f.updated_at.is_some());
        }
    }
}

#[test]
fn the_trust_dialog_is_answered_yes_from_wherever_the_cursor_stands() {
    use claude_failover::claude::pane::trust_answer_keys;
    let fixture = |v: &str| {
        std::fs::read_to_string(kit::repo_root().join(format!("tests/fixtures/claude-{v}/trust-dialog.txt"))).unwrap()
    };
    assert_eq!(trust_answer_keys(&fixture("2.1.197")), Some(vec!["Enter"]));
    assert_eq!(trust_answer_keys(&fixture("2.1.332")), Some(vec!["Down", "Enter"]));
    assert_eq!(trust_answer_keys("❯ \n? for shortcuts"), None);
}
