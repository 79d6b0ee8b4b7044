//! Handing one task's text to one Claude Code session: a bracketed paste, a
//! pause, a separate Enter, then confirmation that the prompt was taken (the
//! transcript gained the user turn, or the screen turned busy), with Enter
//! re-sent when it was not. The text goes through tmux's paste buffer only,
//! never through a shell.

use crate::claude::pane::{self, PaneState};
use crate::claude::transcript::{RecordKind, TranscriptReader};
use crate::heartbeat::Beat;
use crate::tmux::Tmux;
use std::path::Path;
use std::time::{Duration, Instant};

/// Between the paste and its Enter: an Enter that arrives with the paste is
/// taken as part of it and the prompt sits unsent (CLAUDE_CODE.md).
pub const PASTE_PAUSE: Duration = Duration::from_millis(800);
/// How many times Enter is sent before the delivery is given up.
const ENTER_TRIES: u32 = 3;
const LOOK_EVERY: Duration = Duration::from_millis(100);

/// A confirmed delivery.
#[derive(Debug, Clone, Copy)]
pub struct Delivered {
    /// When the paste went in (the dispatch-latency end point).
    pub pasted_at: Instant,
    /// The transcript's length before the paste: this prompt's turn and its
    /// answer come after it.
    pub transcript_offset: u64,
}

/// Pastes `text` into `target` and confirms it was submitted.
/// `transcript` is the session's transcript file (it may not exist yet).
/// The input box is cleared first (Ctrl-U), so a paste left unsent by a
/// daemon killed between paste and Enter is not sent along with this one.
pub fn deliver(
    tmux: &Tmux,
    target: &str,
    text: &str,
    transcript: &Path,
    confirm_within: Duration,
    beat: &Beat,
) -> Result<Delivered, String> {
    let start = std::fs::metadata(transcript).map(|m| m.len()).unwrap_or(0);
    let mut reader = TranscriptReader::at(transcript, start);
    tmux.send_keys(target, &["C-u"]).map_err(|e| format!("clearing the input failed: {e}"))?;
    tmux.paste(target, text).map_err(|e| format!("paste failed: {e}"))?;
    let pasted_at = Instant::now();
    pause(PASTE_PAUSE, beat);
    for attempt in 1..=ENTER_TRIES {
        tmux.send_keys(target, &["Enter"]).map_err(|e| format!("sending Enter failed: {e}"))?;
        let deadline = Instant::now() + confirm_within;
        while Instant::now() < deadline {
            beat.beat();
            if submitted(&mut reader, tmux, target) {
                return Ok(Delivered { pasted_at, transcript_offset: start });
            }
            std::thread::sleep(LOOK_EVERY);
        }
        log::warn!("{target}: prompt not confirmed within {confirm_within:?} (Enter {attempt} of {ENTER_TRIES})");
    }
    Err(format!("the session did not take the prompt after {ENTER_TRIES} Enters"))
}

fn submitted(reader: &mut TranscriptReader, tmux: &Tmux, target: &str) -> bool {
    if let Ok(records) = reader.read_new() {
        if records.iter().any(|r| matches!(r.kind, RecordKind::UserTurn { .. })) {
            return true;
        }
    }
    matches!(tmux.capture_pane(target).map(|t| pane::classify(&t)), Ok(PaneState::Busy))
}

/// A deliberate protocol pause, beating meanwhile.
fn pause(d: Duration, beat: &Beat) {
    let end = Instant::now() + d;
    while Instant::now() < end {
        beat.beat();
        std::thread::sleep(LOOK_EVERY.min(end.saturating_duration_since(Instant::now())));
    }
}
