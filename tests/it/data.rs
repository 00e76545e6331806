//! Integration tests of the data module: NTU/PKU parsers, frame-50 normalisation (against
//! an independent NumPy reference when the project's venv exists), the HDF5 store, the
//! batch loader, `.npy`/pickle interop and the `prepare` commands.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use pstl::data::loader::{BatchLoader, LoaderOptions};
use pstl::data::normalize::frame50;
use pstl::data::npy::{
    parse_label_pickle, read_label_pickle, read_npy_f32, read_npy_i64, write_npy_f32,
};
use pstl::data::ntu::{
    parse_skeleton_bytes, parse_skeleton_file, NtuBenchmark, NtuDataset, NtuName,
};
use pstl::data::pku::{cut_instance, parse_pku_labels, parse_pku_skeleton_bytes, parse_pku_split};
use pstl::data::prepare::{
    prepare_npy, prepare_ntu, prepare_pku, write_skeleton_text, PrepareNpyOpts, PrepareNtuOpts,
    PreparePkuOpts,
};
use pstl::data::store::{write_store, SplitData, Store, StoreMeta};
use pstl::data::{DataError, RawSeq, CHANNELS, NTU_JOINTS, PERSONS};

const V: usize = NTU_JOINTS;
const M: usize = PERSONS;

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures/S001C001P001R001A001.skeleton")
}

fn venv_python() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    p.exists().then_some(p)
}

fn at(seq: &RawSeq, c: usize, t: usize, v: usize, m: usize) -> f32 {
    seq.data[((c * seq.frames + t) * V + v) * M + m]
}

/// A deterministic raw sequence: person 0 always present (a moving, rotated figure),
/// person 1 present when `two` is set, frames past `valid` zero.
fn make_seq(frames: usize, valid: usize, two: bool, seed: u32) -> RawSeq {
    let mut data = vec![0.0f32; CHANNELS * frames * V * M];
    for t in 0..valid.min(frames) {
        for m in 0..if two { 2 } else { 1 } {
            for v in 0..V {
                let k = (seed as usize * 31 + t * 7 + v * 13 + m * 5) as f32;
                let xyz = [
                    0.3 * (k * 0.37).sin() + 0.05 * v as f32 - 0.4 * m as f32,
                    0.8 * (k * 0.11).cos() + 0.02 * t as f32,
                    3.0 + 0.2 * (k * 0.23).sin() + 0.1 * m as f32,
                ];
                for (c, value) in xyz.into_iter().enumerate() {
                    data[((c * frames + t) * V + v) * M + m] = value;
                }
            }
        }
    }
    RawSeq { frames, data }
}

// ---------------------------------------------------------------------------------
// NTU parser
// ---------------------------------------------------------------------------------

/// A naive reading of the fixture: tokens, walked by the format's counts.
fn naive_parse(text: &str) -> (usize, Vec<usize>, Vec<Vec<[f32; 3]>>) {
    let tok: Vec<&str> = text.split_whitespace().collect();
    let mut i = 0;
    let frames: usize = tok[i].parse().unwrap();
    i += 1;
    let mut bodies = Vec::new();
    let mut body0 = Vec::new();
    for _ in 0..frames {
        let b: usize = tok[i].parse().unwrap();
        i += 1;
        bodies.push(b);
        let mut joints = vec![[0.0f32; 3]; 25];
        for body in 0..b {
            i += 10;
            let n: usize = tok[i].parse().unwrap();
            i += 1;
            for joint in joints.iter_mut().take(n) {
                let xyz = [0, 1, 2].map(|k| tok[i + k].parse::<f64>().unwrap() as f32);
                if body == 0 {
                    *joint = xyz;
                }
                i += 12;
            }
        }
        body0.push(joints);
    }
    (frames, bodies, body0)
}

#[test]
fn parses_the_real_fixture() -> anyhow::Result<()> {
    let path = fixture();
    let seq = parse_skeleton_file(&path)?;
    let text = std::fs::read_to_string(&path)?;
    let (frames, bodies, body0) = naive_parse(&text);
    assert_eq!(seq.frames, 103);
    assert_eq!(frames, 103);
    assert!(
        bodies.iter().all(|&b| b == 1),
        "fixture has one body per frame"
    );
    assert_eq!(seq.data.len(), 3 * 103 * 25 * 2);
    // Frame 0 joint 0 is the first joint line of the file: 0.2181153 0.1725972 3.785547.
    assert_eq!(
        [0, 1, 2].map(|c| at(&seq, c, 0, 0, 0)),
        [0.2181153, 0.1725972, 3.785547]
    );
    for (t, v) in [(0, 0), (0, 24), (51, 11), (102, 0), (102, 24)] {
        let got = [0, 1, 2].map(|c| at(&seq, c, t, v, 0));
        assert_eq!(got, body0[t][v], "frame {t} joint {v}");
    }
    // Every value of body 0 matches, and person slot 1 stays empty.
    for (t, joints) in body0.iter().enumerate() {
        for (v, xyz) in joints.iter().enumerate() {
            assert_eq!([0, 1, 2].map(|c| at(&seq, c, t, v, 0)), *xyz);
            assert_eq!([0, 1, 2].map(|c| at(&seq, c, t, v, 1)), [0.0; 3]);
        }
    }
    let name = NtuName::from_path(&path)?;
    assert_eq!(
        (
            name.setup,
            name.camera,
            name.performer,
            name.replication,
            name.action
        ),
        (1, 1, 1, 1, 1)
    );
    assert_eq!(name.label(), 0);
    assert_eq!(name.to_string(), "S001C001P001R001A001");
    Ok(())
}

fn expect_parse_error(text: &str, line: usize, needle: &str) {
    let path = Path::new("/data/bad/S001C001P001R001A001.skeleton");
    let err = parse_skeleton_bytes(text.as_bytes(), path).expect_err("malformed input accepted");
    assert_eq!(err.path(), Some(path), "{err}");
    assert_eq!(err.line(), Some(line), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("/data/bad/S001C001P001R001A001.skeleton"),
        "{msg}"
    );
    assert!(msg.contains(&format!(":{line}:")), "{msg}");
    assert!(msg.contains(needle), "{msg:?} should mention {needle:?}");
}

