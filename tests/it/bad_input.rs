//! The bad-input table: every row runs the real binary on one bad input and expects exit
//! code 1 (or 2 for usage errors), a message naming the input, no panic, and an answer
//! before any training. Plus the cases that must succeed without touching anything: a
//! finished run, output file modes under a umask.

use crate::common::{pstl_bin, tiny_config, tiny_overrides};
use pstl::data::store::{write_store, SplitData, StoreMeta};
use pstl::train::Trainer;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// Files the rows point at, made once.
struct Fixtures {
    dir: PathBuf,
}

const FIXTURE: &str = "../shared/fixtures/S001C001P001R001A001.skeleton";

fn fixtures() -> &'static Fixtures {
    static F: OnceLock<Fixtures> = OnceLock::new();
    F.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("pstl-bad-input-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        make_stores(&dir);
        make_files(&dir);
        make_runs(&dir);
        Fixtures { dir }
    })
}

fn split(n: usize, frames: usize, nan_at: Option<usize>) -> SplitData {
    let per = 3 * frames * 25 * 2;
    let mut x: Vec<f32> = (0..n * per).map(|i| ((i % 97) as f32) * 0.01).collect();
    if let Some(k) = nan_at {
        x[k * per + 5] = f32::NAN;
    }
    SplitData {
        x,
        y: (0..n as i64).map(|i| i % 3).collect(),
        names: (0..n).map(|i| format!("sample{i:03}")).collect(),
    }
}

fn make_stores(dir: &Path) {
    let meta = |frames| StoreMeta::new("synthetic", "default", 3, frames, "bad-input test");
    let store = |name: &str, frames, train: SplitData, test: SplitData| {
        write_store(&dir.join(name), &meta(frames), &train, &test).unwrap()
    };
    store("ok.h5", 50, split(6, 50, None), split(3, 50, None));
    store("frames20.h5", 20, split(6, 20, None), split(3, 20, None));
    store(
        "nan_train.h5",
        50,
        split(6, 50, Some(4)),
        split(3, 50, None),
    );
    store("nan_test.h5", 50, split(6, 50, None), split(3, 50, Some(1)));
    store("empty_train.h5", 50, split(0, 50, None), split(3, 50, None));
    store("one_train.h5", 50, split(1, 50, None), split(3, 50, None));
}

fn npy(path: &Path, data: &[f32], shape: &[usize]) {
    pstl::data::npy::write_npy_f32(path, data, shape).unwrap();
}

fn make_files(dir: &Path) {
    let input: Vec<f32> = (0..2 * 3 * 10 * 25 * 2).map(|i| (i % 13) as f32).collect();
    npy(&dir.join("input.npy"), &input, &[2, 3, 10, 25, 2]);
    let mut nan = input.clone();
    nan[1500 + 7] = f32::NAN;
    npy(&dir.join("nan_input.npy"), &nan, &[2, 3, 10, 25, 2]);
    npy(&dir.join("empty.npy"), &[], &[0, 3, 10, 25, 2]);
    npy(
        &dir.join("joints24.npy"),
        &input[..2 * 3 * 10 * 24],
        &[2, 3, 10, 24, 1],
    );
    // A header whose element count overflows 64 bits.
    let mut h =
        "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 3, 25, 2), }"
            .to_string();
    while (h.len() + 11) % 64 != 0 {
        h.push(' ');
    }
    h.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(h.len() as u16).to_le_bytes());
    bytes.extend_from_slice(h.as_bytes());
    std::fs::write(dir.join("overflow.npy"), bytes).unwrap();
    let scores: Vec<f32> = (0..9).map(|i| i as f32).collect();
    npy(&dir.join("scores3.npy"), &scores, &[3, 3]);
    npy(&dir.join("scores3b.npy"), &scores, &[3, 3]);
    npy(&dir.join("scores4.npy"), &[0.5; 12], &[3, 4]);
    npy(&dir.join("scores_rows.npy"), &[0.5; 6], &[2, 3]);
    let mut s = scores.clone();
    s[4] = f32::INFINITY;
    npy(&dir.join("scores_inf.npy"), &s, &[3, 3]);
    std::fs::write(dir.join("text.txt"), "not a checkpoint\n").unwrap();
    std::fs::write(dir.join("syntax.toml"), "[pretrain\nepochs = 3\n").unwrap();
    std::fs::write(dir.join("unknown.toml"), "[pretrain]\nepochz = 3\n").unwrap();
    // NTU files: the real fixture, then broken copies.
    let good = std::fs::read_to_string(crate::common::root().join(FIXTURE)).unwrap();
    let lines: Vec<&str> = good.lines().collect();
    let with_line = |k: usize, new: &str| {
        let mut l = lines.clone();
        l[k] = new;
        l.join("\n") + "\n"
    };
    let joint: Vec<&str> = lines[4].split_whitespace().collect();
    let inf_joint = format!("1e39 {}", joint[1..].join(" "));
    let frames: usize = lines[0].trim().parse().unwrap();
    let fewer = (frames - 1).to_string();
    for (sub, text) in [
        ("ntu_inf", with_line(4, &inf_joint)),
        ("ntu_count", with_line(0, &fewer)),
        ("ntu_allbad", with_line(3, "24")),
    ] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
        std::fs::write(dir.join(sub).join("S001C001P001R001A001.skeleton"), text).unwrap();
    }
    // PKU-MMD: one video whose second frame holds an overflowing number.
    for sub in ["pku/skel", "pku/labels"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let row = |v: &str| vec![v; 150].join(" ");
    let video = [
        row("0.5"),
        format!("9e99 {}", vec!["0.5"; 149].join(" ")),
        row("0.5"),
    ];
    std::fs::write(dir.join("pku/skel/0002-L.txt"), video.join("\n")).unwrap();
    std::fs::write(dir.join("pku/labels/0002-L.txt"), "1,1,3,1\n").unwrap();
    std::fs::write(
        dir.join("pku/split.txt"),
        "Training videos: 0002-L\nValidation videos: 0002-L\n",
    )
    .unwrap();
}

