//! One run directory, one job: its files ([`RunFiles`], `config.toml`, `command.txt`),
//! the run lock, `--fresh` moving an old run aside, the metrics file ([`MetricsRow`],
//! [`MetricsLog`]) and its clean-up before a resume (cut back to the checkpoint, stale
//! temporaries removed), the resume config check, and the stop signals of schedulers.

use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Exit status of a `pretrain` that stopped on SIGTERM, SIGINT or SIGUSR1 after writing
/// its checkpoint (`EX_TEMPFAIL`: run the same command again to continue).
pub const EXIT_INTERRUPTED: i32 = 75;

/// The lock file inside a run directory.
pub const LOCK_FILE: &str = ".lock";

/// Names of the files in a run directory.
pub struct RunFiles {
    /// The run directory.
    pub dir: PathBuf,
}

impl RunFiles {
    /// Latest checkpoint (full state, for resume).
    pub fn checkpoint(&self) -> PathBuf {
        self.dir.join("checkpoint.safetensors")
    }
    /// The `i`-th newest kept checkpoint (0: [`RunFiles::checkpoint`]).
    pub fn checkpoint_n(&self, i: usize) -> PathBuf {
        match i {
            0 => self.checkpoint(),
            i => self.dir.join(format!("checkpoint.{i}.safetensors")),
        }
    }
    /// The kept checkpoints that exist, newest first.
    pub fn checkpoints(&self) -> Vec<PathBuf> {
        let mut found: Vec<(usize, PathBuf)> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let i = match name.as_str() {
                    "checkpoint.safetensors" => 0,
                    n => n
                        .strip_prefix("checkpoint.")?
                        .strip_suffix(".safetensors")?
                        .parse()
                        .ok()?,
                };
                e.path().is_file().then(|| (i, e.path()))
            })
            .collect();
        found.sort();
        found.into_iter().map(|(_, p)| p).collect()
    }
    /// The newest kept checkpoint, if any.
    pub fn latest_checkpoint(&self) -> Option<PathBuf> {
        self.checkpoints().into_iter().next()
    }
    /// Final encoder in official keys (what `eval`, `embed` and `export` take).
    pub fn encoder(&self) -> PathBuf {
        self.dir.join("encoder.safetensors")
    }
    /// Per-interval metrics.
    pub fn metrics(&self) -> PathBuf {
        self.dir.join("metrics.csv")
    }
    /// Loss curves.
    pub fn loss_plot(&self) -> PathBuf {
        self.dir.join("loss.png")
    }
}

/// Create `dir`, and write the resolved config and the command line into it.
pub fn prepare_run_dir(dir: &Path, cfg: &crate::config::Config) -> Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating run directory {}", dir.display()))?;
    crate::io::atomic_write(&dir.join("config.toml"), cfg.to_toml().as_bytes())?;
    let cmd: Vec<String> = std::env::args().collect();
    crate::io::atomic_write(
        &dir.join("command.txt"),
        format!("{}\n", shell_join(&cmd)).as_bytes(),
    )?;
    Ok(())
}