#[test]
fn malformed_skeletons_name_path_and_line() -> anyhow::Result<()> {
    let text = std::fs::read_to_string(fixture())?;
    let lines: Vec<&str> = text.lines().collect();
    // Header (1) + frame 0 (1 + 1 + 1 + 25 = 28 lines) + 10 lines of frame 1.
    let cut = lines[..39].join("\n") + "\n";
    expect_parse_error(&cut, 40, "truncated");
    // A cut inside the last joint line leaves 3 of its 12 fields.
    let partial = lines[..38].join("\n") + "\n" + &lines[38][..25];
    expect_parse_error(&partial, 39, "fields");

    let mut bad = lines.clone();
    bad[3] = "24";
    expect_parse_error(&(bad.join("\n") + "\n"), 4, "joint count 24");

    let mut bad = lines.clone();
    let joint = lines[4].replacen("0.2181153", "0.21x1153", 1);
    bad[4] = &joint;
    expect_parse_error(&(bad.join("\n") + "\n"), 5, "not a number");

    let mut bad = lines.clone();
    let joint = lines[30].replacen(' ', " abc ", 1);
    bad[30] = &joint;
    expect_parse_error(&(bad.join("\n") + "\n"), 31, "fields");

    expect_parse_error("3\n0\n0\n0\n", 1, "no body");
    expect_parse_error("", 1, "empty");
    expect_parse_error("x\n", 1, "frame count");
    Ok(())
}

/// A one-frame, one-body file whose 25 joints have the given x values (y = 1, z = 3).
fn one_frame_with_x(xs: &[&str]) -> String {
    let mut s = String::from("1\r\n1\n72057594037931101 0 1 1 1 1 0 0.02764709 0.05745083 2\n25\n");
    for v in 0..25 {
        let x = xs.get(v).copied().unwrap_or("0.5");
        s += &format!("{x} 1 3 1 2 3 4 0.1 0.2 0.3 0.4 2\r\n");
        if v == 10 {
            s += "   \n"; // blank lines are skipped
        }
    }
    s
}

#[test]
fn number_syntax_matches_std() -> anyhow::Result<()> {
    let good = [
        "0.2181153",
        "-1.4e-05",
        "3",
        "-0",
        ".5",
        "5.",
        "1E3",
        "+2.5",
        "1e-30",
        "123456789012345678901234",
        "7.2057594037931101e16",
        "0.30000000000000004",
        "-2.5e+2",
    ];
    let text = one_frame_with_x(&good);
    let seq = parse_skeleton_bytes(text.as_bytes(), Path::new("n.skeleton"))?;
    for (v, s) in good.iter().enumerate() {
        let want = s.parse::<f64>()? as f32;
        assert_eq!(at(&seq, 0, 0, v, 0), want, "{s}");
    }
    assert_eq!(at(&seq, 2, 0, 24, 0), 3.0);
    for bad in [
        "", "-", ".", "e5", "1e", "1.2.3", "nan", "inf", "0x10", "1,5", "--1",
    ] {
        if bad.is_empty() {
            continue;
        }
        let text = one_frame_with_x(&["0", bad]);
        let err = parse_skeleton_bytes(text.as_bytes(), Path::new("n.skeleton")).expect_err(bad);
        assert_eq!(err.line(), Some(6), "{bad}: {err}");
    }
    // CRLF line ends give the same sequence as LF.
    let lf = std::fs::read_to_string(fixture())?;
    let crlf = lf.replace('\n', "\r\n");
    assert_eq!(
        parse_skeleton_bytes(crlf.as_bytes(), Path::new("crlf"))?,
        parse_skeleton_file(&fixture())?
    );
    Ok(())
}

#[test]
fn linear_taps_follow_opencv() {
    use pstl::data::normalize::linear_taps;
    // 4 -> 2: src = 0.5, 2.5.
    assert_eq!(linear_taps(0, 2.0, 4), (0, 1, 0.5));
    assert_eq!(linear_taps(1, 2.0, 4), (2, 3, 0.5));
    // 2 -> 4: src = -0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped to 1).
    assert_eq!(linear_taps(0, 0.5, 2), (0, 0, 0.0));
    assert_eq!(linear_taps(1, 0.5, 2), (0, 1, 0.25));
    assert_eq!(linear_taps(2, 0.5, 2), (0, 1, 0.75));
    assert_eq!(linear_taps(3, 0.5, 2), (1, 1, 0.0));
    // One source frame: always that frame.
    assert_eq!(linear_taps(7, 1.0 / 50.0, 1), (0, 0, 0.0));
}

#[test]
fn third_body_is_ignored_and_second_fills_slot_1() -> anyhow::Result<()> {
    // Two bodies per frame from `seq`, then a third one from `other` in every frame.
    let seq = make_seq(6, 6, true, 3);
    let other = make_seq(6, 6, false, 77);
    let two = write_skeleton_text(&seq, 2);
    let one = write_skeleton_text(&other, 1);
    let (two, one): (Vec<&str>, Vec<&str>) = (two.lines().collect(), one.lines().collect());
    let body = 1 + 1 + V; // info line, joint count, joints
    let mut text = String::from("6\n");
    for t in 0..6 {
        text += "3\n";
        let a = 1 + t * (1 + 2 * body) + 1;
        let b = 1 + t * (1 + body) + 1;
        for line in two[a..a + 2 * body].iter().chain(&one[b..b + body]) {
            text += line;
            text.push('\n');
        }
    }
    let back = parse_skeleton_bytes(text.as_bytes(), Path::new("gen.skeleton"))?;
    assert_eq!(back.frames, 6);
    assert!(seq.data.iter().any(|&v| v != 0.0) && at(&seq, 0, 0, 0, 1) != 0.0);
    for (a, b) in back.data.iter().zip(&seq.data) {
        assert!((a - b).abs() <= 1e-6 * b.abs().max(1.0), "{a} vs {b}");
    }
    // Zero bodies in some frames: those frames are zero.
    let text = "2\n0\n".to_string() + &write_skeleton_text(&make_seq(1, 1, false, 1), 1)[2..];
    let seq = parse_skeleton_bytes(text.as_bytes(), Path::new("gap.skeleton"))?;
    assert_eq!(seq.frames, 2);
    assert!((0..3).all(|c| (0..V).all(|v| at(&seq, c, 0, v, 0) == 0.0)));
    assert!(at(&seq, 2, 1, 0, 0) != 0.0);
    Ok(())
}