/// An encoder file and a finished run (`done`, 3 of 3 epochs) with its files.
fn make_runs(dir: &Path) {
    let runs = dir.join("runs");
    let cfg = tiny_config(&dir.join("ok.h5"), &runs, "done");
    let mut trainer = Trainer::new(&cfg, tch::Device::Cpu);
    trainer
        .save_encoder(&dir.join("encoder.safetensors"))
        .unwrap();
    std::fs::copy(
        dir.join("encoder.safetensors"),
        dir.join("corrupt.safetensors"),
    )
    .unwrap();
    crate::integrity::flip_exponent_bit(
        &dir.join("corrupt.safetensors"),
        "st_gcn_networks.9.tcn.2.weight",
    );
    trainer.epoch = cfg.pretrain.epochs;
    let run = runs.join("done");
    std::fs::create_dir_all(&run).unwrap();
    trainer.save(&run.join("checkpoint.safetensors")).unwrap();
    std::fs::write(run.join("config.toml"), "# the run's config\n").unwrap();
    std::fs::write(run.join("results.json"), "{\"final_loss\": 101.9}\n").unwrap();
}

/// `--set` arguments of the tiny config reading `store`, run `name`, plus `extra`.
fn sets(store: &str, name: &str, extra: &[&str]) -> Vec<String> {
    let f = fixtures();
    let mut ov = tiny_overrides(&f.dir.join(store), &f.dir.join("runs"), name);
    ov.extend(extra.iter().map(|s| s.to_string()));
    ov.into_iter()
        .flat_map(|o| ["--set".to_string(), o])
        .collect()
}

fn run(args: &[String]) -> Output {
    Command::new(pstl_bin())
        .args(args)
        .current_dir(&fixtures().dir)
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap()
}

/// One row: a description, the arguments, the exit code and what the message must name.
struct Row {
    what: &'static str,
    args: Vec<String>,
    code: i32,
    names: Vec<&'static str>,
}

fn row(what: &'static str, args: Vec<String>, code: i32, names: &[&'static str]) -> Row {
    Row {
        what,
        args,
        code,
        names: names.to_vec(),
    }
}

