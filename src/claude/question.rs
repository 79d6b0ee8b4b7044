//! A question a person must answer, read off a Claude Code screen: the dialog
//! drawn under the last rule (a permission prompt, a plan to approve, a
//! choice), with its heading, its question line and its options as they are
//! drawn — never matched against a list of known prompt texts — and the keys
//! that choose one of them from where the cursor stands.
//!
//! Shapes seen (2.1.197, 2.1.332): a `───` rule, a heading (`Bash command`),
//! detail lines (the command, a description; 2.1.332 puts the command between
//! two dashed `╌╌╌` rules), the question (`Do you want to proceed?`),
//! numbered options with a `❯` cursor (`❯ 1. Yes`, `  2. No`), or unnumbered
//! ones (`❯ Yes, set auto mode …`, `  No, keep manual mode`), then a footer
//! (`Esc to cancel · Tab to amend`).

use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Question {
    /// The dialog's first line (`Bash command`); empty when the question is it.
    pub title: String,
    /// What is asked (`Do you want to proceed?`): the last line above the options.
    pub prompt: String,
    /// The lines between the title and the question (the command, a description).
    pub detail: Vec<String>,
    /// The options' labels, numbering taken off, in screen order.
    pub options: Vec<String>,
    /// The option the cursor (`❯`) is on.
    #[serde(skip)]
    pub cursor: usize,
    /// Its footer offers Esc to cancel: a free-text answer can take that way.
    pub cancellable: bool,
}

/// How a person answered a question.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Choice {
    /// The option at this index of [`Question::options`].
    Option(usize),
    /// Text instead of an option: the dialog is cancelled (Esc) and the text
    /// sent as the session's next prompt.
    Text(String),
}

impl Question {
    /// The same question, wherever the cursor stands.
    pub fn same_as(&self, other: &Question) -> bool {
        self.title == other.title
            && self.prompt == other.prompt
            && self.detail == other.detail
            && self.options == other.options
    }

    /// The keys that choose option `index` from the cursor: Up or Down as
    /// many times as the options lie apart, then Enter. None for an index
    /// the question does not have.
    pub fn keys_for(&self, index: usize) -> Option<Vec<&'static str>> {
        if index >= self.options.len() {
            return None;
        }
        let step = if index > self.cursor { "Down" } else { "Up" };
        let mut keys: Vec<&'static str> = std::iter::repeat_n(step, index.abs_diff(self.cursor)).collect();
        keys.push("Enter");
        Some(keys)
    }
}

/// The question at the bottom of `screen`, if a dialog with at least two
/// options is drawn there.
pub fn parse(screen: &str) -> Option<Question> {
    let lines: Vec<&str> = screen.lines().map(str::trim_end).collect();
    let last = lines.iter().rposition(|l| !l.trim().is_empty())?;
    let lines = &lines[..=last];
    let (first, end, options, cursor) = numbered_options(lines).or_else(|| cursor_options(lines))?;
    if options.len() < 2 {
        return None;
    }
    let top = lines[..first].iter().rposition(|l| is_rule(l)).map_or(0, |r| r + 1);
    let above: Vec<String> = lines[top..first]
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty() && !is_dashed_rule(l))
        .map(str::to_string)
        .collect();
    let (prompt, rest) = above.split_last()?;
    let (title, detail) = match rest.split_first() {
        Some((title, detail)) => (title.clone(), detail.to_vec()),
        None => (String::new(), Vec::new()),
    };
    let footer = lines[end..].join("\n").to_lowercase();
    Some(Question {
        title,
        prompt: prompt.clone(),
        detail,
        options,
        cursor,
        cancellable: footer.contains("esc to cancel"),
    })
}

/// A rule that opens a dialog: `───` (the input box's and 2.1.197's), `▔▔▔`
/// (2.1.332's dialog edge). Dashed `╌╌╌` rules sit inside a dialog.
fn is_rule(line: &str) -> bool {
    line.trim().chars().take(10).filter(|c| matches!(c, '─' | '━' | '▔')).count() == 10
}

fn is_dashed_rule(line: &str) -> bool {
    line.trim().chars().take(10).filter(|c| *c == '╌').count() == 10
}

/// `❯ 1. Yes` or `  2. No`: the number and the label.
fn numbered(line: &str) -> Option<(usize, &str, bool)> {
    let t = line.trim_start();
    let (cursor, t) = match t.strip_prefix('❯') {
        Some(rest) => (true, rest.trim_start()),
        None => (false, t),
    };
    let digits = t.chars().take_while(char::is_ascii_digit).count();
    let n: usize = t[..digits].parse().ok()?;
    let label = t[digits..].strip_prefix(". ")?.trim();
    (!label.is_empty()).then_some((n, label, cursor))
}

/// The last run of options numbered 1, 2, 3, … : (first line, line after the
/// last, labels, cursor index). A wrapped label's next line is not an option
/// and ends nothing: it is skipped.
fn numbered_options(lines: &[&str]) -> Option<(usize, usize, Vec<String>, usize)> {
    let last_one = lines.iter().rposition(|l| numbered(l).is_some_and(|(n, _, _)| n == 1))?;
    let mut options = Vec::new();
    let mut cursor = 0;
    let mut end = last_one;
    for (i, line) in lines.iter().enumerate().skip(last_one) {
        match numbered(line) {
            Some((n, label, here)) if n == options.len() + 1 => {
                if here {
                    cursor = options.len();
                }
                options.push(label.to_string());
                end = i + 1;
            }
            Some(_) => break,
            None if line.trim().is_empty() => break,
            None => {}
        }
    }
    Some((last_one, end, options, cursor))
}