#[test]
fn ntu_names_and_splits() {
    for bad in [
        "S001C001P001R001",
        "X001C001P001R001A001",
        "S001C001P001R001A0x1",
        "S000C001P001R001A001",
        "",
    ] {
        let err = NtuName::parse(bad).expect_err(bad);
        assert!(matches!(err, DataError::Format { .. }), "{err}");
        assert!(err.to_string().contains("SsssCcccPpppRrrrAaaa"), "{err}");
    }
    let err = NtuName::from_path(Path::new("/raw/S001C001P001R001A01.skeleton")).unwrap_err();
    assert!(
        err.to_string()
            .contains("/raw/S001C001P001R001A01.skeleton"),
        "{err}"
    );

    let n = NtuName::parse("S018C002P045R002A120.skeleton").unwrap();
    assert_eq!(
        (n.setup, n.camera, n.performer, n.replication, n.action),
        (18, 2, 45, 2, 120)
    );
    assert!(!NtuDataset::Ntu60.contains(&n));
    assert!(NtuDataset::Ntu120.contains(&n));
    assert!(n.is_train(NtuDataset::Ntu120, NtuBenchmark::XSub));
    assert!(!n.is_train(NtuDataset::Ntu60, NtuBenchmark::XSub));
    assert!(n.is_train(NtuDataset::Ntu120, NtuBenchmark::XSet));
    assert!(n.is_train(NtuDataset::Ntu60, NtuBenchmark::XView));
    let n = NtuName::parse("S017C001P003R001A060").unwrap();
    assert!(!n.is_train(NtuDataset::Ntu60, NtuBenchmark::XSub));
    assert!(!n.is_train(NtuDataset::Ntu60, NtuBenchmark::XView));
    assert!(!n.is_train(NtuDataset::Ntu120, NtuBenchmark::XSet));
    assert!(NtuBenchmark::XSet.check_for(NtuDataset::Ntu60).is_err());
    assert!(NtuBenchmark::XView.check_for(NtuDataset::Ntu120).is_err());
    assert_eq!(pstl::data::ntu::NTU120_XSUB_TRAIN.len(), 53);
}

// ---------------------------------------------------------------------------------
// Frame-50 normalisation
// ---------------------------------------------------------------------------------

#[test]
fn frame50_matches_numpy_reference() -> anyhow::Result<()> {
    let mut cases = vec![
        ("fixture", parse_skeleton_file(&fixture())?, 50),
        ("two persons, padded", make_seq(300, 120, true, 1), 50),
        ("upsampled", make_seq(64, 20, true, 2), 50),
        ("one frame", make_seq(10, 1, false, 3), 50),
        ("other length", make_seq(40, 37, true, 4), 30),
        ("all zero", make_seq(12, 0, false, 5), 50),
    ];
    // Person 1 leaves half-way: zero frames of one person inside the valid range.
    let mut partial = make_seq(80, 80, true, 6);
    for c in 0..3 {
        for t in 40..80 {
            for v in 0..V {
                partial.data[((c * 80 + t) * V + v) * M + 1] = 0.0;
            }
        }
    }
    cases.push(("person 1 leaves", partial, 50));

    for (label, raw, frames) in &cases {
        let out = frame50(raw, *frames);
        assert_eq!(out.len(), 3 * frames * V * M, "{label}");
        assert!(
            out.iter().all(|v| v.is_finite()),
            "{label}: non-finite output"
        );
    }
    let zero = frame50(&cases[5].1, 50);
    assert!(zero.iter().all(|&v| v == 0.0));
    // Joint 20 is the origin, and the shoulder vector has z = 0 after rotation.
    let out = frame50(&cases[0].1, 50);
    let idx = |c: usize, t: usize, v: usize, m: usize| ((c * 50 + t) * V + v) * M + m;
    for t in 0..50 {
        assert!((0..3).all(|c| out[idx(c, t, 20, 0)].abs() < 1e-6));
        let dz = out[idx(2, t, 8, 0)] - out[idx(2, t, 4, 0)];
        let dx = out[idx(0, t, 8, 0)] - out[idx(0, t, 4, 0)];
        assert!(dz.abs() < 1e-3 && dx > 0.0, "frame {t}: dx {dx} dz {dz}");
    }

    let Some(python) = venv_python() else {
        println!("SKIP frame50 numpy cross-check: no .venv/bin/python");
        return Ok(());
    };
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/frame50_ref.py");
    let dir = tempfile::tempdir()?;
    for (k, (label, raw, frames)) in cases.iter().enumerate() {
        let input = dir.path().join(format!("in{k}.npy"));
        let output = dir.path().join(format!("out{k}.npy"));
        write_npy_f32(&input, &raw.data, &[3, raw.frames, V, M])?;
        let status = Command::new(&python)
            .arg(&script)
            .arg(&input)
            .arg(&output)
            .arg(frames.to_string())
            .status()?;
        assert!(status.success(), "{label}: reference script failed");
        let (want, shape) = read_npy_f32(&output)?;
        assert_eq!(shape, vec![3, *frames, V, M], "{label}");
        let got = frame50(raw, *frames);
        let worst = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-4, "{label}: max |rust - numpy| = {worst}");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------
// HDF5 store
// ---------------------------------------------------------------------------------

fn split_data(n: usize, meta: &StoreMeta, salt: f32, prefix: &str) -> SplitData {
    let len = meta.sample_len();
    SplitData {
        x: (0..n * len).map(|i| i as f32 * 0.25 + salt).collect(),
        y: (0..n).map(|i| (i * 7 % meta.num_classes) as i64).collect(),
        names: (0..n).map(|i| format!("{prefix}{i:04}")).collect(),
    }
}

fn small_store(
    dir: &Path,
    n_train: usize,
    n_test: usize,
) -> anyhow::Result<(PathBuf, SplitData, SplitData)> {
    let meta = StoreMeta::new("synth", "xsub", 10, 5, "test data");
    let train = split_data(n_train, &meta, 0.0, "tr");
    let test = split_data(n_test, &meta, 1000.0, "te");
    let path = dir.join("store.h5");
    write_store(&path, &meta, &train, &test)?;
    Ok((path, train, test))
}

#[test]
fn store_round_trip() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (path, train, test) = small_store(dir.path(), 9, 4)?;
    let store = Store::open(&path)?;
    let meta = store.meta();
    assert_eq!(*meta, StoreMeta::new("synth", "xsub", 10, 5, "test data"));
    assert_eq!((store.len("train")?, store.len("test")?), (9, 4));
    assert_eq!(store.read_split("train")?, train);
    assert_eq!(store.read_split("test")?, test);
    assert_eq!(store.labels("test")?, &test.y[..]);

    let len = meta.sample_len();
    let idx = [5usize, 1, 1, 8, 0, 2];
    let got = store.read_indices("train", &idx)?;
    for (k, &i) in idx.iter().enumerate() {
        assert_eq!(
            got.x[k * len..(k + 1) * len],
            train.x[i * len..(i + 1) * len]
        );
        assert_eq!(got.y[k], train.y[i]);
        assert_eq!(got.names[k], train.names[i]);
    }
    let range = store.read_range("test", 1, 2)?;
    assert_eq!(range.y, test.y[1..3]);
    assert_eq!(range.x, test.x[len..3 * len]);
    assert_eq!(range.names, test.names[1..3]);
    assert!(store.read_range("test", 3, 2).is_err());
    assert!(store.read_indices("train", &[9]).is_err());
    assert!(store.len("val").is_err());
    // An empty split is a valid store.
    let meta = StoreMeta::new("synth", "xsub", 10, 5, "empty test split");
    let empty_path = dir.path().join("empty.h5");
    write_store(&empty_path, &meta, &train, &SplitData::default())?;
    let empty = Store::open(&empty_path)?;
    assert_eq!(empty.len("test")?, 0);
    assert_eq!(empty.read_split("test")?, SplitData::default());
    let loader = BatchLoader::new(&empty, "test", LoaderOptions::default())?;
    assert_eq!((loader.num_batches(), loader.epoch(0).count()), (0, 0));
    std::fs::remove_file(&empty_path)?;
    // Nothing but the store is left in the directory.
    let entries: Vec<_> = std::fs::read_dir(dir.path())?.collect();
    assert_eq!(entries.len(), 1);
    Ok(())
}

