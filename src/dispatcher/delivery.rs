//! Handing one task's text to one Claude Code session: a bracketed paste, a
//! pause, a separate Enter, then confirmation that the prompt was taken (the
//! transcript gained the user turn, or the screen turned busy), with Enter
//! re-sent when it was not. The text goes through tmux's paste buffer only,
//! never through a shell.

use crate::claude::pane::{self, PaneState};
use crate::claude::transcript::{RecordKind, TranscriptReader};
use crate::tmux::{Tmux, TmuxError};
use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

/// Between the paste and its Enter: an Enter that arrives with the paste is
/// taken as part of it and the prompt sits unsent (docs/claude-code.md#keys). Enter
/// goes once the input box shows the paste, [`AFTER_SHOWN`] later, and
/// after this long at most when the screen never shows it.
pub const PASTE_PAUSE: Duration = Duration::from_millis(800);
/// Once the paste is on screen Claude Code has taken all of it in; the
/// margin keeps Enter out of the same read as the paste's last bytes.
const AFTER_SHOWN: Duration = Duration::from_millis(40);
const PASTE_LOOK_EVERY: Duration = Duration::from_millis(20);
/// How long a leftover input may take to clear.
const CLEAR_WITHIN: Duration = Duration::from_millis(1500);
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

/// Why a prompt did not reach the session at `target` (its tmux session or pane).
#[derive(Debug)]
pub enum DeliveryError {
    /// The screen could not be read.
    Screen {
        target: String,
        error: TmuxError,
    },
    /// Ctrl-U to clear the input box could not be sent.
    Clear {
        target: String,
        error: TmuxError,
    },
    /// The input box kept `rows` row(s) of earlier text through Ctrl-U.
    InputNotEmpty {
        target: String,
        rows: usize,
    },
    Paste {
        target: String,
        error: TmuxError,
    },
    Enter {
        target: String,
        error: TmuxError,
    },
    /// The prompt was not taken after `tries` Enters.
    NotTaken {
        target: String,
        tries: u32,
    },
}

impl DeliveryError {
    /// The tmux session or pane the prompt was for.
    pub fn target(&self) -> &str {
        match self {
            DeliveryError::Screen { target, .. }
            | DeliveryError::Clear { target, .. }
            | DeliveryError::InputNotEmpty { target, .. }
            | DeliveryError::Paste { target, .. }
            | DeliveryError::Enter { target, .. }
            | DeliveryError::NotTaken { target, .. } => target,
        }
    }
}

/// Without the target: every caller names the session already.
impl fmt::Display for DeliveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeliveryError::Screen { error, .. } => write!(f, "reading the screen failed: {error}"),
            DeliveryError::Clear { error, .. } => write!(f, "clearing the input failed: {error}"),
            DeliveryError::InputNotEmpty { rows, .. } => {
                write!(f, "the input box still holds {rows} row(s) of earlier text after Ctrl-U")
            }
            DeliveryError::Paste { error, .. } => write!(f, "paste failed: {error}"),
            DeliveryError::Enter { error, .. } => write!(f, "sending Enter failed: {error}"),
            DeliveryError::NotTaken { tries, .. } => {
                write!(f, "the session did not take the prompt after {tries} Enters")
            }
        }
    }
}

impl std::error::Error for DeliveryError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DeliveryError::Screen { error, .. }
            | DeliveryError::Clear { error, .. }
            | DeliveryError::Paste { error, .. }
            | DeliveryError::Enter { error, .. } => Some(error),
            DeliveryError::InputNotEmpty { .. } | DeliveryError::NotTaken { .. } => None,
        }
    }
}

/// Pastes `text` into `target` and confirms it was submitted.
/// `transcript` is the session's transcript file (it may not exist yet).
/// The input box is cleared first ([`clear_input`]), so a paste left unsent
/// by a daemon killed between paste and Enter is not sent along with this one.
pub fn deliver(
    tmux: &Tmux,
    target: &str,
    text: &str,
    transcript: &Path,
    confirm_within: Duration,
    keep_alive: &dyn Fn(),
) -> Result<Delivered, DeliveryError> {
    let start = std::fs::metadata(transcript).map(|m| m.len()).unwrap_or(0);
    let mut reader = TranscriptReader::at(transcript, start);
    clear_input(tmux, target, keep_alive)?;
    // Without its final line break a one-line task shows as one row, as typed.
    let text = text.trim_end();
    tmux.paste(target, text).map_err(|error| DeliveryError::Paste { target: target.into(), error })?;
    let pasted_at = Instant::now();
    wait_for_paste(tmux, target, text, pasted_at + PASTE_PAUSE, keep_alive);
    for attempt in 1..=ENTER_TRIES {
        tmux.send_keys(target, &["Enter"]).map_err(|error| DeliveryError::Enter { target: target.into(), error })?;
        let deadline = Instant::now() + confirm_within;
        while Instant::now() < deadline {
            keep_alive();
            if submitted(&mut reader, tmux, target) {
                return Ok(Delivered { pasted_at, transcript_offset: start });
            }
            std::thread::sleep(LOOK_EVERY);
        }
        log::warn!("{target}: prompt not confirmed within {confirm_within:?} (Enter {attempt} of {ENTER_TRIES})");
    }
    Err(DeliveryError::NotTaken { target: target.into(), tries: ENTER_TRIES })
}