/// Unnumbered options: the `❯` line and its neighbours indented to the
/// cursor's label, with no blank line between.
fn cursor_options(lines: &[&str]) -> Option<(usize, usize, Vec<String>, usize)> {
    let at = lines.iter().rposition(|l| l.trim_start().starts_with('❯'))?;
    let line = lines[at];
    let sign = line.find('❯')?;
    let after = &line[sign + '❯'.len_utf8()..];
    let label_col = line[..sign].chars().count() + 1 + (after.chars().count() - after.trim_start().chars().count());
    let is_option = |l: &str| {
        let indent = l.chars().count() - l.trim_start().chars().count();
        !l.trim().is_empty() && indent == label_col && !l.trim_start().starts_with('❯')
    };
    let mut first = at;
    while first > 0 && is_option(lines[first - 1]) {
        first -= 1;
    }
    let mut end = at + 1;
    while end < lines.len() && is_option(lines[end]) {
        end += 1;
    }
    let options = (first..end).map(|i| lines[i].trim().trim_start_matches('❯').trim().to_string()).collect();
    Some((first, end, options, at - first))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(version: &str, name: &str) -> String {
        let path = format!("{}/tests/fixtures/claude-{version}/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn questions_from_captured_screens() {
        // (version, fixture, title, prompt, detail, options, cursor, cancellable)
        type Row =
            (&'static str, &'static str, &'static str, &'static str, Vec<&'static str>, Vec<&'static str>, usize, bool);
        let table: Vec<Row> = vec![
            (
                "2.1.332",
                "permission-prompt.txt",
                "Bash command",
                "Do you want to proceed?",
                vec![
                    "Tip: auto mode handles these prompts for you — choose \"switch to auto mode\" below",
                    "Run the requested command",
                    "touch /tmp/cf-fixture-permission",
                ],
                vec![
                    "Yes",
                    "Yes, and always allow access to /tmp from this project",
                    "Yes, and switch to auto mode · auto mode handles these prompts for you",
                    "No",
                ],
                0,
                true,
            ),
            (
                "2.1.197",
                "permission-prompt.txt",
                "Bash command",
                "Do you want to proceed?",
                vec!["touch /tmp/cf-fixture-permission", "Run the requested command"],
                vec!["Yes", "Yes, and always allow access to tmp/ from this project", "No"],
                0,
                true,
            ),
            (
                "2.1.332",
                "auto-mode-offer.txt",
                "Make auto mode your default permission mode?",
                "blocks the rest.",
                vec![
                    "Auto mode lets Claude handle permission prompts automatically. Claude checks each tool call for risky actions and prompt injection before executing, runs the ones it assesses as lower-risk, and",
                ],
                vec!["Yes, set auto mode as my default permission mode", "No, keep manual mode"],
                0,
                false,
            ),
            (
                "2.1.332",
                "trust-dialog.txt",
                "Accessing workspace:",
                "Security guide",
                vec![
                    "/tmp/cf-capture.7Pgy1j/project",
                    "Quick safety check: Is this a project you created or one you trust? (Like your own code, a well-known open source project, or work from your team). If not, take a moment to review what's in this",
                    "folder first.",
                    "Claude Code'll be able to read, edit, and execute files here.",
                ],
                vec!["No, exit", "Yes, I trust this folder"],
                0,
                true,
            ),
        ];
        for (version, name, title, prompt, detail, options, cursor, cancellable) in table {
            let q = parse(&fixture(version, name)).unwrap_or_else(|| panic!("{version} {name}: no question"));
            let want = Question {
                title: title.into(),
                prompt: prompt.into(),
                detail: strings(&detail),
                options: strings(&options),
                cursor,
                cancellable,
            };
            assert_eq!(q, want, "{version} {name}");
        }
    }

    #[test]
    fn screens_without_a_question() {
        for (version, name) in [
            ("2.1.332", "idle.txt"),
            ("2.1.332", "busy.txt"),
            ("2.1.332", "auto-mode-dialog.txt"),
            ("2.1.332", "rate-limit-five-hour.txt"),
            ("2.1.197", "idle.txt"),
        ] {
            assert_eq!(parse(&fixture(version, name)), None, "{version} {name}");
        }
        assert_eq!(parse(""), None);
    }

    #[test]
    fn options_wherever_the_cursor_stands() {
        let rule = "─".repeat(40);
        let screen = |cursor: usize| {
            let opts = ["Approve the plan", "Keep planning", "Tell Claude what to change"];
            let mut s =
                format!("{rule}\n Plan ready\n\n Step 1: tests\n Step 2: code\n\n Would you like to proceed?\n");
            for (i, o) in opts.iter().enumerate() {
                let sign = if i == cursor { "❯" } else { " " };
                s.push_str(&format!(" {sign} {}. {o}\n", i + 1));
            }
            s.push_str("\n Enter to confirm · Esc to cancel\n");
            s
        };
        let q = parse(&screen(2)).expect("a question");
        assert_eq!(q.title, "Plan ready");
        assert_eq!(q.prompt, "Would you like to proceed?");
        assert_eq!(q.detail, ["Step 1: tests", "Step 2: code"]);
        assert_eq!(q.cursor, 2);
        assert!(q.same_as(&parse(&screen(0)).unwrap()));
        assert_eq!(q.keys_for(0), Some(vec!["Up", "Up", "Enter"]));
        assert_eq!(q.keys_for(2), Some(vec!["Enter"]));
        assert_eq!(q.keys_for(3), None);
        let q0 = parse(&screen(0)).unwrap();
        assert_eq!(q0.keys_for(1), Some(vec!["Down", "Enter"]));
    }
}
