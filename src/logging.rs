//! Logging through `tracing`: levels, UTC timestamps, `RUST_LOG`, `-q`/`-v`, and
//! `--log-format json` (one JSON object per line) for cluster log collectors. On a
//! terminal, progress bars (`tracing-indicatif`, see [`crate::progress`]) and log
//! lines share stderr without tearing. Command summaries stay on stdout.
//!
//! The pattern for a log line: `tracing::info!("...")` (or `warn!`, `debug!`) instead
//! of `eprintln!`.

use tracing_indicatif::IndicatifLayer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter};

/// Log line format (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// `2025-01-01T12:00:00.000000Z  INFO message`
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `fields.message`, ...).
    Json,
}

/// The filter for `verbosity` (`-v` count minus `-q` count) when `RUST_LOG` is unset:
/// pstl at info by default, other crates at warn.
pub fn default_directive(verbosity: i8) -> &'static str {
    match verbosity {
        i8::MIN..=-2 => "error",
        -1 => "warn",
        0 => "warn,pstl=info",
        1 => "warn,pstl=debug",
        _ => "debug,pstl=trace",
    }
}

/// Install the global subscriber (once; later calls are ignored, e.g. in tests).
pub fn init(format: LogFormat, verbosity: i8) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(default_directive(verbosity)));
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .with_current_span(false)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Text => {
            let bars = IndicatifLayer::new();
            let writer = bars.get_stderr_writer();
            registry
                .with(
                    fmt::layer()
                        .with_target(false)
                        .with_ansi(crate::progress::Progress::is_terminal())
                        .with_writer(writer),
                )
                .with(bars)
                .try_init()
        }
    };
}