/// Arguments as one shell-quoted line.
pub fn shell_join(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./=:,".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// An exclusive `flock` on `<run>/.lock`, held while the value lives (the kernel drops
/// it when the process dies, so a killed job never leaves a stale lock).
#[derive(Debug)]
pub struct RunLock {
    _file: File,
    /// The locked run directory.
    pub dir: PathBuf,
}

impl RunLock {
    /// Lock `dir` (created if missing) or fail at once if another process holds it.
    pub fn acquire(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(LOCK_FILE);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        // flock(2): exclusive, non-blocking; std's File::try_lock needs Rust 1.89.
        let rc = unsafe {
            libc::flock(
                std::os::fd::AsRawFd::as_raw_fd(&file),
                libc::LOCK_EX | libc::LOCK_NB,
            )
        };
        if rc == 0 {
            return Ok(RunLock {
                _file: file,
                dir: dir.to_path_buf(),
            });
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            bail!(
                "run directory {} is in use by another pstl process (lock {}); \
                 wait for it to finish or choose another run.name",
                dir.display(),
                path.display()
            );
        }
        Err(err).with_context(|| format!("locking {}", path.display()))
    }
}

/// `--fresh`: rename a non-empty `dir` to `<dir>.old-<unix seconds>` (the old run is
/// kept, never truncated); refuses while another process holds its lock.
pub fn move_aside(dir: &Path) -> Result<Option<PathBuf>> {
    let non_empty = std::fs::read_dir(dir)
        .map(|mut d| d.next().is_some())
        .unwrap_or(false);
    if !non_empty {
        return Ok(None);
    }
    let lock = RunLock::acquire(dir)?;
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut target = PathBuf::from(format!("{}.old-{secs}", dir.display()));
    let mut i = 1;
    while target.exists() {
        target = PathBuf::from(format!("{}.old-{secs}-{i}", dir.display()));
        i += 1;
    }
    std::fs::rename(dir, &target)
        .with_context(|| format!("moving {} to {}", dir.display(), target.display()))?;
    drop(lock);
    Ok(Some(target))
}

/// Remove temporaries left in `dir` by a killed writer (`*.tmp`, `*.tmp.*`); call with the
/// run lock held. Returns how many were removed.
pub fn remove_stale_tmp(dir: &Path) -> Result<usize> {
    let mut n = 0;
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(_) => return Ok(0),
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if (name.ends_with(".tmp") || name.contains(".tmp.") || name.starts_with(".tmp"))
            && entry.file_type().map(|t| t.is_file()).unwrap_or(false)
        {
            std::fs::remove_file(entry.path())
                .with_context(|| format!("removing {}", entry.path().display()))?;
            n += 1;
        }
    }
    Ok(n)
}

/// Keep the rows of `metrics.csv` up to `step` (and drop a half-written last line),
/// rewriting the file atomically. Returns the rows kept.
pub fn truncate_metrics(path: &Path, step: u64) -> Result<Vec<MetricsRow>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let mut reader =
        csv::Reader::from_path(path).with_context(|| format!("reading {}", path.display()))?;
    let rows: Vec<MetricsRow> = reader
        .deserialize::<MetricsRow>()
        .map_while(|r| r.ok())
        .filter(|r| r.step <= step)
        .collect();
    crate::io::atomic_write_with(path, |tmp| {
        let mut w = csv::Writer::from_path(tmp)?;
        for r in &rows {
            w.serialize(r)?;
        }
        if rows.is_empty() {
            w.write_record(METRICS_HEADER)?;
        }
        w.flush()?;
        Ok(())
    })?;
    Ok(rows)
}

/// One metrics row.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct MetricsRow {
    /// Epoch (0-based).
    pub epoch: usize,
    /// Global step after this interval.
    pub step: u64,
    /// Learning rate.
    pub lr: f64,
    /// Mean total loss over the interval.
    pub loss: f64,
    /// Mean BT(anchor, MATM).
    pub loss_matm: f64,
    /// Mean BT(anchor, CSM).
    pub loss_csm: f64,
    /// Mean on-diagonal part (both losses).
    pub on_diag: f64,
    /// Mean off-diagonal part (both losses, before lambda).
    pub off_diag: f64,
    /// Throughput over the interval.
    pub samples_per_s: f64,
    /// Seconds since the start of this invocation.
    pub seconds: f64,
}

impl MetricsRow {
    /// The row's values as TensorBoard scalars `<group>/<column>` (all but `epoch`,
    /// `step` and `seconds`, which are the axes).
    pub fn scalars(&self, group: &str) -> Vec<(String, f64)> {
        [
            ("loss", self.loss),
            ("loss_matm", self.loss_matm),
            ("loss_csm", self.loss_csm),
            ("on_diag", self.on_diag),
            ("off_diag", self.off_diag),
            ("lr", self.lr),
            ("samples_per_s", self.samples_per_s),
        ]
        .into_iter()
        .map(|(k, v)| (format!("{group}/{k}"), v))
        .collect()
    }
}

/// Rank 0's metrics file, its TensorBoard events (one file per process start, the
/// same rows as `pretrain/<column>` at the same steps) and the history.
pub struct MetricsLog {
    csv: csv::Writer<File>,
    events: crate::tensorboard::EventWriter,
    /// Rows logged so far (those kept from before a resume first).
    pub history: Vec<MetricsRow>,
}

