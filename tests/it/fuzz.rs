//! Fuzzing of the readers of user files (`.skeleton`, PKU-MMD skeleton/label/split,
//! `.npy`, label pickle, `torch.save`) through their public entry functions, with
//! proptest on stable Rust: inputs are the seed corpus in `tests/fuzz-corpus/` under
//! random edits (byte flips, inserts, deletes, duplicated runs, truncation, tokens such
//! as `1e39`, `nan` or a huge count), or random bytes. A reader must answer `Ok` with a
//! consistent, finite value or `Err`; a panic or a hang fails.
//!
//! `PSTL_FUZZ_CASES` (default 256 per reader) sets the cases of a run;
//! `PSTL_FUZZ_SECONDS` instead runs each reader for that long (`make fuzz`).

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn corpus(names: &[&str]) -> Vec<Vec<u8>> {
    let dir = crate::common::root().join("tests/fuzz-corpus");
    names
        .iter()
        .map(|n| std::fs::read(dir.join(n)).unwrap())
        .collect()
}

/// Tokens spliced into inputs: numbers that overflow, non-finite words, separators,
/// binary extremes.
const TOKENS: &[&[u8]] = &[
    b"1e39",
    b"-1e400",
    b"nan",
    b"inf",
    b"99999999999999999999",
    b"4294967296",
    b"0",
    b"-1",
    b" ",
    b"\n",
    b"\r\n",
    b",",
    b":",
    b"\x00",
    b"\xff\xff\xff\xff",
    b"\xff\xff\xff\x7f",
    b"\x80\x00\x00\x00",
    b"(",
    b")",
];

/// One edit: kind, position, byte, length.
type Edit = (u8, usize, u8, usize);

fn apply(seed: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for &(kind, pos, byte, len) in edits {
        let at = if v.is_empty() { 0 } else { pos % (v.len() + 1) };
        let end = (at + len).min(v.len());
        match kind % 7 {
            0 if at < v.len() => v[at] = byte,
            1 => v.insert(at, byte),
            2 => drop(v.drain(at..end)),
            3 => {
                let run: Vec<u8> = v[at..end].to_vec();
                v.splice(at..at, run);
            }
            4 => {
                let t = TOKENS[usize::from(byte) % TOKENS.len()];
                v.splice(at..at, t.iter().copied());
            }
            5 => {
                let t = TOKENS[usize::from(byte) % TOKENS.len()];
                v.splice(at..end, t.iter().copied());
            }
            6 => v.truncate(at),
            _ => {}
        }
    }
    v
}

/// Mutated corpus entries, and now and then random bytes.
fn inputs(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let n = seeds.len();
    let edits = prop::collection::vec((any::<u8>(), any::<usize>(), any::<u8>(), 0usize..48), 1..6);
    prop_oneof![
        9 => (0..n, edits).prop_map(move |(k, e)| apply(&seeds[k], &e)),
        1 => prop::collection::vec(any::<u8>(), 0..512),
    ]
}

fn env_num(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Runs `test` on inputs from `strategy`: `PSTL_FUZZ_CASES` cases, or for
/// `PSTL_FUZZ_SECONDS`; deterministic seeds per chunk. Returns the cases run.
fn fuzz<S: Strategy>(
    name: &str,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) -> u64 {
    let seconds = env_num("PSTL_FUZZ_SECONDS");
    let cases = env_num("PSTL_FUZZ_CASES").unwrap_or(256);
    let deadline = seconds.map(|s| Instant::now() + Duration::from_secs(s));
    let chunk = 256u32;
    let (mut done, mut k) = (0u64, 0u64);
    loop {
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&k.to_le_bytes());
        seed[8..8 + name.len().min(24)].copy_from_slice(&name.as_bytes()[..name.len().min(24)]);
        let config = Config {
            cases: chunk,
            failure_persistence: None,
            ..Config::default()
        };
        let mut runner =
            TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &seed));
        if let Err(e) = runner.run(&strategy, &test) {
            panic!("fuzz {name}: chunk {k}: {e}");
        }
        done += u64::from(chunk);
        k += 1;
        let more = match deadline {
            Some(d) => Instant::now() < d,
            None => done < cases,
        };
        if !more {
            break;
        }
    }
    eprintln!("fuzz {name}: {done} cases, no crash");
    done
}

