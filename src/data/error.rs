//! The one error type of the data pipeline (parsers, normalisation, HDF5 store,
//! batch loader and the `prepare` commands). Every variant names the file it is about
//! and, for text formats, the 1-based line, so a bad sample among 56 000 NTU files can
//! be found and listed in an ignore file.

use std::path::{Path, PathBuf};

/// Errors raised while reading, converting or storing skeleton data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A text file (NTU `.skeleton`, PKU-MMD `.txt`, ignore or split list) that does not
    /// follow its format; `line` is 1-based.
    #[error("{}:{line}: {msg}", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        msg: String,
    },
    /// An operating-system error while reading or writing `path`.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An error from the HDF5 library while handling `field` of the store at `path`.
    #[error("{}: {field}: HDF5: {source}", path.display())]
    Hdf5 {
        path: PathBuf,
        field: String,
        #[source]
        source: hdf5::Error,
    },
    /// A file whose structure is wrong (binary formats, store layout, file names).
    #[error("{}: {msg}", path.display())]
    Format { path: PathBuf, msg: String },
    /// An invalid argument (unknown split, benchmark, dataset, zero batch size, ...).
    #[error("{0}")]
    Invalid(String),
}

impl DataError {
    pub(crate) fn parse(path: &Path, line: usize, msg: impl Into<String>) -> Self {
        Self::Parse {
            path: path.to_path_buf(),
            line,
            msg: msg.into(),
        }
    }

    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn hdf5(path: &Path, field: impl Into<String>, source: hdf5::Error) -> Self {
        Self::Hdf5 {
            path: path.to_path_buf(),
            field: field.into(),
            source,
        }
    }

    pub(crate) fn format(path: &Path, msg: impl Into<String>) -> Self {
        Self::Format {
            path: path.to_path_buf(),
            msg: msg.into(),
        }
    }

    /// The file this error is about, if any.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Self::Parse { path, .. }
            | Self::Io { path, .. }
            | Self::Hdf5 { path, .. }
            | Self::Format { path, .. } => Some(path),
            Self::Invalid(_) => None,
        }
    }

    /// The 1-based line of a text-format error.
    pub fn line(&self) -> Option<usize> {
        match self {
            Self::Parse { line, .. } => Some(*line),
            _ => None,
        }
    }
}

/// Result alias of the data module.
pub type Result<T, E = DataError> = std::result::Result<T, E>;
