//! The binary: help text, error exits, library resolution without environment.

use crate::common::{pstl_bin, root};
use std::process::Command;

#[test]
fn help_lists_subcommands() {
    let out = Command::new(pstl_bin()).arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for sub in [
        "prepare", "synth", "pretrain", "eval", "embed", "export", "bench",
    ] {
        assert!(text.contains(sub), "--help lacks {sub}:\n{text}");
    }
    let out = Command::new(pstl_bin())
        .args(["eval", "--help"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for p in [
        "linear", "knn", "finetune", "semi", "transfer", "robust", "ensemble",
    ] {
        assert!(text.contains(p), "eval --help lacks {p}");
    }
}

#[test]
fn missing_config_is_a_one_line_error() {
    let out = Command::new(pstl_bin())
        .args(["pretrain", "--config", "configs/nope.toml"])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("configs/nope.toml"), "{err}");
}

#[test]
fn bad_device_is_an_error() {
    let out = Command::new(pstl_bin())
        .args([
            "pretrain",
            "--config",
            "configs/synthetic.toml",
            "--device",
            "gpu7",
        ])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("run.device"));
}

#[test]
fn tf32_switch_is_refused_off_cuda_and_checked() {
    for (value, names) in [
        ("1", ["PSTL_TF32_MATMUL=1", "CUDA"]),
        ("yes", ["PSTL_TF32_MATMUL", "\"yes\""]),
    ] {
        let out = Command::new(pstl_bin())
            .args([
                "bench",
                "--config",
                "configs/synthetic.toml",
                "--device",
                "cpu",
            ])
            .env("PSTL_TF32_MATMUL", value)
            .current_dir(root())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "PSTL_TF32_MATMUL={value}");
        let err = String::from_utf8_lossy(&out.stderr);
        for name in names {
            assert!(err.contains(name), "PSTL_TF32_MATMUL={value}: {err}");
        }
    }
}

#[test]
fn binary_resolves_libraries_without_environment() {
    let out = Command::new("ldd")
        .arg(pstl_bin())
        .env_clear()
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("libtorch_cpu.so"), "{text}");
    assert!(!text.contains("not found"), "unresolved libraries:\n{text}");
    let run = Command::new(pstl_bin())
        .arg("--version")
        .env_clear()
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
}