fn finite(x: &[f32]) -> Result<(), TestCaseError> {
    prop_assert!(x.iter().all(|v| v.is_finite()), "non-finite value accepted");
    Ok(())
}

/// A file-based reader gets its input through a temporary file.
fn through_file(bytes: &[u8], ext: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("input.{ext}"));
    std::fs::write(&path, bytes).unwrap();
    (dir, path)
}

#[test]
fn fuzz_ntu_skeleton() {
    let seeds = corpus(&["ntu_small.skeleton"]);
    fuzz("ntu .skeleton", inputs(seeds), |b| {
        if let Ok(seq) = pstl::data::parse_skeleton_bytes(&b, Path::new("f.skeleton")) {
            prop_assert_eq!(seq.data.len(), 3 * seq.frames * 25 * 2);
            finite(&seq.data)?;
        }
        Ok(())
    });
}

#[test]
fn fuzz_pku() {
    use pstl::data::pku;
    let seeds = corpus(&["pku_skeleton.txt", "pku_labels.txt", "pku_split.txt"]);
    fuzz("pku-mmd", inputs(seeds), |b| {
        let p = Path::new("f.txt");
        if let Ok(seq) = pku::parse_pku_skeleton_bytes(&b, p) {
            prop_assert_eq!(seq.data.len(), 3 * seq.frames * 25 * 2);
            finite(&seq.data)?;
        }
        if let Ok(actions) = pku::parse_pku_labels(&b, p) {
            for a in actions {
                prop_assert!(a.end >= a.start && (1..=51).contains(&a.class));
                prop_assert!(a.confidence.is_finite());
            }
        }
        let _ = pku::parse_pku_split(&b, p);
        Ok(())
    });
}

#[test]
fn fuzz_npy() {
    let seeds = corpus(&["x_f4.npy", "y_i8.npy", "x_f8.npy"]);
    fuzz("npy", inputs(seeds), |b| {
        let (_dir, path) = through_file(&b, "npy");
        if let Ok((data, shape)) = pstl::data::read_npy_f32(&path) {
            prop_assert_eq!(data.len(), shape.iter().product::<usize>());
        }
        if let Ok((data, shape)) = pstl::data::read_npy_i64(&path) {
            prop_assert_eq!(data.len(), shape.iter().product::<usize>());
        }
        Ok(())
    });
}

#[test]
fn fuzz_label_pickle() {
    let seeds = corpus(&[
        "labels_p0.pkl",
        "labels_p2.pkl",
        "labels_p4.pkl",
        "labels_p5.pkl",
        "labels_numpy.pkl",
    ]);
    fuzz("label pickle", inputs(seeds), |b| {
        if let Ok((names, labels)) = pstl::data::npy::parse_label_pickle(&b, Path::new("f.pkl")) {
            prop_assert_eq!(names.len(), labels.len());
        }
        Ok(())
    });
}

#[test]
fn fuzz_torch_save() {
    let seeds = corpus(&["state_dict.pt", "state_dict_p2.pt"]);
    fuzz("torch.save", inputs(seeds), |b| {
        let (_dir, path) = through_file(&b, "pt");
        if let Ok(entries) = pstl::torchpt::read_state_dict(&path) {
            for (_, t) in entries {
                let n = t.numel();
                prop_assert!(n.is_some());
                prop_assert_eq!(Some(t.data.len()), n.map(|n| n * t.dtype.size()));
            }
        }
        Ok(())
    });
}
