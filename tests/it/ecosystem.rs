//! CLI conventions and logs: completions and man page, `--json` summaries, JSON log
//! lines, `-q`, and the per-job environment variables (`PSTL_RUNS_DIR`, `PSTL_DEVICE`,
//! `PSTL_THREADS`), all through the real binary.

use crate::common::{pstl_bin, tiny_overrides, tiny_store};
use std::process::{Command, Output};

fn pstl(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(pstl_bin());
    cmd.args(args).env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("spawn pstl")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn completions_and_man_page_cover_the_commands() {
    let bash = pstl(&["completions", "bash"], &[]);
    assert!(bash.status.success(), "{}", text(&bash.stderr));
    let s = text(&bash.stdout);
    for word in ["_pstl()", "pretrain", "export", "--hub", "--log-format"] {
        assert!(s.contains(word), "bash completion lacks {word}");
    }
    let man = pstl(&["completions", "man"], &[]);
    assert!(man.status.success(), "{}", text(&man.stderr));
    let m = text(&man.stdout);
    assert!(
        m.starts_with(".ie") || m.contains(".TH pstl"),
        "not a man page: {m:.200}"
    );
    assert!(
        m.contains("PSTL_RUNS_DIR"),
        "man page lacks the environment variables"
    );
    let bad = pstl(&["completions", "tcsh"], &[]);
    assert!(!bad.status.success());
    assert!(text(&bad.stderr).contains("tcsh"));
}

#[test]
fn json_summary_on_stdout_and_json_log_lines_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s.h5");
    let args = [
        "--log-format",
        "json",
        "--json",
        "synth",
        "--out",
        out.to_str().unwrap(),
        "--classes",
        "2",
        "--train-per-class",
        "3",
        "--test-per-class",
        "1",
    ];
    let o = pstl(&args, &[("RUST_LOG", "debug")]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let stdout = text(&o.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "stdout must be one JSON object: {stdout}");
    let v: serde_json::Value = serde_json::from_str(lines[0]).expect("JSON summary");
    assert_eq!(v["command"], "synth");
    assert_eq!(
        (v["train"].as_u64(), v["test"].as_u64()),
        (Some(6), Some(2))
    );
    let logs: Vec<serde_json::Value> = text(&o.stderr)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("log line {l:?}: {e}")))
        .collect();
    assert!(
        logs.iter().any(|l| l["level"] == "DEBUG"),
        "RUST_LOG=debug gives debug lines"
    );
    let info = logs
        .iter()
        .find(|l| l["level"] == "INFO")
        .expect("an info line");
    assert!(info["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
    assert!(info["fields"]["message"]
        .as_str()
        .is_some_and(|m| m.starts_with("synth: 2 classes")));

    // -q: warnings only, so nothing on stderr; the text summary stays on stdout.
    let q = pstl(&args[3..], &[]);
    let quiet = pstl(&[&["-q"], &args[3..]].concat(), &[]);
    assert!(q.status.success() && quiet.status.success());
    assert!(text(&quiet.stderr).is_empty(), "{}", text(&quiet.stderr));
    assert!(text(&quiet.stdout).starts_with("synth: 2 classes"));
    assert_eq!(text(&q.stdout).lines().count(), 1);
}

#[test]
fn environment_variables_set_runs_dir_device_and_threads() {
    let dir = tempfile::tempdir().unwrap();
    let store = tiny_store(dir.path(), 2, 4, 2);
    let runs = dir.path().join("from-env");
    let sets: Vec<String> = tiny_overrides(&store, dir.path(), "envrun")
        .into_iter()
        .filter(|s| !s.starts_with("run.dir=") && !s.starts_with("run.device="))
        .collect();
    let mut args = vec!["eval", "knn"];
    for s in &sets {
        args.extend(["--set", s.as_str()]);
    }
    let env = [
        ("PSTL_RUNS_DIR", runs.to_str().unwrap()),
        ("PSTL_DEVICE", "cpu"),
        ("PSTL_THREADS", "1"),
    ];
    let o = pstl(&args, &env);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(runs.join("envrun/eval-knn/results.json").is_file());

    let bad_device = pstl(&args, &[("PSTL_DEVICE", "tpu:3")]);
    assert!(!bad_device.status.success());
    assert!(text(&bad_device.stderr).contains("tpu:3"));
    let bad_threads = pstl(&args, &[("PSTL_THREADS", "many")]);
    assert!(!bad_threads.status.success());
    assert!(text(&bad_threads.stderr).contains("many"));
}