#[test]
fn failed_store_write_leaves_nothing() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let meta = StoreMeta::new("synth", "xsub", 10, 5, "test data");
    let train = split_data(3, &meta, 0.0, "tr");
    let mut test = split_data(2, &meta, 0.0, "te");
    test.y[1] = 10; // out of range: fails after the train split was written
    let path = dir.path().join("out.h5");
    let err = write_store(&path, &meta, &train, &test).unwrap_err();
    assert!(err.to_string().contains("label 10"), "{err}");
    assert!(!path.exists());
    assert_eq!(
        std::fs::read_dir(dir.path())?.count(),
        0,
        "temporary file left behind"
    );

    // An existing store survives a failed rewrite.
    let (path, train, _) = small_store(dir.path(), 2, 1)?;
    let bad = SplitData {
        x: vec![0.0; 3],
        y: vec![0],
        names: vec!["a".into()],
    };
    assert!(write_store(&path, &meta, &bad, &bad).is_err());
    assert_eq!(Store::open(&path)?.read_split("train")?, train);
    assert_eq!(std::fs::read_dir(dir.path())?.count(), 1);
    Ok(())
}

#[test]
fn store_validation_names_file_and_field() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (path, _, _) = small_store(dir.path(), 2, 2)?;
    {
        let file = hdf5::File::with_options()
            .with_fapl(|p| p.file_locking(false))
            .open_rw(&path)?;
        file.group("test")?.unlink("name")?;
    }
    let err = Store::open(&path).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("store.h5") && msg.contains("test/name"),
        "{msg}"
    );

    let (path, _, _) = small_store(dir.path(), 2, 2)?;
    {
        let file = hdf5::File::with_options()
            .with_fapl(|p| p.file_locking(false))
            .open_rw(&path)?;
        file.delete_attr("frames")?;
    }
    let msg = Store::open(&path).unwrap_err().to_string();
    assert!(msg.contains("store.h5") && msg.contains("frames"), "{msg}");

    let err = Store::open(&dir.path().join("missing.h5")).unwrap_err();
    assert!(err.to_string().contains("missing.h5"), "{err}");
    Ok(())
}

// ---------------------------------------------------------------------------------
// Loader
// ---------------------------------------------------------------------------------

fn assert_send<T: Send>() {}

#[test]
fn loader_epochs_are_complete_deterministic_and_shuffled() -> anyhow::Result<()> {
    assert_send::<BatchLoader>();
    assert_send::<pstl::data::loader::EpochIter>();
    let dir = tempfile::tempdir()?;
    let (path, train, _) = small_store(dir.path(), 10, 3)?;
    let store = Store::open(&path)?;
    let len = store.meta().sample_len();
    let opts = LoaderOptions {
        batch_size: 4,
        seed: 7,
        ..LoaderOptions::default()
    };
    let loader = BatchLoader::new(&store, "train", opts.clone())?;
    assert!(loader.in_memory());
    assert_eq!(loader.num_batches(), 3);

    let collect = |l: &BatchLoader, e: u64| -> anyhow::Result<Vec<pstl::data::loader::Batch>> {
        Ok(l.epoch(e).collect::<Result<Vec<_>, _>>()?)
    };
    let e0 = collect(&loader, 0)?;
    assert_eq!(e0.iter().map(|b| b.len()).collect::<Vec<_>>(), [4, 4, 2]);
    let order: Vec<usize> = e0.iter().flat_map(|b| b.indices.clone()).collect();
    let mut sorted = order.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        (0..10).collect::<Vec<_>>(),
        "each index exactly once"
    );
    assert_ne!(order, sorted, "epoch 0 is not shuffled");
    for b in &e0 {
        assert_eq!(b.shape, [b.len(), 3, 5, 25, 2]);
        for (k, &i) in b.indices.iter().enumerate() {
            assert_eq!(b.x[k * len..(k + 1) * len], train.x[i * len..(i + 1) * len]);
            assert_eq!(b.y[k], train.y[i]);
        }
    }
    // Same seed and epoch: same batches, from a fresh loader, inline or from disk.
    let again = BatchLoader::new(&store, "train", opts.clone())?;
    assert_eq!(collect(&again, 0)?, e0);
    let inline = BatchLoader::new(
        &store,
        "train",
        LoaderOptions {
            prefetch: 0,
            ..opts.clone()
        },
    )?;
    assert_eq!(collect(&inline, 0)?, e0);
    let disk = BatchLoader::new(
        &store,
        "train",
        LoaderOptions {
            memory_budget_bytes: 0,
            ..opts.clone()
        },
    )?;
    assert!(!disk.in_memory());
    assert_eq!(collect(&disk, 0)?, e0);
    // Another epoch or seed: another order.
    let e1: Vec<usize> = collect(&loader, 1)?
        .iter()
        .flat_map(|b| b.indices.clone())
        .collect();
    assert_ne!(e1, order);
    let other = BatchLoader::new(
        &store,
        "train",
        LoaderOptions {
            seed: 8,
            ..opts.clone()
        },
    )?;
    let o0: Vec<usize> = collect(&other, 0)?
        .iter()
        .flat_map(|b| b.indices.clone())
        .collect();
    assert_ne!(o0, order);
    // No shuffle: file order. drop_last: full batches only.
    let plain = BatchLoader::new(
        &store,
        "train",
        LoaderOptions {
            shuffle: false,
            ..opts.clone()
        },
    )?;
    let p: Vec<usize> = collect(&plain, 3)?
        .iter()
        .flat_map(|b| b.indices.clone())
        .collect();
    assert_eq!(p, (0..10).collect::<Vec<_>>());
    let dropl = BatchLoader::new(
        &store,
        "train",
        LoaderOptions {
            drop_last: true,
            ..opts.clone()
        },
    )?;
    assert_eq!(collect(&dropl, 0)?.len(), 2);
    // Dropping an epoch early stops its prefetch thread (no hang).
    let mut it = loader.epoch(5);
    assert!(it.next().is_some());
    drop(it);
    // The trainer thread can consume an epoch made elsewhere.
    let it = loader.epoch(0);
    let n = std::thread::spawn(move || it.count())
        .join()
        .expect("thread");
    assert_eq!(n, 3);
    Ok(())
}

