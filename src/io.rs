//! Small file helpers: atomic writes (a `tempfile::NamedTempFile` in the same folder,
//! persisted over the target), so that no reader ever sees a half-written file and a
//! failed write leaves nothing behind, and streaming SHA-256 for provenance.

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::Path;
use tempfile::NamedTempFile;

/// A temporary file beside `path`, named `.<file>.<pid>.<random>.tmp[.<ext>]` (the extension
/// kept for writers that choose the format by it), created with the usual `0o666`
/// minus the umask (not tempfile's `0o600`). Removed on drop unless persisted. The
/// folder must exist.
pub fn temp_beside(path: &Path) -> Result<NamedTempFile> {
    let dir = parent(path);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let suffix = match path.extension() {
        Some(e) => format!(".tmp.{}", e.to_string_lossy()),
        None => ".tmp".to_string(),
    };
    let prefix = format!(".{name}.{}.", std::process::id());
    let mut b = tempfile::Builder::new();
    b.prefix(&prefix).suffix(&suffix);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        b.permissions(std::fs::Permissions::from_mode(0o666));
    }
    b.tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))
}

/// The folder of `path` (`.` for a bare file name).
fn parent(path: &Path) -> &Path {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(d) => d,
        None => Path::new("."),
    }
}

/// Write through `f` (given the temporary path) into a temporary file beside `path`
/// (its folder created if missing), then persist it as `path`. On error the temporary
/// is removed and `path` is untouched.
pub fn atomic_write_with<F>(path: &Path, f: F) -> Result<()>
where
    F: FnOnce(&Path) -> Result<()>,
{
    let dir = parent(path);
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    remove_stale_temps(path);
    let tmp = temp_beside(path)?;
    f(tmp.path())?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("renaming the temporary file to {}", path.display()))?;
    Ok(())
}

/// Write `bytes` to `path` atomically (its folder created if missing).
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = parent(path);
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    remove_stale_temps(path);
    let mut tmp = temp_beside(path)?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("renaming the temporary file to {}", path.display()))?;
    Ok(())
}

/// SHA-256 of a file, hex, read in a stream (constant memory).
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut f, &mut hasher).with_context(|| format!("reading {}", path.display()))?;
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Removes temporaries of `path` left by killed processes: siblings named
/// `[.]<name>.<pid>.….tmp[.<ext>]` whose process no longer runs (checked in `/proc`; nothing is
/// removed where `/proc` is absent or the process lives).
pub fn remove_stale_temps(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let name = name.to_string_lossy();
    let proc_ok = Path::new("/proc/self").exists();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let rest = file.strip_prefix('.').unwrap_or(&file);
        let Some(rest) = rest
            .strip_prefix(name.as_ref())
            .and_then(|r| r.strip_prefix('.'))
        else {
            continue;
        };
        if !(rest.ends_with(".tmp") || rest.contains(".tmp.")) {
            continue;
        }
        let pid = rest.split('.').next().and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = pid {
            if proc_ok && !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}
