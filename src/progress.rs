//! Progress reporting: a bar on a terminal (a `tracing` span drawn by
//! `tracing-indicatif`, so log lines print above it); otherwise (logs, CI, batch jobs)
//! optional plain log lines at every tenth of the work.

use indicatif::ProgressStyle;
use std::io::IsTerminal;
use tracing::Span;
use tracing_indicatif::span_ext::IndicatifSpanExt;

/// A progress bar, or plain log lines when stderr is not a terminal.
pub struct Progress {
    span: Span,
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

    /// A bar of `len` steps; off a terminal, a plain log line at every tenth.
    pub fn with_plain_lines(prefix: &str, len: u64) -> Self {
        Self::build(prefix, len, true)
    }

    fn build(prefix: &str, len: u64, plain: bool) -> Self {
        let span = tracing::info_span!("progress", task = prefix);
        if let Ok(style) =
            ProgressStyle::with_template("[{bar:30}] {pos}/{len} {per_sec} eta {eta} {msg}")
        {
            span.pb_set_style(&style.progress_chars("=> "));
        }
        span.pb_set_length(len);
        span.pb_set_message(prefix);
        span.pb_start();
        Progress {
            span,
            prefix: prefix.to_string(),
            len,
            pos: 0,
            plain: plain && !Self::is_terminal(),
            msg: String::new(),
        }
    }

    /// Advance.
    pub fn inc(&mut self, n: u64) {
        let before = self.pos * 10 / self.len.max(1);
        self.pos += n;
        self.span.pb_inc(n);
        if self.plain && self.pos * 10 / self.len.max(1) > before {
            tracing::info!("{}: {}/{} {}", self.prefix, self.pos, self.len, self.msg);
        }
    }

    /// Set the trailing message.
    pub fn set_message(&mut self, msg: String) {
        self.span.pb_set_message(&format!("{} {msg}", self.prefix));
        self.msg = msg;
    }

    /// Finish: the bar disappears.
    pub fn finish(&mut self) {
        self.span = Span::none();
    }
}