// ---------------------------------------------------------------------------------
// .npy and pickle
// ---------------------------------------------------------------------------------

#[test]
fn npy_round_trip_and_errors() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("a.npy");
    let data: Vec<f32> = (0..2 * 3 * 4).map(|i| i as f32 * -0.5).collect();
    write_npy_f32(&path, &data, &[2, 3, 4])?;
    let bytes = std::fs::read(&path)?;
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    assert_eq!((10 + header_len) % 64, 0, "header padded to 64 bytes");
    assert_eq!(read_npy_f32(&path)?, (data.clone(), vec![2, 3, 4]));
    write_npy_f32(&path, &[1.5], &[1])?;
    assert_eq!(read_npy_f32(&path)?, (vec![1.5], vec![1]));
    assert!(write_npy_f32(&path, &[1.0, 2.0], &[3]).is_err());
    // Truncated data.
    write_npy_f32(&path, &data, &[2, 3, 4])?;
    std::fs::write(&path, &bytes[..bytes.len() - 4])?;
    let err = read_npy_f32(&path).unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");
    std::fs::write(&path, b"not numpy")?;
    assert!(read_npy_f32(&path).is_err());
    Ok(())
}

#[test]
fn npy_files_written_by_numpy() -> anyhow::Result<()> {
    let Some(python) = venv_python() else {
        println!("SKIP numpy-written .npy files: no .venv/bin/python");
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let script = r#"
import sys, numpy as np
from numpy.lib import format as f
d = sys.argv[1]
a = (np.arange(24).reshape(2, 3, 4) * 0.1 - 1).astype(np.float32)
np.save(d + "/f4.npy", a)
np.save(d + "/f8.npy", a.astype(np.float64))
np.save(d + "/i8.npy", np.arange(-3, 5, dtype=np.int64))
np.save(d + "/i4.npy", np.arange(-3, 5, dtype=np.int32))
for v in (2, 3):
    with open(d + f"/v{v}.npy", "wb") as fh:
        f.write_array(fh, a, version=(v, 0))
np.save(d + "/fortran.npy", np.asfortranarray(a))
np.save(d + "/scalar.npy", np.float32(2.5))
"#;
    let ok = Command::new(&python)
        .arg("-c")
        .arg(script)
        .arg(dir.path())
        .status()?
        .success();
    assert!(ok, "python failed");
    let want: Vec<f32> = (0..24).map(|i| (f64::from(i) * 0.1 - 1.0) as f32).collect();
    let p = |n: &str| dir.path().join(n);
    for name in ["f4.npy", "v2.npy", "v3.npy"] {
        assert_eq!(
            read_npy_f32(&p(name))?,
            (want.clone(), vec![2, 3, 4]),
            "{name}"
        );
    }
    let (f8, shape) = read_npy_f32(&p("f8.npy"))?;
    assert_eq!(shape, vec![2, 3, 4]);
    assert!(f8.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-6));
    let ints: Vec<i64> = (-3..5).collect();
    assert_eq!(read_npy_i64(&p("i8.npy"))?, (ints.clone(), vec![8]));
    assert_eq!(read_npy_i64(&p("i4.npy"))?, (ints, vec![8]));
    assert!(read_npy_i64(&p("f4.npy")).is_err());
    let err = read_npy_f32(&p("fortran.npy")).unwrap_err();
    assert!(err.to_string().contains("fortran"), "{err}");
    assert_eq!(read_npy_f32(&p("scalar.npy"))?, (vec![2.5], vec![]));
    Ok(())
}

/// `(names, labels)` with labels as NumPy int64 scalars, as pickled by Python 3 /
/// NumPy 2 (protocols 2 and 5); names include non-ASCII text.
const PICKLE_NP_P2: &str = "80025d7100285814000000533030314330303150303031523030314130303171015814000000533030314330303250303031523030314130303271025805000000c3a9e288917103655d710428636e756d70792e5f636f72652e6d756c746961727261790a7363616c61720a7105636e756d70790a64747970650a71065802000000693871078988877108527109284b0358010000003c710a4e4e4e4affffffff4affffffff4b0074710b62635f636f646563730a656e636f64650a710c58080000000000000000000000710d58060000006c6174696e31710e86710f52711086711152711268056809680c580800000001000000000000007113680e86711452711586711652711768056809680c58080000003b000000000000007118680e86711952711a86711b52711c6586711d2e";
const PICKLE_NP_P5: &str = "800595d0000000000000005d94288c145330303143303031503030315230303141303031948c145330303143303032503030315230303141303032948c05c3a9e2889194655d94288c166e756d70792e5f636f72652e6d756c74696172726179948c067363616c61729493948c056e756d7079948c0564747970659493948c02693894898887945294284b038c013c944e4e4e4affffffff4affffffff4b007494624308000000000000000094869452946807680d4308010000000000000094869452946807680d43083b0000000000000094869452946586942e";

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn label_pickles_embedded() -> anyhow::Result<()> {
    let names = vec![
        "S001C001P001R001A001".to_string(),
        "S001C002P001R001A002".to_string(),
        "é∑".to_string(),
    ];
    for bytes in [PICKLE_NP_P2, PICKLE_NP_P5].map(hex) {
        let (n, y) = parse_label_pickle(&bytes, Path::new("label.pkl"))?;
        assert_eq!(n, names);
        assert_eq!(y, [0, 1, 59]);
    }
    // A hand-made protocol-2 pickle of plain ints, and damaged ones.
    let small = pickle_p2(&["a", "b"], &[3, -70000]);
    assert_eq!(
        parse_label_pickle(&small, Path::new("x.pkl"))?,
        (vec!["a".into(), "b".into()], vec![3, -70000])
    );
    let err = parse_label_pickle(&small[..small.len() - 3], Path::new("cut.pkl")).unwrap_err();
    assert!(err.to_string().contains("cut.pkl"), "{err}");
    let mismatched = pickle_p2(&["a"], &[1, 2]);
    assert!(parse_label_pickle(&mismatched, Path::new("m.pkl")).is_err());
    Ok(())
}

