//! Cluster training with the real binary in separate processes over real c10d (Gloo on
//! localhost): a killed rank ends the job with an error naming it; SIGTERM checkpoints and exits 75, and the rerun reaches the
//! uninterrupted weights; SIGKILL then rerun logs every step once; a second `pretrain`
//! on a locked run refuses; a changed config refuses to resume; `--fresh` moves aside.

use crate::common::{max_abs, pstl_bin, tiny_store};
use pstl::dist::launch::{first_host, Launch};
use pstl::rundir::read_metrics;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use tch::{nn, Device, Kind, Tensor};

/// A free TCP port on localhost.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// `pstl pretrain` on `store` with a tiny model, writing `dir/name`.
pub(crate) fn cmd(store: &Path, dir: &Path, name: &str, extra: &[&str]) -> Command {
    cmd_threads(store, dir, name, extra, 1)
}

/// [`cmd`] on `threads` libtorch threads.
pub(crate) fn cmd_threads(
    store: &Path,
    dir: &Path,
    name: &str,
    extra: &[&str],
    threads: usize,
) -> Command {
    let mut c = Command::new(pstl_bin());
    c.args([
        "pretrain",
        "--device",
        "cpu",
        "--threads",
        &threads.to_string(),
    ]);
    for ov in [
        format!("run.name=\"{name}\""),
        format!("run.dir=\"{}\"", dir.display()),
        format!("data.path=\"{}\"", store.display()),
        "model.base_channels=4".into(),
        "model.feature_dim=32".into(),
        "model.projector_dim=64".into(),
        "pretrain.warmup_epochs=0".into(),
        "pretrain.log_every=1".into(),
        "pretrain.checkpoint_every=1".into(),
        "pretrain.dist_timeout_s=30".into(),
    ] {
        c.args(["--set", &ov]);
    }
    c.args(extra);
    for k in [
        "RANK",
        "WORLD_SIZE",
        "LOCAL_RANK",
        "SLURM_PROCID",
        "SLURM_NTASKS",
    ] {
        c.env_remove(k);
    }
    c
}

pub(crate) fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub(crate) fn ok(o: Output) -> String {
    let t = text(&o);
    assert!(o.status.success(), "pretrain failed:\n{t}");
    t
}

/// The same command as `world` ranks with torchrun's variables; outputs in rank order.
/// 64 samples at a global batch of 8: 8 steps per epoch, 2 epochs; a checkpoint per
/// epoch and (time-based) every ~0.1 s within one.
pub(crate) const TIMED_CHECKPOINTS: [&str; 6] = [
    "--set",
    "pretrain.batch_size=8",
    "--set",
    "pretrain.epochs=2",
    "--set",
    "pretrain.checkpoint_minutes=0.002",
];

/// A run long enough to be killed in (50 epochs at batch 8), with a 20 s timeout.
pub(crate) const UNTIL_KILLED: [&str; 6] = [
    "--set",
    "pretrain.batch_size=8",
    "--set",
    "pretrain.epochs=50",
    "--set",
    "pretrain.dist_timeout_s=20",
];

pub(crate) fn ranks(world: usize, mk: impl Fn() -> Command) -> Vec<Output> {
    spawn_ranks(world, |_| mk())
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect()
}