/// Empties the input box before the paste: text left there (a paste whose
/// Enter never went out because the daemon was killed, a human's typing)
/// would go out with this task. Ctrl-U deletes back to the row's start, and
/// at a row's start the line break before it, so two per row clear a box
/// whose cursor is at its end (where a paste leaves it). Checked on the
/// screen: a box that stays full fails the delivery rather than send two
/// texts as one turn.
fn clear_input(tmux: &Tmux, target: &str, keep_alive: &dyn Fn()) -> Result<(), DeliveryError> {
    // The box's rows (none when it is empty), `None` when no box is on screen.
    let rows = |tmux: &Tmux| -> Result<Option<Vec<String>>, DeliveryError> {
        let screen =
            tmux.capture_pane(target).map_err(|error| DeliveryError::Screen { target: target.into(), error })?;
        Ok(pane::input_rows(&screen).map(|rows| {
            if rows.concat().is_empty() {
                Vec::new()
            } else {
                rows.iter().map(|r| r.to_string()).collect()
            }
        }))
    };
    // Enough Ctrl-U for `n` rows; one when the box is not seen.
    let clear = |n: usize| {
        let keys = vec!["C-u"; 2 * n + 1];
        tmux.send_keys(target, &keys).map_err(|error| DeliveryError::Clear { target: target.into(), error })
    };
    let first = match rows(tmux)? {
        Some(rows) if rows.is_empty() => return Ok(()),
        // No input box on screen: all that can be done blind.
        None => return clear(0),
        Some(rows) => rows,
    };
    clear(first.len())?;
    let deadline = Instant::now() + CLEAR_WITHIN;
    loop {
        keep_alive();
        match rows(tmux)? {
            None => return Ok(()),
            Some(rows) if rows.is_empty() => return Ok(()),
            // Ctrl-U changed nothing at all: not text in the box but
            // something drawn there (a hint), which the paste replaces.
            Some(rows) if Instant::now() >= deadline && rows == first => {
                log::warn!("{target}: the input box shows {:?} through Ctrl-U; pasting anyway", rows.join(" "));
                return Ok(());
            }
            Some(rows) if Instant::now() >= deadline => {
                return Err(DeliveryError::InputNotEmpty { target: target.into(), rows: rows.len() })
            }
            // Claude Code may not have drawn the cleared box yet; more
            // Ctrl-U on an empty box do nothing.
            Some(rows) => clear(rows.len())?,
        }
        std::thread::sleep(PASTE_LOOK_EVERY);
    }
}

fn submitted(reader: &mut TranscriptReader, tmux: &Tmux, target: &str) -> bool {
    if let Ok(records) = reader.read_new() {
        if records.iter().any(|r| matches!(r.kind, RecordKind::UserTurn { .. })) {
            return true;
        }
    }
    matches!(tmux.capture_pane(target).map(|t| pane::classify(&t)), Ok(PaneState::Busy))
}

/// Waits until the input box shows the pasted text (or `until`): sent
/// earlier, Enter would be taken as part of the paste.
fn wait_for_paste(tmux: &Tmux, target: &str, text: &str, until: Instant, keep_alive: &dyn Fn()) {
    while Instant::now() < until {
        keep_alive();
        let input = tmux.capture_pane(target).ok().and_then(|t| pane::input_text(&t));
        if input.is_some_and(|input| shows_paste(&input, text)) {
            return pause(AFTER_SHOWN, keep_alive);
        }
        std::thread::sleep(PASTE_LOOK_EVERY.min(until.saturating_duration_since(Instant::now())));
    }
}

/// Whether the input box holds this paste: Claude Code shows a long or
/// multi-line one as `[Pasted text #N ...]`, a short one as its text (its
/// start is compared: a wrapped line comes back with a space at the wrap).
/// Anything else is text left from before that the Ctrl-U has not cleared yet.
fn shows_paste(input: &str, text: &str) -> bool {
    if input.contains("[Pasted text") {
        return true;
    }
    let squeeze = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let (input, text) = (squeeze(input), squeeze(text));
    let head: String = text.chars().take(16).collect();
    !head.is_empty() && input.starts_with(&head)
}

/// A deliberate protocol pause, keeping the caller's heartbeat meanwhile.
fn pause(d: Duration, keep_alive: &dyn Fn()) {
    let end = Instant::now() + d;
    while Instant::now() < end {
        keep_alive();
        std::thread::sleep(LOOK_EVERY.min(end.saturating_duration_since(Instant::now())));
    }
}

#[cfg(test)]
mod tests {
    use super::shows_paste;

    #[test]
    fn the_paste_is_recognised_in_the_input_box() {
        let text = "You were interrupted by a usage limit while working on the task from a.md. Continue.";
        assert!(shows_paste("You were interrupted by a usage limit while wor king", text));
        assert!(shows_paste("[Pasted text #1 +3 lines]", "line one\nline two\nline three\nfour"));
        assert!(!shows_paste("", text));
        assert!(!shows_paste("left over from before", text));
    }
}
