//! Progress of long operations on stderr: a bar on a terminal, one line per step otherwise
//! (logs and CI keep a record; scripts read the lines).

use indicatif::{ProgressBar, ProgressStyle};

#[derive(Debug)]
pub struct Progress {
    bar: ProgressBar,
    /// What each plain line starts with, e.g. `listings:`.
    label: &'static str,
}

impl Progress {
    pub fn new(label: &'static str, total: u64) -> Self {
        let bar = ProgressBar::new(total);
        if let Ok(style) = ProgressStyle::with_template(
            "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} ({eta} left) {msg}",
        ) {
            bar.set_style(style);
        }
        bar.set_prefix(label);
        Self { bar, label }
    }

    /// Moves the bar to `position` with `message`; without a terminal, prints one line:
    /// `{label} {position} of {total} ({percent} %, {time} left): {message}`. `position` counts
    /// from the operation's start, across runs (a resumed operation starts where its checkpoint
    /// is), so the total, percentage and time left are true.
    #[allow(clippy::print_stderr)] // progress is part of the command's output
    pub fn step(&self, position: u64, message: String) {
        self.bar.set_position(position);
        if self.bar.is_hidden() {
            let total = self.bar.length().unwrap_or(0);
            let percent = if total == 0 {
                100.0
            } else {
                position as f64 * 100.0 / total as f64
            };
            let left = if position >= total {
                String::new()
            } else {
                format!(", {} left", storage::soak::human(self.bar.eta()))
            };
            eprintln!(
                "{} {position} of {total} ({percent:.1} %{left}): {message}",
                self.label
            );
        } else {
            self.bar.set_message(message);
        }
    }

    /// Shows `message` without moving the bar (a line of its own without a terminal).
    #[allow(clippy::print_stderr)] // progress is part of the command's output
    pub fn note(&self, message: &str) {
        if self.bar.is_hidden() {
            eprintln!("{} {message}", self.label);
        } else {
            self.bar.set_message(message.to_owned());
        }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