impl MetricsLog {
    /// Open `metrics.csv` for a run at `step`: cut back to that step (a killed run may
    /// have logged past its checkpoint, or half a line), or started anew at step 0.
    pub fn open(files: &RunFiles, step: u64) -> Result<Self> {
        let path = files.metrics();
        let history = if step > 0 {
            remove_stale_tmp(&files.dir)?;
            truncate_metrics(&path, step)?
        } else {
            Vec::new()
        };
        let append = step > 0 && path.exists();
        let file = File::options()
            .create(true)
            .append(append)
            .write(true)
            .truncate(!append)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        let csv = csv::WriterBuilder::new()
            .has_headers(!append)
            .from_writer(file);
        let events = crate::tensorboard::EventWriter::create(&files.dir, step)?;
        Ok(MetricsLog {
            csv,
            events,
            history,
        })
    }

    /// The run's config as TensorBoard text (`config`), at the step this process starts.
    pub fn config_text(&mut self, step: u64, toml: &str) -> Result<()> {
        let text = crate::tensorboard::config_text(toml);
        self.events.text(step, "config", &text)
    }

    /// Append one row (flushed at once, so a killed run keeps every logged line), in
    /// `metrics.csv` and as TensorBoard scalars.
    pub fn push(&mut self, row: MetricsRow) -> Result<()> {
        self.csv.serialize(&row)?;
        self.csv.flush()?;
        self.events.scalars(row.step, &row.scalars("pretrain"))?;
        self.history.push(row);
        Ok(())
    }
}

/// Read a metrics CSV back (for plots after resume).
pub fn read_metrics(path: &Path) -> Result<Vec<MetricsRow>> {
    let mut r = csv::Reader::from_path(path)?;
    Ok(r.deserialize().collect::<std::result::Result<_, _>>()?)
}

const METRICS_HEADER: [&str; 10] = [
    "epoch",
    "step",
    "lr",
    "loss",
    "loss_matm",
    "loss_csm",
    "on_diag",
    "off_diag",
    "samples_per_s",
    "seconds",
];

/// Config keys that do not change a run's result and may differ on resume.
const FREE_KEYS: &[&str] = &[
    "run.device",
    "run.threads",
    "run.dir",
    "data.prefetch",
    "data.memory_budget_mb",
    "pretrain.log_every",
    "pretrain.checkpoint_every",
    "pretrain.checkpoint_minutes",
    "pretrain.keep_checkpoints",
    "pretrain.dist_timeout_s",
];

fn flatten(prefix: &str, v: &toml::Value, out: &mut BTreeMap<String, String>) {
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

/// Keys whose values differ between the checkpoint's stored config (TOML) and `cfg`,
/// as `key: stored -> current`, ignoring [`FREE_KEYS`] and `eval.*`.
pub fn config_changes(stored: &str, cfg: &crate::config::Config) -> Result<Vec<String>> {
    let stored: crate::config::Config = toml::from_str(stored)
        .context("the checkpoint's stored config cannot be read by this pstl")?;
    let mut a = BTreeMap::new();
    let mut b = BTreeMap::new();
    flatten("", &toml::Value::try_from(&stored)?, &mut a);
    flatten("", &toml::Value::try_from(cfg)?, &mut b);
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    Ok(keys
        .into_iter()
        .filter(|k| !k.starts_with("eval.") && !FREE_KEYS.contains(&k.as_str()))
        .filter_map(|k| {
            let (x, y) = (a.get(k), b.get(k));
            (x != y).then(|| {
                format!(
                    "{k}: {} -> {}",
                    x.map_or("(unset)", String::as_str),
                    y.map_or("(unset)", String::as_str)
                )
            })
        })
        .collect())
}

/// Install SIGTERM, SIGINT and SIGUSR1 handlers that set the returned flag; a second
/// SIGTERM or SIGINT while it is set ends the process at once (status 130).
pub fn stop_flag() -> Result<Arc<AtomicBool>> {
    use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [SIGTERM, SIGINT] {
        signal_hook::flag::register_conditional_shutdown(sig, 130, Arc::clone(&flag))
            .context("installing signal handlers")?;
    }
    for sig in [SIGTERM, SIGINT, SIGUSR1] {
        signal_hook::flag::register(sig, Arc::clone(&flag))
            .context("installing signal handlers")?;
    }
    Ok(flag)
}
