//! Device and thread selection shared by every command (`--device`, `--threads`).

use anyhow::{bail, Result};
use tch::Device;

/// Parse `auto|cpu|cuda|cuda:N`; `auto` picks CUDA device 0 when one is available.
pub fn parse_device(s: &str) -> Result<Device> {
    Ok(match s {
        "auto" => Device::cuda_if_available(),
        "cpu" => Device::Cpu,
        "cuda" => Device::Cuda(0),
        _ => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(n)) => Device::Cuda(n),
            _ => bail!("bad device `{s}`: expected auto, cpu, cuda or cuda:N"),
        },
    })
}

/// Resolve a device and check that it exists.
pub fn resolve_device(s: &str) -> Result<Device> {
    let d = parse_device(s)?;
    if let Device::Cuda(n) = d {
        let count = tch::Cuda::device_count() as usize;
        if n >= count {
            bail!("device `{s}` requested but {count} CUDA device(s) are available");
        }
    }
    Ok(d)
}

/// Set libtorch's intra-op threads and rayon's pool (0 = all cores). Call once.
pub fn set_threads(n: usize) {
    let n = if n == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        n
    };
    tch::set_num_threads(n as i32);
    // Ignore the error when a pool exists already (tests call this repeatedly).
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global();
}

/// Human-readable device name for logs.
pub fn device_name(d: Device) -> String {
    match d {
        Device::Cpu => "cpu".into(),
        Device::Cuda(n) => format!("cuda:{n}"),
        other => format!("{other:?}").to_lowercase(),
    }
}
