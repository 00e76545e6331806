//! TensorBoard event files: `events.out.tfevents.<secs>.<host>.<pid>[.<n>]`, one per
//! [`EventWriter`] (one per process start), append-only, each record written whole
//! and flushed. The messages are the few fields of TensorFlow's `event.proto`,
//! `summary.proto` and `tensor.proto` that scalars and text need, derived with `prost`;
//! records are framed as TFRecord (length, masked CRC-32C of it, data, masked CRC-32C).
//!
//! Every file starts with `file_version = "brain.Event:2"` and a `SessionLog.START` at
//! the step the process starts from, so TensorBoard drops what a killed run logged
//! past its checkpoint and a resumed run reads as one continuous curve.

use anyhow::{Context, Result};
use prost::Message;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// `tensorflow.Event` (the fields used here; `file_version`, `summary` and
/// `session_log` are one `oneof` in the schema, and each event sets one).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Event {
    /// Seconds since the epoch.
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    /// Global step.
    #[prost(int64, tag = "2")]
    pub step: i64,
    /// `brain.Event:2` in a file's first event.
    #[prost(string, optional, tag = "3")]
    pub file_version: Option<String>,
    /// Values at this step.
    #[prost(message, optional, tag = "5")]
    pub summary: Option<Summary>,
    /// A process start.
    #[prost(message, optional, tag = "7")]
    pub session_log: Option<SessionLog>,
}

/// `tensorflow.SessionLog`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SessionLog {
    /// 1 = START.
    #[prost(int32, tag = "1")]
    pub status: i32,
}

/// `tensorflow.Summary`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Summary {
    /// One value per tag.
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<SummaryValue>,
}

/// `tensorflow.Summary.Value`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SummaryValue {
    /// The tag, e.g. `pretrain/loss`.
    #[prost(string, tag = "1")]
    pub tag: String,
    /// A scalar (set even when 0, as the schema's `oneof` requires).
    #[prost(float, optional, tag = "2")]
    pub simple_value: Option<f32>,
    /// A tensor (text).
    #[prost(message, optional, tag = "8")]
    pub tensor: Option<TensorProto>,
    /// Which plugin shows it.
    #[prost(message, optional, tag = "9")]
    pub metadata: Option<SummaryMetadata>,
}

/// `tensorflow.SummaryMetadata`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SummaryMetadata {
    /// The plugin.
    #[prost(message, optional, tag = "1")]
    pub plugin_data: Option<PluginData>,
}

/// `tensorflow.SummaryMetadata.PluginData`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PluginData {
    /// `text`.
    #[prost(string, tag = "1")]
    pub plugin_name: String,
}

/// `tensorflow.TensorProto`: a scalar string tensor here.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorProto {
    /// `DT_STRING` = 7.
    #[prost(int32, tag = "1")]
    pub dtype: i32,
    /// Empty: a scalar.
    #[prost(message, optional, tag = "2")]
    pub tensor_shape: Option<TensorShape>,
    /// The string.
    #[prost(bytes = "vec", repeated, tag = "8")]
    pub string_val: Vec<Vec<u8>>,
}

/// `tensorflow.TensorShapeProto` (no dimensions: a scalar).
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorShape {}

const DT_STRING: i32 = 7;
const SESSION_START: i32 = 1;

/// The TFRecord checksum: CRC-32C, rotated and offset.
fn masked_crc(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// One TFRecord: length, its masked CRC, the data, its masked CRC.
pub fn frame_record(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc(data).to_le_bytes());
    out
}

/// One event file, appended to and flushed record by record.
pub struct EventWriter {
    file: File,
    /// The file's path.
    pub path: PathBuf,
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates or truncates.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).into_owned();
    if rc != 0 || name.is_empty() {
        return "localhost".into();
    }
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The largest `<secs>` of the `events.out.tfevents.<secs>.*` files in `dir`.
fn latest_event_secs(dir: &Path) -> Option<u64> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let rest = name.strip_prefix("events.out.tfevents.")?;
            rest.split('.').next()?.parse::<u64>().ok()
        })
        .max()
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl EventWriter {
    /// A new event file in `dir` (created if missing) for a process that starts at
    /// `start_step` (0 for a fresh run; a resumed run's checkpoint step). TensorBoard
    /// then keeps the steps up to `start_step` from earlier files and drops the rest.
    pub fn create(dir: &Path, start_step: u64) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        // TensorBoard reads a folder's files in name order: the name's seconds are
        // moved past those of every file there (two starts within one second).
        let latest = latest_event_secs(dir);
        let secs = (now() as u64).max(latest.map_or(0, |s| s + 1));
        let base = format!(
            "events.out.tfevents.{secs:010}.{}.{}",
            hostname(),
            std::process::id()
        );
        let mut n = 0;
        let (file, path) = loop {
            let name = match n {
                0 => base.clone(),
                n => format!("{base}.{n}"),
            };
            let path = dir.join(name);
            match File::options().write(true).create_new(true).open(&path) {
                Ok(f) => break (f, path),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => n += 1,
                Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
            }
        };
        let mut w = EventWriter { file, path };
        w.write(&Event {
            wall_time: now(),
            file_version: Some("brain.Event:2".into()),
            ..Default::default()
        })?;
        // Steps >= this one logged by an earlier process are orphans (past its checkpoint).
        let restart = if start_step > 0 { start_step + 1 } else { 0 };
        w.write(&Event {
            wall_time: now(),
            step: restart as i64,
            session_log: Some(SessionLog {
                status: SESSION_START,
            }),
            ..Default::default()
        })?;
        Ok(w)
    }

    fn write(&mut self, event: &Event) -> Result<()> {
        let record = frame_record(&event.encode_to_vec());
        self.file
            .write_all(&record)
            .and_then(|()| self.file.flush())
            .with_context(|| format!("writing {}", self.path.display()))
    }

    /// Scalars `(tag, value)` at `step`, as one event.
    pub fn scalars(&mut self, step: u64, values: &[(String, f64)]) -> Result<()> {
        let value = values
            .iter()
            .map(|(tag, v)| SummaryValue {
                tag: tag.clone(),
                simple_value: Some(*v as f32),
                ..Default::default()
            })
            .collect();
        self.write(&Event {
            wall_time: now(),
            step: step as i64,
            summary: Some(Summary { value }),
            ..Default::default()
        })
    }

    /// Text (TensorBoard's text plugin renders it as Markdown) under `tag` at `step`.
    pub fn text(&mut self, step: u64, tag: &str, text: &str) -> Result<()> {
        let value = SummaryValue {
            tag: tag.to_string(),
            tensor: Some(TensorProto {
                dtype: DT_STRING,
                tensor_shape: Some(TensorShape {}),
                string_val: vec![text.as_bytes().to_vec()],
            }),
            metadata: Some(SummaryMetadata {
                plugin_data: Some(PluginData {
                    plugin_name: "text".into(),
                }),
            }),
            ..Default::default()
        };
        self.write(&Event {
            wall_time: now(),
            step: step as i64,
            summary: Some(Summary { value: vec![value] }),
            ..Default::default()
        })
    }
}

/// A config file as TensorBoard text: a fenced block, so Markdown keeps its lines.
pub fn config_text(toml: &str) -> String {
    format!("```toml\n{toml}\n```")
}
