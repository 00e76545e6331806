//! Progress reporting: an indicatif bar on a terminal; otherwise (logs, CI, batch jobs)
//! optional plain lines at every tenth of the work.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;

/// A progress bar, or plain log lines when stderr is not a terminal.
pub struct Progress {
    bar: Option<ProgressBar>,
    prefix: String,
    len: u64,
    pos: u64,
    plain: bool,
    msg: String,
}

impl Progress {
    /// Whether stderr is a terminal.
    pub fn is_terminal() -> bool {
        std::io::stderr().is_terminal()
    }

    /// A bar of `len` steps; off a terminal, silent (the caller logs).
    pub fn new(prefix: &str, len: u64) -> Self {
        Self::build(prefix, len, false)
    }

    /// A bar of `len` steps; off a terminal, a plain line at every tenth.
    pub fn with_plain_lines(prefix: &str, len: u64) -> Self {
        Self::build(prefix, len, true)
    }

    fn build(prefix: &str, len: u64, plain: bool) -> Self {
        let bar = Self::is_terminal().then(|| {
            let bar = ProgressBar::new(len);
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {pos}/{len} {per_sec} eta {eta} {msg}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar.set_prefix(prefix.to_string());
            bar
        });
        Progress {
            bar,
            prefix: prefix.to_string(),
            len,
            pos: 0,
            plain,
            msg: String::new(),
        }
    }

    /// Advance.
    pub fn inc(&mut self, n: u64) {
        let before = self.pos * 10 / self.len.max(1);
        self.pos += n;
        match &self.bar {
            Some(b) => b.inc(n),
            None if self.plain && self.pos * 10 / self.len.max(1) > before => {
                eprintln!("{}: {}/{} {}", self.prefix, self.pos, self.len, self.msg);
            }
            None => {}
        }
    }

    /// Set the trailing message.
    pub fn set_message(&mut self, msg: String) {
        if let Some(b) = &self.bar {
            b.set_message(msg.clone());
        }
        self.msg = msg;
    }

    /// Finish and leave the bar on screen.
    pub fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish();
        }
    }
}