/// Protocol 2: `(["a", ...], [1, ...])` with BINUNICODE strings and BININT labels.
fn pickle_p2(names: &[&str], labels: &[i32]) -> Vec<u8> {
    let mut p = vec![0x80, 2, b']'];
    for n in names {
        p.push(b'X');
        p.extend((n.len() as u32).to_le_bytes());
        p.extend(n.as_bytes());
        p.push(b'a');
    }
    p.push(b']');
    for l in labels {
        p.push(b'J');
        p.extend(l.to_le_bytes());
        p.push(b'a');
    }
    p.extend([0x86, b'.']);
    p
}

#[test]
fn label_pickles_from_python() -> anyhow::Result<()> {
    let Some(python) = venv_python() else {
        println!("SKIP label pickles from Python: no .venv/bin/python");
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let script = r#"
import sys, pickle, numpy as np
d = sys.argv[1]
names = ["S%03dC001P001R001A%03d" % (i, i % 60 + 1) for i in range(1, 300)] + ["naïve"]
labels = [i % 60 for i in range(1, 300)] + [2 ** 40]
for p in (0, 1, 2, 3, 4, 5):
    with open(f"{d}/py{p}.pkl", "wb") as fh:
        pickle.dump((names, labels), fh, protocol=p)
    with open(f"{d}/np{p}.pkl", "wb") as fh:
        pickle.dump((names, list(np.array(labels, dtype=np.int64))), fh, protocol=p)
    with open(f"{d}/arr{p}.pkl", "wb") as fh:
        pickle.dump((names, np.array(labels, dtype=np.int64)), fh, protocol=p)
    with open(f"{d}/i32_{p}.pkl", "wb") as fh:
        pickle.dump([np.array(names), list(np.array(labels[:-1] + [7], dtype=np.int32))], fh, protocol=p)
"#;
    let ok = Command::new(&python)
        .arg("-c")
        .arg(script)
        .arg(dir.path())
        .status()?
        .success();
    assert!(ok, "python failed");
    let mut names: Vec<String> = (1..300)
        .map(|i| format!("S{i:03}C001P001R001A{:03}", i % 60 + 1))
        .collect();
    names.push("naïve".into());
    let mut labels: Vec<i64> = (1..300).map(|i| i % 60).collect();
    labels.push(1 << 40);
    for p in 0..=5 {
        for kind in ["py", "np", "arr"] {
            let path = dir.path().join(format!("{kind}{p}.pkl"));
            let got = read_label_pickle(&path)
                .map_err(|e| anyhow::anyhow!("{kind} protocol {p}: {e}"))?;
            assert_eq!(got, (names.clone(), labels.clone()), "{kind} protocol {p}");
        }
        let path = dir.path().join(format!("i32_{p}.pkl"));
        let (n, y) =
            read_label_pickle(&path).map_err(|e| anyhow::anyhow!("i32 protocol {p}: {e}"))?;
        assert_eq!(n, names, "numpy str array, protocol {p}");
        assert_eq!(y[..299], labels[..299]);
        assert_eq!(y[299], 7);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------
// prepare
// ---------------------------------------------------------------------------------

/// 40 files: setups 1, 2 (NTU-60) x cameras 1-3 x performers 1 (xsub train), 3 (test)
/// x actions 1, 2, 60, plus 4 files of setup 18 (NTU-120 only).
fn make_ntu_dir(dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut names = Vec::new();
    for s in [1, 2] {
        for c in [1, 2, 3] {
            for p in [1, 3] {
                for a in [1, 2, 60] {
                    names.push(format!("S{s:03}C{c:03}P{p:03}R001A{a:03}"));
                }
            }
        }
    }
    for (c, p, a) in [(1, 1, 61), (2, 3, 120), (3, 45, 100), (1, 46, 1)] {
        names.push(format!("S018C{c:03}P{p:03}R002A{a:03}"));
    }
    for (k, name) in names.iter().enumerate() {
        let frames = 30 + k % 40;
        let seq = make_seq(frames, frames, k % 3 == 0, k as u32);
        let text = write_skeleton_text(&seq, if k % 3 == 0 { 2 } else { 1 });
        std::fs::write(dir.join(format!("{name}.skeleton")), text)?;
    }
    std::fs::write(dir.join("README.txt"), "not a skeleton")?;
    Ok(names)
}

fn ntu_opts(raw: &Path, out: &Path, dataset: &str, benchmark: &str) -> PrepareNtuOpts {
    PrepareNtuOpts {
        raw: raw.to_path_buf(),
        out: out.to_path_buf(),
        benchmark: benchmark.into(),
        dataset: dataset.into(),
        ignore: None,
        frames: 50,
        skip_bad: false,
        progress: false,
    }
}

#[test]
fn prepare_ntu_splits_and_labels() -> anyhow::Result<()> {
    let raw = tempfile::tempdir()?;
    let out = tempfile::tempdir()?;
    let names = make_ntu_dir(raw.path())?;
    for (dataset, bench, train, test, ignored) in [
        ("ntu60", "xsub", 18, 18, 4),
        ("ntu60", "xview", 24, 12, 4),
        ("ntu120", "xsub", 21, 19, 0),
        ("ntu120", "xset", 22, 18, 0),
    ] {
        let path = out.path().join(format!("{dataset}_{bench}.h5"));
        let report = prepare_ntu(&ntu_opts(raw.path(), &path, dataset, bench))?;
        assert_eq!(
            (report.train, report.test, report.ignored),
            (train, test, ignored),
            "{dataset} {bench}"
        );
        assert_eq!(report.parsed, train + test);
        assert!(report.skipped.is_empty());
        let store = Store::open(&path)?;
        let meta = store.meta();
        assert_eq!(
            (meta.dataset.as_str(), meta.benchmark.as_str()),
            (dataset, bench)
        );
        assert_eq!(meta.num_classes, if dataset == "ntu60" { 60 } else { 120 });
        assert_eq!((meta.frames, meta.persons), (50, 2));
        let ds: NtuDataset = dataset.parse()?;
        let bm: NtuBenchmark = bench.parse()?;
        for split in ["train", "test"] {
            let data = store.read_split(split)?;
            let mut sorted = data.names.clone();
            sorted.sort();
            assert_eq!(data.names, sorted, "names sorted");
            for (k, name) in data.names.iter().enumerate() {
                let n = NtuName::parse(name)?;
                assert_eq!(data.y[k], i64::from(n.action) - 1);
                assert_eq!(n.is_train(ds, bm), split == "train", "{name} in {split}");
                assert!(ds.contains(&n));
            }
        }
    }
    // Sample content: the normalised parse of its file.
    let store = Store::open(&out.path().join("ntu60_xsub.h5"))?;
    let data = store.read_split("test")?;
    let name = &data.names[3];
    let raw_seq = parse_skeleton_file(&raw.path().join(format!("{name}.skeleton")))?;
    let len = store.meta().sample_len();
    assert_eq!(data.x[3 * len..4 * len], frame50(&raw_seq, 50)[..]);
    assert!(names.contains(name));

    // Ignore list: one name with, one without the extension; comments and blanks.
    let ignore = raw.path().join("ignore.txt");
    std::fs::write(
        &ignore,
        "# missing skeletons\nS001C001P001R001A001.skeleton\n\nS001C001P003R001A002\n",
    )?;
    let path = out.path().join("ignored.h5");
    let report = prepare_ntu(&PrepareNtuOpts {
        ignore: Some(ignore),
        ..ntu_opts(raw.path(), &path, "ntu60", "xsub")
    })?;
    assert_eq!((report.train, report.test, report.ignored), (17, 17, 6));

    // Bad arguments, and a folder without skeletons.
    let err = prepare_ntu(&ntu_opts(out.path(), &path, "ntu60", "xsub")).unwrap_err();
    assert!(
        err.to_string().contains("no ntu60 .skeleton files"),
        "{err}"
    );
    assert!(prepare_ntu(&ntu_opts(raw.path(), &path, "ntu60", "xset")).is_err());
    assert!(prepare_ntu(&ntu_opts(raw.path(), &path, "ntu90", "xsub")).is_err());
    Ok(())
}

#[test]
fn prepare_ntu_bad_files() -> anyhow::Result<()> {
    let raw = tempfile::tempdir()?;
    let out = tempfile::tempdir()?;
    make_ntu_dir(raw.path())?;
    let bad = raw.path().join("S002C002P003R001A002.skeleton");
    let text = std::fs::read_to_string(&bad)?;
    std::fs::write(&bad, &text[..text.len() / 2])?;
    let path = out.path().join("s.h5");

    let err = prepare_ntu(&ntu_opts(raw.path(), &path, "ntu60", "xsub")).unwrap_err();
    assert!(
        err.to_string().contains("S002C002P003R001A002.skeleton"),
        "{err}"
    );
    assert!(err.line().is_some(), "{err}");
    assert!(!path.exists(), "a failed prepare left {path:?}");
    assert_eq!(
        std::fs::read_dir(out.path())?.count(),
        0,
        "temporary file left behind"
    );

    let report = prepare_ntu(&PrepareNtuOpts {
        skip_bad: true,
        ..ntu_opts(raw.path(), &path, "ntu60", "xsub")
    })?;
    assert_eq!((report.train, report.test), (18, 17));
    assert_eq!(report.skipped.len(), 1);
    assert_eq!(report.skipped[0].0, "S002C002P003R001A002");
    assert!(report.skipped[0].1.contains("truncated") || report.skipped[0].1.contains("fields"));
    assert_eq!(report.files, 36);
    let names: HashSet<String> = Store::open(&path)?
        .read_split("test")?
        .names
        .into_iter()
        .collect();
    assert!(!names.contains("S002C002P003R001A002"));

    // A badly named .skeleton file: an error, or skipped.
    std::fs::write(raw.path().join("junk.skeleton"), "1\n0\n")?;
    let err = prepare_ntu(&ntu_opts(raw.path(), &path, "ntu60", "xsub")).unwrap_err();
    assert!(err.to_string().contains("junk.skeleton"), "{err}");
    let report = prepare_ntu(&PrepareNtuOpts {
        skip_bad: true,
        ..ntu_opts(raw.path(), &path, "ntu60", "xsub")
    })?;
    assert_eq!(report.skipped.len(), 2);
    Ok(())
}

/// PKU-MMD skeleton text: one line of 150 numbers per frame.
fn pku_text(seq: &RawSeq) -> String {
    let mut s = String::new();
    for t in 0..seq.frames {
        let mut row = Vec::with_capacity(150);
        for m in 0..2 {
            for v in 0..V {
                for c in 0..3 {
                    row.push(at(seq, c, t, v, m).to_string());
                }
            }
        }
        s += &row.join(" ");
        s.push('\n');
    }
    s
}

#[test]
fn pku_parsers() -> anyhow::Result<()> {
    let seq = make_seq(20, 20, true, 9);
    let back = parse_pku_skeleton_bytes(pku_text(&seq).as_bytes(), Path::new("0002-L.txt"))?;
    assert_eq!(back, seq);
    let bad = "1 2 3\n";
    let err = parse_pku_skeleton_bytes(bad.as_bytes(), Path::new("0002-L.txt")).unwrap_err();
    assert_eq!(err.line(), Some(1));

    let labels = parse_pku_labels(b"12,5,10,1\n3,1,20,2\n\n", Path::new("l.txt"))?;
    assert_eq!(labels.len(), 2);
    assert_eq!(
        (labels[0].label(), labels[0].start, labels[0].end),
        (11, 5, 10)
    );
    let err = parse_pku_labels(b"1,2,3,1\n52,1,2,1\n", Path::new("l.txt")).unwrap_err();
    assert_eq!(err.line(), Some(2));

    let cut = cut_instance(&seq, 5, 10).expect("instance");
    assert_eq!(cut.frames, 6);
    assert_eq!(at(&cut, 1, 0, 3, 1), at(&seq, 1, 4, 3, 1));
    assert_eq!(at(&cut, 2, 5, 24, 0), at(&seq, 2, 9, 24, 0));
    assert_eq!(cut_instance(&seq, 15, 99).map(|s| s.frames), Some(6));
    assert!(cut_instance(&seq, 30, 40).is_none());

    let split = parse_pku_split(
        b"Training videos: \n0002-L, 0002-M,0002-R,\n0003-L\nValidataion videos: 0001-L, 0001-M\n",
        Path::new("cross-subject.txt"),
    )?;
    assert_eq!(split.train, ["0002-L", "0002-M", "0002-R", "0003-L"]);
    assert_eq!(split.test, ["0001-L", "0001-M"]);
    let split = parse_pku_split(
        b"Training videos: a, b\nTesting videos: c\n",
        Path::new("s.txt"),
    )?;
    assert_eq!(split.test, ["c"]);
    assert!(parse_pku_split(b"a, b\n", Path::new("s.txt")).is_err());
    Ok(())
}

#[test]
fn prepare_pku_instances() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (skel, lab) = (dir.path().join("skeleton"), dir.path().join("label"));
    std::fs::create_dir_all(&skel)?;
    std::fs::create_dir_all(&lab)?;
    let videos = [
        ("0002-L", "1,1,30,1\n7,31,60,1\n51,50,80,1\n"),
        ("0003-M", "2,10,40,1\n"),
        ("0001-R", "5,1,10,1\n20,11,79,1\n"),
    ];
    for (k, (id, labels)) in videos.iter().enumerate() {
        std::fs::write(
            skel.join(format!("{id}.txt")),
            pku_text(&make_seq(80, 80, k == 0, k as u32)),
        )?;
        std::fs::write(lab.join(format!("{id}.txt")), labels)?;
    }
    let split = dir.path().join("cross-subject.txt");
    std::fs::write(
        &split,
        "Training videos: 0003-M, 0002-L\nValidation videos: 0001-R\n",
    )?;
    let out = dir.path().join("pku.h5");
    let opts = PreparePkuOpts {
        skeletons: skel.clone(),
        labels: lab.clone(),
        split: split.clone(),
        out: out.clone(),
        part: "1".into(),
        frames: 50,
        skip_bad: false,
        progress: false,
    };
    let report = prepare_pku(&opts)?;
    assert_eq!((report.train, report.test, report.files), (4, 2, 3));
    let store = Store::open(&out)?;
    assert_eq!(
        (
            store.meta().dataset.as_str(),
            store.meta().benchmark.as_str(),
            store.meta().num_classes
        ),
        ("pku1", "xsub", 51)
    );
    let train = store.read_split("train")?;
    assert_eq!(
        train.names,
        ["0002-L_001", "0002-L_002", "0002-L_003", "0003-M_001"]
    );
    assert_eq!(train.y, [0, 6, 50, 1]);
    let seq = parse_pku_skeleton_bytes(&std::fs::read(skel.join("0002-L.txt"))?, Path::new("x"))?;
    let want = frame50(&cut_instance(&seq, 31, 60).expect("cut"), 50);
    let len = store.meta().sample_len();
    assert_eq!(train.x[len..2 * len], want[..]);
    assert_eq!(store.read_split("test")?.y, [4, 19]);

    // A missing video: an error naming it, or skipped.
    std::fs::write(
        &split,
        "Training videos: 0003-M, 0002-L, 0009-L\nValidation videos: 0001-R\n",
    )?;
    let err = prepare_pku(&opts).unwrap_err();
    assert!(err.to_string().contains("0009-L"), "{err}");
    let report = prepare_pku(&PreparePkuOpts {
        skip_bad: true,
        ..opts
    })?;
    assert_eq!((report.train, report.test, report.skipped.len()), (4, 2, 1));
    Ok(())
}

#[test]
fn prepare_npy_imports_aimclr_arrays() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let p = |n: &str| dir.path().join(n);
    let len = 3 * 50 * 25 * 2;
    let train: Vec<f32> = (0..3 * len).map(|i| (i % 1000) as f32 * 0.001).collect();
    let test: Vec<f32> = (0..2 * len).map(|i| -((i % 777) as f32)).collect();
    write_npy_f32(&p("train_position.npy"), &train, &[3, 3, 50, 25, 2])?;
    write_npy_f32(&p("val_position.npy"), &test, &[2, 3, 50, 25, 2])?;
    std::fs::write(
        p("train_label.pkl"),
        pickle_p2(&["a", "b", "c"], &[0, 59, 3]),
    )?;
    std::fs::write(p("val_label.pkl"), pickle_p2(&["d", "e"], &[1, 2]))?;
    let opts = PrepareNpyOpts {
        train_data: p("train_position.npy"),
        train_labels: p("train_label.pkl"),
        test_data: p("val_position.npy"),
        test_labels: p("val_label.pkl"),
        out: p("ntu.h5"),
        dataset: "ntu60".into(),
        benchmark: "xsub".into(),
    };
    let report = prepare_npy(&opts)?;
    assert_eq!((report.train, report.test), (3, 2));
    let store = Store::open(&p("ntu.h5"))?;
    assert_eq!(store.meta().num_classes, 60);
    let tr = store.read_split("train")?;
    assert_eq!(
        (tr.x, tr.y, tr.names),
        (
            train,
            vec![0, 59, 3],
            vec!["a".into(), "b".into(), "c".into()]
        )
    );
    assert_eq!(store.read_split("test")?.x, test);

    // Labels that do not match the array, or fall outside the classes.
    std::fs::write(p("val_label.pkl"), pickle_p2(&["d"], &[1]))?;
    assert!(prepare_npy(&opts).is_err());
    std::fs::write(p("val_label.pkl"), pickle_p2(&["d", "e"], &[1, 60]))?;
    assert!(prepare_npy(&opts).is_err());
    // The store of the successful run is untouched by the failed ones.
    assert_eq!(Store::open(&p("ntu.h5"))?.len("test")?, 2);
    assert_eq!(
        std::fs::read_dir(dir.path())?.count(),
        5,
        "temporary file left behind"
    );
    Ok(())
}
