//! Who am I in the job: torchrun's variables (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`,
//! `MASTER_ADDR`, `MASTER_PORT`), else SLURM's (`SLURM_PROCID`, `SLURM_NTASKS`,
//! `SLURM_LOCALID`, the first host of `SLURM_JOB_NODELIST` unless `MASTER_ADDR` is set,
//! `MASTER_PORT` or 29500), else a single process.

use super::{DistError, Result};

/// The launch of this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// Global rank.
    pub rank: usize,
    /// Number of processes.
    pub world: usize,
    /// Rank on this node (the CUDA device index).
    pub local_rank: usize,
    /// Host of the TCP store.
    pub master_addr: String,
    /// Port of the TCP store.
    pub master_port: u16,
    /// torchrun's agent already serves the store (`TORCHELASTIC_USE_AGENT_STORE`).
    pub agent_store: bool,
    /// Started by a launcher (its variables are set), even with one rank.
    pub launched: bool,
}

impl Launch {
    /// One process, no group.
    pub fn single() -> Self {
        Launch {
            rank: 0,
            world: 1,
            local_rank: 0,
            master_addr: "127.0.0.1".into(),
            master_port: 29500,
            agent_store: false,
            launched: false,
        }
    }

    /// Read the process environment.
    pub fn from_env() -> Result<Self> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// Read launch variables through `get` (testable without touching the environment).
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let num = |k: &str| -> Result<Option<usize>> {
            match get(k) {
                None => Ok(None),
                Some(v) => v.trim().parse().map(Some).map_err(|_| {
                    DistError::Env(format!("{k}={v:?} is not a non-negative integer"))
                }),
            }
        };
        let (rank, world, local, source) = match (num("RANK")?, num("WORLD_SIZE")?) {
            (Some(r), Some(w)) => (r, w, num("LOCAL_RANK")?.unwrap_or(r), "RANK/WORLD_SIZE"),
            (None, None) => match (num("SLURM_PROCID")?, num("SLURM_NTASKS")?) {
                (Some(r), Some(w)) => (
                    r,
                    w,
                    num("SLURM_LOCALID")?.unwrap_or(0),
                    "SLURM_PROCID/SLURM_NTASKS",
                ),
                _ => return Ok(Self::single()),
            },
            _ => {
                return Err(DistError::Env(
                    "RANK and WORLD_SIZE must be set together".into(),
                ))
            }
        };
        if world == 0 || rank >= world {
            return Err(DistError::Env(format!(
                "{source}: rank {rank} is not below world size {world}"
            )));
        }
        let master_addr = match get("MASTER_ADDR").filter(|s| !s.is_empty()) {
            Some(a) => a,
            None if world == 1 => "127.0.0.1".into(),
            None => match get("SLURM_JOB_NODELIST").or_else(|| get("SLURM_NODELIST")) {
                Some(list) => first_host(&list)?,
                None => {
                    return Err(DistError::Env(format!(
                        "{source} set but neither MASTER_ADDR nor SLURM_JOB_NODELIST"
                    )))
                }
            },
        };
        let master_port = match get("MASTER_PORT") {
            None => 29500,
            Some(p) => p
                .trim()
                .parse()
                .map_err(|_| DistError::Env(format!("MASTER_PORT={p:?} is not a port number")))?,
        };
        Ok(Launch {
            rank,
            world,
            local_rank: local,
            master_addr,
            master_port,
            agent_store: get("TORCHELASTIC_USE_AGENT_STORE").as_deref() == Some("True"),
            launched: true,
        })
    }

    /// Run through a process group: started by a launcher, with any number of ranks
    /// (one rank takes the same code path as many, so its results match theirs).
    pub fn is_distributed(&self) -> bool {
        self.launched
    }
}

/// The first host of a SLURM node list: `node[03-05,07],gpu1` -> `node03`.
pub fn first_host(list: &str) -> Result<String> {
    let bad = || DistError::Env(format!("SLURM_JOB_NODELIST={list:?}: cannot read a host"));
    let list = list.trim();
    let end = list.find([',', '[']).unwrap_or(list.len());
    let prefix = &list[..end];
    if prefix.is_empty() {
        return Err(bad());
    }
    if list[end..].starts_with('[') {
        let inner = &list[end + 1..];
        let close = inner.find(']').ok_or_else(bad)?;
        let first = inner[..close].split([',', '-']).next().ok_or_else(bad)?;
        if first.is_empty() {
            return Err(bad());
        }
        return Ok(format!("{prefix}{first}"));
    }
    Ok(prefix.to_string())
}