fn a(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn cat(mut head: Vec<String>, tail: Vec<String>) -> Vec<String> {
    head.extend(tail);
    head
}

/// `pretrain` with the tiny config on `store`, run `name`, extra `--set`s and flags.
fn pretrain(store: &str, name: &str, extra: &[&str], flags: &[&str]) -> Vec<String> {
    cat(cat(a(&["pretrain"]), sets(store, name, extra)), a(flags))
}

fn embed(input: &str, flags: &[&str]) -> Vec<String> {
    cat(
        a(&[
            "embed",
            "--checkpoint",
            "encoder.safetensors",
            "--input",
            input,
            "--output",
            "out.npy",
        ]),
        cat(a(flags), sets("ok.h5", "embed", &[])),
    )
}

fn ensemble(scores: &[&str], weights: &str) -> Vec<String> {
    let mut args = a(&["eval", "ensemble", "--out", "ens", "--scores"]);
    args.extend(a(scores));
    args.push(format!("--weights={weights}"));
    cat(args, sets("ok.h5", "ens", &[]))
}

#[rustfmt::skip]
fn config_rows() -> Vec<Row> {
    let set = |what, kv: &'static str, key: &'static str| {
        row(what, pretrain("ok.h5", "cfg", &[kv], &[]), 1, &[key, kv])
    };
    vec![
        set("mask_joint far above the joints", "pretrain.mask_joint=1000", "pretrain.mask_joint"),
        set("no checkpoint kept", "pretrain.keep_checkpoints=0", "pretrain.keep_checkpoints"),
        set("mask_joint above the joints", "pretrain.mask_joint=26", "pretrain.mask_joint"),
        set("mask_joint removes every joint", "pretrain.mask_joint=25", "pretrain.mask_joint"),
        set("temporal kernel 0", "model.temporal_kernel=0", "model.temporal_kernel"),
        set("even temporal kernel", "model.temporal_kernel=4", "model.temporal_kernel"),
        set("negative lambda", "pretrain.lambda=-0.1", "pretrain.lambda"),
        set("NaN lambda", "pretrain.lambda=nan", "pretrain.lambda"),
        set("negative pad_ratio", "augment.pad_ratio=-1", "augment.pad_ratio"),
        set("lr 0", "pretrain.lr=0", "pretrain.lr"),
        set("infinite lr", "pretrain.lr=inf", "pretrain.lr"),
        set("batch of one", "pretrain.batch_size=1", "pretrain.batch_size"),
        set("no epochs", "pretrain.epochs=0", "pretrain.epochs"),
        set("negative mask_frame", "pretrain.mask_frame=-2", "pretrain.mask_frame"),
        set("projector of width 0", "model.projector_dim=0", "model.projector_dim"),
        set("feature_dim negative", "model.feature_dim=-4", "model.feature_dim"),
        set("dropout above 1", "model.dropout=1.5", "model.dropout"),
        set("flip probability 2", "augment.flip_prob=2", "augment.flip_prob"),
        set("NaN shear", "augment.shear_amp=nan", "augment.shear_amp"),
        set("run name escaping run.dir", "run.name=\"../x\"", "run.name"),
        set("k of 0 in k-NN", "eval.knn_k=[0]", "eval.knn_k"),
        set(
            "semi percent 0",
            "eval.semi_percents=[0.0]",
            "eval.semi_percents",
        ),
        set(
            "negative linear lr",
            "eval.linear_lr=-0.1",
            "eval.linear_lr",
        ),
        set(
            "robust removes every joint",
            "eval.robust_max_k=25",
            "eval.robust_max_k",
        ),
        set(
            "NaN ensemble weight in config",
            "eval.ensemble_weights=[nan, 1.0, 1.0]",
            "eval.ensemble_weights",
        ),
        set(
            "unknown body part",
            "eval.robust_part_sets=[\"left_arm,tail\"]",
            "eval.robust_part_sets",
        ),
        set(
            "unknown ensemble mode",
            "eval.ensemble_mode=\"max\"",
            "ensemble_mode",
        ),
        set(
            "synthetic classes 61",
            "data.synth.classes=61",
            "data.synth.classes",
        ),
        set("wrong type", "pretrain.epochs=\"many\"", "pretrain.epochs"),
        set("unknown key", "pretrain.epochz=3", "epochz"),
        row("--set without =", a(&["pretrain", "--set", "pretrain.epochs"]), 1, &["--set pretrain.epochs"]),
        row("missing config file", a(&["pretrain", "--config", "nope.toml"]), 1, &["nope.toml"]),
        row("config syntax error", a(&["pretrain", "--config", "syntax.toml"]), 1, &["syntax.toml"]),
        row("unknown key in config file", a(&["pretrain", "--config", "unknown.toml"]), 1, &["unknown.toml", "epochz"]),
        row("bad --device", cat(a(&["pretrain", "--device", "gpu7"]), sets("ok.h5", "cfg", &[])), 1, &["--device gpu7", "run.device"]),
        row("--threads 9999", cat(a(&["pretrain", "--threads", "9999"]), sets("ok.h5", "cfg", &[])), 1, &["--threads 9999"]),
        row("missing data.path", pretrain("absent.h5", "cfg", &[], &[]), 1, &["absent.h5"]),
    ]
}

#[rustfmt::skip]
fn data_rows() -> Vec<Row> {
    let prepare = |raw: &str, extra: &[&str]| {
        cat(a(&["prepare", "ntu", "--raw", raw, "--out", "x.h5", "--benchmark", "xsub"]), a(extra))
    };
    vec![
        row("20-frame store, default mask_frame", pretrain("frames20.h5", "d", &["pretrain.mask_frame=10"], &[]), 1, &["pretrain.mask_frame", "frames20.h5"]),
        row("mask_frame 25 on 50 frames", pretrain("ok.h5", "d", &["pretrain.mask_frame=25"], &[]), 1, &["pretrain.mask_frame", "ok.h5"]),
        row("empty train split", pretrain("empty_train.h5", "d", &[], &[]), 1, &["empty_train.h5", "train split"]),
        row("one train sample", pretrain("one_train.h5", "d", &[], &[]), 1, &["one_train.h5", "1 sample"]),
        row("NaN in the train split", pretrain("nan_train.h5", "d", &[], &[]), 1, &["nan_train.h5", "train", "sample004", "non-finite"]),
        row("NaN in a test sample, eval linear", cat(a(&["eval", "linear", "--checkpoint", "encoder.safetensors"]), sets("nan_test.h5", "d", &[])), 1, &["nan_test.h5", "test", "sample001", "non-finite"]),
        row("NaN in a test sample, eval knn", cat(a(&["eval", "knn"]), sets("nan_test.h5", "d", &[])), 1, &["nan_test.h5", "sample001"]),
        row("eval on a missing checkpoint", cat(a(&["eval", "linear", "--checkpoint", "absent.pt"]), sets("ok.h5", "d", &[])), 1, &["absent.pt"]),
        row("coordinate 1e39 in a .skeleton", prepare("ntu_inf", &[]), 1, &["ntu_inf/S001C001P001R001A001.skeleton:5", "1e39"]),
        row("header frame count below the body", prepare("ntu_count", &[]), 1, &["ntu_count/S001C001P001R001A001.skeleton", "frame count"]),
        row("every file bad with --skip-bad", prepare("ntu_allbad", &["--skip-bad"]), 1, &["x.h5", "no sample", "S001C001P001R001A001"]),
        row("missing raw folder", prepare("absent_dir", &[]), 1, &["absent_dir"]),
        row("--frames 0", prepare("ntu_inf", &["--frames", "0"]), 1, &["--frames 0"]),
        row("unknown benchmark", a(&["prepare", "ntu", "--raw", "ntu_inf", "--out", "x.h5", "--benchmark", "xfoo"]), 2, &["xfoo"]),
        row("PKU-MMD coordinate 9e99", a(&["prepare", "pku", "--skeletons", "pku/skel", "--labels", "pku/labels", "--split", "pku/split.txt", "--out", "p.h5"]), 1, &["pku/skel/0002-L.txt:2", "9e99"]),
        row("prepare npy from a text file", a(&["prepare", "npy", "--train-data", "text.txt", "--train-labels", "text.txt", "--test-data", "text.txt", "--test-labels", "text.txt", "--out", "n.h5"]), 1, &["text.txt"]),
        row("synth --classes 0", a(&["synth", "--out", "s.h5", "--classes", "0"]), 1, &["--classes 0"]),
        row("synth --classes 61", a(&["synth", "--out", "s.h5", "--classes", "61"]), 1, &["--classes 61"]),
        row("synth --train-per-class 0", a(&["synth", "--out", "s.h5", "--train-per-class", "0"]), 1, &["--train-per-class 0"]),
        row("unknown command", a(&["pretrian"]), 2, &["pretrian"]),
    ]
}

#[rustfmt::skip]
fn io_rows() -> Vec<Row> {
    let all: String = (0..25).map(|j| j.to_string()).collect::<Vec<_>>().join(",");
    let all: &'static str = Box::leak(all.into_boxed_str());
    vec![
        row("embed dropping all 25 joints", embed("input.npy", &["--drop-joints", all]), 1, &["--drop-joints"]),
        row("embed dropping joint 25", embed("input.npy", &["--drop-joints", "25"]), 1, &["--drop-joints", "25"]),
        row("embed --batch-size 0", embed("input.npy", &["--batch-size", "0"]), 1, &["--batch-size 0"]),
        row("embed on N = 0", embed("empty.npy", &[]), 1, &["empty.npy"]),
        row("embed on an overflowing shape", embed("overflow.npy", &[]), 1, &["overflow.npy", "overflow"]),
        row("embed on a NaN input", embed("nan_input.npy", &[]), 1, &["nan_input.npy", "sample 1", "non-finite"]),
        row("embed on 24 joints", embed("joints24.npy", &[]), 1, &["joints24.npy"]),
        row("embed on a text file", embed("text.txt", &[]), 1, &["text.txt"]),
        row("embed with a text checkpoint", cat(a(&["embed", "--checkpoint", "text.txt", "--input", "input.npy", "--output", "o.npy"]), sets("ok.h5", "e", &[])), 1, &["text.txt"]),
        row("embed with a corrupt checkpoint", cat(a(&["embed", "--checkpoint", "corrupt.safetensors", "--input", "input.npy", "--output", "o.npy"]), sets("ok.h5", "e", &[])), 1, &["corrupt.safetensors", "st_gcn_networks.9.tcn.2.weight", "digest"]),
        row("ensemble of 3 and 4 classes", ensemble(&["scores3.npy", "scores4.npy"], "1,1"), 1, &["scores4.npy", "classes"]),
        row("ensemble NaN weight", ensemble(&["scores3.npy", "scores3b.npy"], "nan,1"), 1, &["--weights", "NaN"]),
        row("ensemble negative weight", ensemble(&["scores3.npy", "scores3b.npy"], "-1,1"), 1, &["--weights"]),
        row("ensemble infinite score", ensemble(&["scores3.npy", "scores_inf.npy"], "1,1"), 1, &["scores_inf.npy", "non-finite"]),
        row("ensemble wrong row count", ensemble(&["scores3.npy", "scores_rows.npy"], "1,1"), 1, &["scores_rows.npy"]),
        row("ensemble weights count", ensemble(&["scores3.npy", "scores3b.npy"], "1"), 1, &["weight"]),
        row("export --frames 0", cat(a(&["export", "--checkpoint", "encoder.safetensors", "--torchscript", "t.pt", "--frames", "0"]), sets("ok.h5", "x", &[])), 1, &["--frames 0"]),
        row("robust --parts with an unknown part", cat(a(&["eval", "robust", "--parts", "left_arm,nose"]), sets("ok.h5", "r", &[])), 1, &["--parts left_arm,nose", "nose"]),
        row("robust --parts removing every joint", cat(a(&["eval", "robust", "--parts", "left_arm,right_arm,left_leg,right_leg,trunk"]), sets("ok.h5", "r", &[])), 1, &["--parts", "every joint"]),
        row("bench --steps 0", cat(a(&["bench", "--steps", "0"]), sets("ok.h5", "b", &[])), 1, &["--steps 0"]),
        row("bench with mask_frame leaving no frames", cat(a(&["bench", "--steps", "1"]), sets("ok.h5", "b", &["pretrain.mask_frame=25"])), 1, &["pretrain.mask_frame", "random batch"]),
    ]
}

#[rustfmt::skip]
fn run_rows() -> Vec<Row> {
    vec![
        row("--resume on a misspelled run", pretrain("ok.h5", "dnoe", &[], &["--resume"]), 1, &["--resume", "dnoe", "done"]),
        row("--init on a run with a checkpoint", pretrain("ok.h5", "done", &[], &["--init", "encoder.safetensors"]), 1, &["--init encoder.safetensors", "--fresh"]),
        row("--init of a missing file", pretrain("ok.h5", "fresh", &[], &["--init", "absent.safetensors"]), 1, &["absent.safetensors"]),
        row("--stop-after 0", pretrain("ok.h5", "done", &[], &["--stop-after", "0"]), 1, &["--stop-after 0"]),
        row("--fresh with --resume", pretrain("ok.h5", "done", &[], &["--fresh", "--resume"]), 2, &["--fresh", "--resume"]),
    ]
}

fn check(r: &Row) -> Result<(), String> {
    let out = run(&r.args);
    let err = String::from_utf8_lossy(&out.stderr);
    let fail = |why: String| {
        Err(format!(
            "row `{}`: {why}\nargs: {:?}\nstderr: {err}",
            r.what, r.args
        ))
    };
    if err.contains("panicked") || err.contains("RUST_BACKTRACE") {
        return fail("panicked".into());
    }
    if out.status.code() != Some(r.code) {
        return fail(format!("exit {:?}, expected {}", out.status.code(), r.code));
    }
    for name in &r.names {
        if !err.contains(name) {
            return fail(format!("message does not name `{name}`"));
        }
    }
    if err.contains("epoch 1/") {
        return fail("started training".into());
    }
    Ok(())
}

#[test]
fn bad_inputs_fail_fast_with_a_message_naming_them() {
    let f = fixtures();
    let rows: Vec<Row> = [config_rows(), data_rows(), io_rows(), run_rows()]
        .into_iter()
        .flatten()
        .collect();
    assert!(rows.len() >= 40, "{} rows", rows.len());
    let config_before = std::fs::read(f.dir.join("runs/done/config.toml")).unwrap();
    // Two workers: each row is a process start and a check, no training.
    let failures: Vec<String> = std::thread::scope(|s| {
        let (a, b) = rows.split_at(rows.len() / 2);
        let h: Vec<_> = [a, b]
            .into_iter()
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .filter_map(|r| check(r).err())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        h.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n\n")
    );
    // Failed commands on the finished run left its config alone.
    assert_eq!(
        std::fs::read(f.dir.join("runs/done/config.toml")).unwrap(),
        config_before
    );
    // No empty store was left by the all-bad prepare.
    assert!(!f.dir.join("x.h5").exists());
}

#[test]
fn finished_run_is_not_retrained_or_rewritten() {
    let f = fixtures();
    let run_dir = f.dir.join("runs/done");
    let before: Vec<Vec<u8>> = ["config.toml", "results.json", "checkpoint.safetensors"]
        .iter()
        .map(|n| std::fs::read(run_dir.join(n)).unwrap())
        .collect();
    let out = run(&pretrain(
        "ok.h5",
        "done",
        &["eval.after_pretrain=true"],
        &[],
    ));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("complete"), "{text}");
    for (n, b) in ["config.toml", "results.json", "checkpoint.safetensors"]
        .iter()
        .zip(&before)
    {
        assert_eq!(&std::fs::read(run_dir.join(n)).unwrap(), b, "{n} changed");
    }
}

#[test]
fn outputs_follow_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let f = fixtures();
    let bin = pstl_bin();
    for (umask, want) in [("022", 0o644), ("077", 0o600)] {
        let store = format!("umask{umask}.h5");
        let feats = format!("umask{umask}.npy");
        let embed_args = embed("input.npy", &[])
            .join("' '")
            .replace("out.npy", &feats);
        let script = format!(
            "umask {umask} && '{}' synth --out {store} --classes 2 --train-per-class 1 --test-per-class 1 && '{}' '{embed_args}'",
            bin.display(),
            bin.display()
        );
        let out = Command::new("sh")
            .arg("-c")
            .arg(&script)
            .current_dir(&f.dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for file in [&store, &feats] {
            let mode = std::fs::metadata(f.dir.join(file))
                .unwrap()
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(mode, want, "{file} under umask {umask}: {mode:o}");
        }
    }
}

#[test]
fn temporaries_of_killed_runs_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("f.npy");
    // A pid above Linux's maximum (2^22) is never running; ours is.
    let dead = dir.path().join(".f.npy.99999999.x1.tmp");
    let live = dir
        .path()
        .join(format!(".f.npy.{}.x2.tmp", std::process::id()));
    let other = dir.path().join(".g.npy.99999999.x3.tmp");
    for p in [&dead, &live, &other] {
        std::fs::write(p, b"partial").unwrap();
    }
    pstl::data::npy::write_npy_f32(&out, &[1.0, 2.0], &[2]).unwrap();
    assert!(out.exists());
    assert!(!dead.exists(), "stale temporary kept");
    assert!(live.exists(), "a live writer's temporary was removed");
    assert!(other.exists(), "another file's temporary was removed");
}

#[test]
fn last_batch_of_one_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.h5");
    let meta = StoreMeta::new("synthetic", "default", 3, 50, "batch of one");
    write_store(&store, &meta, &split(17, 50, None), &split(2, 50, None)).unwrap();
    let mut cfg = tiny_config(&store, dir.path(), "b1");
    cfg.pretrain.epochs = 1;
    cfg.pretrain.log_every = 100;
    let run_dir = dir.path().join("b1");
    let opts = pstl::train::PretrainOptions::default();
    let report = pstl::train::pretrain(&cfg, tch::Device::Cpu, &run_dir, &opts).unwrap();
    assert!(report.final_loss.is_finite());
    // 17 samples in batches of 16: one step, the lone 17th sample is left out.
    let rows = pstl::rundir::read_metrics(&run_dir.join("metrics.csv")).unwrap();
    assert_eq!(rows.last().map(|r| r.step), Some(1), "{rows:?}");
}
