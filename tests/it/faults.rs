//! Faults in a data-parallel run (2 Gloo ranks on CPU, tiny model): SIGKILL of one rank
//! at a random step, then a relaunch, ends at the weights of an uninterrupted run;
//! SIGTERM to one rank makes every rank stop at the same step (rank 0's checkpoint)
//! and exit 75; a failed checkpoint write on rank 0 ends every rank with an error and
//! the previous checkpoint still verifies. `scripts/fault_soak.sh` runs these 20 times.

use crate::dist::{
    cmd, max_diff, ok, ranks, signal, spawn_ranks, text, wait_rows, TIMED_CHECKPOINTS,
};
use pstl::rundir::read_metrics;
use std::path::Path;
use std::process::{Child, Output};
use std::time::{Duration, Instant};

/// Wait for a child, killing it (and failing) after `limit`: a liveness bound far
/// above the run's own `dist_timeout_s`, so a hung rank fails the test, not CI.
fn wait_limited(mut child: Child, limit: Duration) -> Output {
    let t0 = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("a rank still ran after {limit:?}:\n{}", text(&out));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.wait_with_output().unwrap()
}

fn steps(run: &Path) -> Vec<u64> {
    read_metrics(&run.join("metrics.csv"))
        .unwrap()
        .iter()
        .map(|r| r.step)
        .collect()
}

fn straight(store: &Path, dir: &Path) {
    for o in ranks(2, || cmd(store, dir, "straight", &TIMED_CHECKPOINTS)) {
        ok(o);
    }
}

/// A step in 2..=12 drawn from the clock (printed, so a failure can be replayed with
/// `PSTL_FAULT_STEP`).
fn random_step() -> usize {
    let step = std::env::var("PSTL_FAULT_STEP")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos() as usize;
            2 + nanos % 11
        });
    eprintln!("fault at step {step} (PSTL_FAULT_STEP={step} replays it)");
    step
}

#[test]
fn sigkill_of_one_rank_then_a_relaunch_ends_at_the_uninterrupted_weights() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::common::tiny_store(dir.path(), 4, 16, 2);
    straight(&store, dir.path());
    let run = dir.path().join("killed");
    let mut children = spawn_ranks(2, |_| cmd(&store, dir.path(), "killed", &TIMED_CHECKPOINTS));
    wait_rows(
        &run.join("metrics.csv"),
        random_step(),
        Duration::from_secs(120),
    );
    children[1].kill().unwrap();
    let r1 = children.pop().unwrap();
    let r0 = wait_limited(children.pop().unwrap(), Duration::from_secs(120));
    assert!(!r0.status.success(), "rank 0 must fail:\n{}", text(&r0));
    let _ = wait_limited(r1, Duration::from_secs(10));
    for o in ranks(2, || cmd(&store, dir.path(), "killed", &TIMED_CHECKPOINTS)) {
        ok(o);
    }
    let enc = "encoder.safetensors";
    let d = max_diff(&dir.path().join("straight").join(enc), &run.join(enc));
    assert!(d < 1e-6, "relaunched encoder differs by {d}");
    assert_eq!(steps(&run), (1..=16).collect::<Vec<_>>(), "each step once");
}

/// The step in a rank's "stopped by a signal at step N" line.
fn stopped_at(out: &Output) -> u64 {
    let t = text(out);
    let rest = t
        .split("stopped by a signal at step ")
        .nth(1)
        .unwrap_or_else(|| panic!("no stop line:\n{t}"));
    rest.split(';').next().unwrap().trim().parse().unwrap()
}

#[test]
fn sigterm_to_one_rank_stops_every_rank_at_one_checkpointed_step_with_75() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::common::tiny_store(dir.path(), 4, 16, 2);
    let run = dir.path().join("stopped");
    let args = &TIMED_CHECKPOINTS[..4];
    let mut children = spawn_ranks(2, |_| cmd(&store, dir.path(), "stopped", args));
    wait_rows(
        &run.join("metrics.csv"),
        random_step(),
        Duration::from_secs(120),
    );
    signal(&children[1], "-TERM");
    let outs: Vec<Output> = children
        .drain(..)
        .map(|c| wait_limited(c, Duration::from_secs(120)))
        .collect();
    for o in &outs {
        assert_eq!(o.status.code(), Some(75), "{}", text(o));
    }
    let (_, meta) =
        pstl::checkpoint::read_safetensors(&run.join("checkpoint.safetensors")).unwrap();
    let step: u64 = meta["step"].parse().unwrap();
    assert_eq!(stopped_at(&outs[0]), step);
    assert_eq!(stopped_at(&outs[1]), step);
    assert_eq!(
        steps(&run).last(),
        Some(&step),
        "metrics end at the checkpoint"
    );
}

#[test]
fn a_failed_checkpoint_write_on_rank_0_ends_every_rank_and_keeps_the_previous_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::common::tiny_store(dir.path(), 4, 16, 2);
    let run = dir.path().join("full");
    // Epoch checkpoints only: the first (step 8) is written, the second fails.
    let args = &TIMED_CHECKPOINTS[..4];
    let children = spawn_ranks(2, |r| {
        let mut c = cmd(&store, dir.path(), "full", args);
        if r == 0 {
            c.env(pstl::train::keep::FAULT_ENV, "2");
        }
        c
    });
    let outs: Vec<Output> = children
        .into_iter()
        .map(|c| wait_limited(c, Duration::from_secs(120)))
        .collect();
    let (t0, t1) = (text(&outs[0]), text(&outs[1]));
    assert_eq!(outs[0].status.code(), Some(1), "{t0}");
    assert!(
        t0.contains("injected fault") && t0.contains("checkpoint.safetensors"),
        "{t0}"
    );
    assert_eq!(outs[1].status.code(), Some(1), "{t1}");
    assert!(
        !t0.contains("panicked") && !t1.contains("panicked"),
        "{t0}{t1}"
    );
    let (_, meta) =
        pstl::checkpoint::read_safetensors(&run.join("checkpoint.safetensors")).unwrap();
    assert_eq!(meta["step"], "8");
    assert!(!run.join("checkpoint.1.safetensors").exists());
    assert!(!run.join("encoder.safetensors").exists());
    let leftovers: Vec<String> = std::fs::read_dir(&run)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