/// Start `world` ranks of `mk(rank)` with torchrun's variables on a free port.
pub(crate) fn spawn_ranks(world: usize, mk: impl Fn(usize) -> Command) -> Vec<Child> {
    let port = free_port().to_string();
    (0..world)
        .map(|r| {
            mk(r)
                .env("RANK", r.to_string())
                .env("WORLD_SIZE", world.to_string())
                .env("LOCAL_RANK", r.to_string())
                .env("MASTER_ADDR", "127.0.0.1")
                .env("MASTER_PORT", &port)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect()
}

pub(crate) fn tensors(path: &Path) -> BTreeMap<String, tch::Tensor> {
    pstl::checkpoint::read_safetensors(path).unwrap().0
}

/// Largest difference over the float tensors of two safetensors files.
pub(crate) fn max_diff(a: &Path, b: &Path) -> f64 {
    let (a, b) = (tensors(a), tensors(b));
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "same keys"
    );
    a.iter()
        .filter(|(_, v)| v.kind() == tch::Kind::Float)
        .map(|(k, v)| max_abs(v, &b[k]))
        .fold(0.0, f64::max)
}

#[test]
fn torchrun_launches_two_ranks_with_per_rank_bn() {
    let torchrun = crate::common::root().join(".venv/bin/torchrun");
    if !torchrun.exists() {
        eprintln!("skipped: no {}", torchrun.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = tiny_store(dir.path(), 4, 8, 2);
    let inner = cmd(
        &store,
        dir.path(),
        "torchrun",
        &[
            "--set",
            "pretrain.batch_size=16",
            "--set",
            "pretrain.epochs=1",
        ],
    );
    let mut c = Command::new(&torchrun);
    c.args([
        "--nproc-per-node",
        "2",
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        &free_port().to_string(),
        "--no-python",
    ]);
    c.arg(inner.get_program());
    c.args(inner.get_args());
    let t = ok(c.output().unwrap());
    let run = dir.path().join("torchrun");
    let rows = read_metrics(&run.join("metrics.csv")).unwrap();
    // 32 samples at a global batch of 16: 2 steps, each logged once by rank 0 only.
    let steps: Vec<u64> = rows.iter().map(|r| r.step).collect();
    assert_eq!(steps, vec![1, 2], "{t}");
    assert!(rows.iter().all(|r| r.loss.is_finite()));
    assert!(run.join("encoder.safetensors").exists());
}

#[test]
fn a_killed_rank_ends_the_job_with_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = tiny_store(dir.path(), 4, 16, 2);
    let port = free_port().to_string();
    let spawn = |r: &str| {
        cmd(&store, dir.path(), "killed", &UNTIL_KILLED)
            .env("RANK", r)
            .env("WORLD_SIZE", "2")
            .env("MASTER_ADDR", "127.0.0.1")
            .env("MASTER_PORT", &port)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let r0 = spawn("0");
    let mut r1 = spawn("1");
    let metrics = dir.path().join("killed/metrics.csv");
    wait_rows(&metrics, 2, Duration::from_secs(120));
    r1.kill().unwrap();
    let killed_at = Instant::now();
    let out = r0.wait_with_output().unwrap();
    let t = text(&out);
    assert!(!out.status.success(), "rank 0 must fail:\n{t}");
    assert!(t.contains("rank(s) 1 did not respond"), "{t}");
    assert!(
        killed_at.elapsed() < Duration::from_secs(60),
        "rank 0 took {:?}",
        killed_at.elapsed()
    );
    let _ = r1.wait();
}

/// Wait until `metrics` has `n` data rows.
pub(crate) fn wait_rows(metrics: &Path, n: usize, limit: Duration) {
    let t0 = Instant::now();
    while read_metrics(metrics).map(|r| r.len()).unwrap_or(0) < n {
        assert!(t0.elapsed() < limit, "no {n} rows in {}", metrics.display());
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub(crate) fn signal(child: &Child, sig: &str) {
    let st = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn sigterm_checkpoints_exits_75_and_the_rerun_matches_an_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let store = tiny_store(dir.path(), 4, 16, 2);
    // 64 samples at batch 8: 8 steps per epoch, 2 epochs.
    let args = [
        "--set",
        "pretrain.batch_size=8",
        "--set",
        "pretrain.epochs=2",
    ];
    ok(cmd(&store, dir.path(), "straight", &args).output().unwrap());
    let run = dir.path().join("stopped");
    let child = cmd(&store, dir.path(), "stopped", &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_rows(&run.join("metrics.csv"), 2, Duration::from_secs(120));
    signal(&child, "-TERM");
    let out = child.wait_with_output().unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(75), "{t}");
    assert!(t.contains("stopped by a signal"), "{t}");
    let (_, meta) =
        pstl::checkpoint::read_safetensors(&run.join("checkpoint.safetensors")).unwrap();
    let step: u64 = meta["step"].parse().unwrap();
    assert!((2..16).contains(&step), "checkpoint at step {step}");
    let t = ok(cmd(&store, dir.path(), "stopped", &args).output().unwrap());
    assert!(t.contains("resumed from"), "{t}");
    let enc = "encoder.safetensors";
    let d = max_diff(&dir.path().join("straight").join(enc), &run.join(enc));
    assert!(d < 1e-6, "resumed encoder differs by {d}");
    let steps: Vec<u64> = read_metrics(&run.join("metrics.csv"))
        .unwrap()
        .iter()
        .map(|r| r.step)
        .collect();
    assert_eq!(steps, (1..=16).collect::<Vec<_>>());
}

#[test]
fn sigkill_rerun_logs_each_step_once_and_a_locked_run_refuses_a_second_job() {
    let dir = tempfile::tempdir().unwrap();
    let store = tiny_store(dir.path(), 4, 16, 2);
    // Time-based checkpoints every ~0.1 s, so the kill lands after a mid-epoch one.
    let args = TIMED_CHECKPOINTS;
    let run = dir.path().join("killed");
    let mut child = cmd(&store, dir.path(), "killed", &args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_rows(&run.join("metrics.csv"), 4, Duration::from_secs(120));
    // A second job on the same run name refuses at once.
    let second = cmd(&store, dir.path(), "killed", &args).output().unwrap();
    let t = text(&second);
    assert!(!second.status.success(), "{t}");
    assert!(t.contains("in use by another pstl process"), "{t}");
    child.kill().unwrap();
    let _ = child.wait();
    std::fs::write(run.join("checkpoint.safetensors.12345.tmp"), b"half").unwrap();
    ok(cmd(&store, dir.path(), "killed", &args).output().unwrap());
    let steps: Vec<u64> = read_metrics(&run.join("metrics.csv"))
        .unwrap()
        .iter()
        .map(|r| r.step)
        .collect();
    assert_eq!(
        steps,
        (1..=16).collect::<Vec<_>>(),
        "each step exactly once"
    );
    assert!(
        !run.join("checkpoint.safetensors.12345.tmp").exists(),
        "stale tmp removed"
    );
}

#[test]
fn resume_refuses_a_changed_config_and_fresh_moves_the_run_aside() {
    let dir = tempfile::tempdir().unwrap();
    let store = tiny_store(dir.path(), 4, 4, 2);
    let args = [
        "--set",
        "pretrain.batch_size=8",
        "--set",
        "pretrain.epochs=2",
    ];
    let mut first = args.to_vec();
    first.extend(["--stop-after", "1"]);
    ok(cmd(&store, dir.path(), "r", &first).output().unwrap());
    let mut changed = args.to_vec();
    changed.extend([
        "--set",
        "pretrain.lr=0.01",
        "--set",
        "model.projector_dim=32",
    ]);
    let out = cmd(&store, dir.path(), "r", &changed).output().unwrap();
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(t.contains("pretrain.lr: 0.005 -> 0.01"), "{t}");
    assert!(t.contains("model.projector_dim: 64 -> 32"), "{t}");
    // A harmless change resumes and finishes.
    let mut harmless = args.to_vec();
    harmless.extend(["--set", "pretrain.log_every=5"]);
    ok(cmd(&store, dir.path(), "r", &harmless).output().unwrap());
    changed.push("--fresh");
    ok(cmd(&store, dir.path(), "r", &changed).output().unwrap());
    let aside: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().contains("r.old-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert!(aside[0].join("checkpoint.safetensors").exists());
    assert!(dir.path().join("r/checkpoint.safetensors").exists());
}

#[test]
fn launch_reads_torchrun_and_slurm_variables() {
    let vars = |pairs: &[(&str, &str)]| {
        let m: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Launch::from_vars(move |k| m.get(k).cloned())
    };
    assert_eq!(vars(&[]).unwrap(), Launch::single());
    let t = vars(&[
        ("RANK", "3"),
        ("WORLD_SIZE", "4"),
        ("LOCAL_RANK", "1"),
        ("MASTER_ADDR", "n1"),
        ("MASTER_PORT", "1234"),
        ("TORCHELASTIC_USE_AGENT_STORE", "True"),
    ])
    .unwrap();
    assert_eq!((t.rank, t.world, t.local_rank), (3, 4, 1));
    assert_eq!(
        (t.master_addr.as_str(), t.master_port, t.agent_store),
        ("n1", 1234, true)
    );
    let s = vars(&[
        ("SLURM_PROCID", "5"),
        ("SLURM_NTASKS", "8"),
        ("SLURM_LOCALID", "1"),
        ("SLURM_JOB_NODELIST", "gpu[03-05,07],cpu1"),
    ])
    .unwrap();
    assert_eq!((s.rank, s.world, s.local_rank), (5, 8, 1));
    assert_eq!((s.master_addr.as_str(), s.master_port), ("gpu03", 29500));
    assert_eq!(first_host("node7").unwrap(), "node7");
    assert_eq!(first_host("a,b").unwrap(), "a");
    for bad in [
        vec![("RANK", "0")],
        vec![("RANK", "2"), ("WORLD_SIZE", "2"), ("MASTER_ADDR", "x")],
        vec![("RANK", "x"), ("WORLD_SIZE", "2")],
        vec![("RANK", "0"), ("WORLD_SIZE", "2")],
        vec![
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "2"),
            ("SLURM_JOB_NODELIST", "[1]"),
        ],
    ] {
        assert!(vars(&bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn shards_partition_every_batch() {
    use pstl::data::loader::shard_range;
    for n in [1usize, 7, 64, 128] {
        for w in [1usize, 2, 3, 8] {
            let mut next = 0;
            for r in 0..w {
                let s = shard_range(n, r, w);
                assert_eq!(s.start, next);
                assert!(s.len() + 1 >= n / w && s.len() <= n.div_ceil(w));
                next = s.end;
            }
            assert_eq!(next, n);
        }
    }
}

// Synchronised batch norm (src/dist/sync_bn.rs)
fn rel(a: &tch::Tensor, b: &tch::Tensor) -> f64 {
    (a - b).abs().max().double_value(&[]) / b.abs().max().double_value(&[]).max(1e-12)
}

/// The formula of a one-process guard against libtorch's own training-mode batch
/// norm on one layer: output, input and parameter gradients, running statistics.
#[test]
fn synced_formula_equals_libtorch_batch_norm() {
    tch::manual_seed(5);
    let run = |synced: bool| {
        let vs = nn::VarStore::new(Device::Cpu);
        let bn = nn::batch_norm2d(vs.root(), 16, Default::default());
        tch::no_grad(|| {
            bn.ws
                .as_ref()
                .unwrap()
                .shallow_clone()
                .copy_(&Tensor::linspace(0.5, 1.5, 16, (Kind::Float, Device::Cpu)));
            bn.bs
                .as_ref()
                .unwrap()
                .shallow_clone()
                .copy_(&Tensor::linspace(-1.0, 1.0, 16, (Kind::Float, Device::Cpu)));
        });
        tch::manual_seed(6);
        let x = (Tensor::randn([32, 16, 20, 25], (Kind::Float, Device::Cpu)) * 3.0 + 1.0)
            .set_requires_grad(true);
        let g = Tensor::randn([32, 16, 20, 25], (Kind::Float, Device::Cpu));
        let guard = synced.then(|| pstl::dist::sync_bn::SyncGuard::new(None));
        let y = pstl::dist::sync_bn::batch_norm(&x, &bn, true);
        if let Some(guard) = guard {
            guard.finish().unwrap();
        }
        (&y * &g).sum(Kind::Float).backward();
        let w = bn.ws.as_ref().unwrap();
        [
            y.detach(),
            x.grad(),
            w.grad(),
            bn.running_mean.copy(),
            bn.running_var.copy(),
        ]
    };
    let (ours, theirs) = (run(true), run(false));
    for (name, (a, b)) in [
        "output",
        "input grad",
        "weight grad",
        "running mean",
        "running var",
    ]
    .iter()
    .zip(ours.iter().zip(theirs.iter()))
    {
        let r = rel(a, b);
        assert!(r < 2e-6, "{name}: relative difference {r}");
    }
}
