//! Integrity of what pstl writes: every checkpoint, encoder and export carries tensor
//! digests and every load verifies them (a flipped exponent bit is named: file and
//! tensor); a run keeps its last `pretrain.keep_checkpoints` checkpoints and resumes
//! from the newest that verifies, at the weights of an uninterrupted run; `pstl verify`;
//! TorchScript exports carry digests of their tensor records (appended to the archive
//! libtorch wrote, which stays byte for byte).

use crate::common::{max_abs, pstl_bin, tiny_overrides, tiny_store};
use pstl::rundir::read_metrics;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn pretrain(store: &Path, dir: &Path, name: &str, extra: &[&str]) -> Output {
    let mut cmd = Command::new(pstl_bin());
    cmd.args(["pretrain", "--device", "cpu", "--threads", "1"]);
    for ov in tiny_overrides(store, dir, name) {
        cmd.args(["--set", &ov]);
    }
    cmd.args(extra).output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(o: Output) -> String {
    let t = text(&o);
    assert!(o.status.success(), "failed:\n{t}");
    t
}

/// Byte offset (in the file) of the first element of tensor `name` of a safetensors file.
fn tensor_offset(path: &Path, name: &str) -> usize {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let start = header[name]["data_offsets"][0].as_u64().unwrap() as usize;
    8 + n + start
}

/// Flip bit 29 of the first float32 of `name` (an exponent bit: the value is scaled by
/// 2^64 either way, and stays finite), as a failing disk would.
pub fn flip_exponent_bit(path: &Path, name: &str) {
    let at = tensor_offset(path, name);
    let mut bytes = std::fs::read(path).unwrap();
    let before = f32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    bytes[at + 3] ^= 0x20;
    let after = f32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    assert!(after.is_finite() && after != before, "{before} -> {after}");
    std::fs::write(path, bytes).unwrap();
}

fn kept(run: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(run)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("checkpoint"))
        .collect();
    v.sort();
    v
}

fn step_of(path: &Path) -> u64 {
    let (_, meta) = pstl::checkpoint::read_safetensors(path).unwrap();
    meta["step"].parse().unwrap()
}

const TENSOR: &str = "encoder.st_gcn_networks.9.tcn.2.weight";

#[test]
fn a_flipped_bit_is_named_and_resume_takes_the_newest_checkpoint_that_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let store = tiny_store(dir.path(), 4, 16, 4);
    ok(pretrain(&store, dir.path(), "straight", &[]));
    let run = dir.path().join("flipped");
    ok(pretrain(
        &store,
        dir.path(),
        "flipped",
        &["--stop-after", "2"],
    ));
    // keep_checkpoints = 2 (default): epochs 2 and 1.
    assert_eq!(
        kept(&run),
        ["checkpoint.1.safetensors", "checkpoint.safetensors"]
    );
    let newest = run.join("checkpoint.safetensors");
    let older = run.join("checkpoint.1.safetensors");
    assert!(step_of(&newest) > step_of(&older));
    flip_exponent_bit(&newest, TENSOR);
    let err = format!(
        "{:#}",
        pstl::checkpoint::read_safetensors(&newest).unwrap_err()
    );
    assert!(
        err.contains(&newest.display().to_string()) && err.contains(TENSOR),
        "{err}"
    );
    let err = pstl::checkpoint::read_safetensors(&newest).unwrap_err();
    assert!(err
        .downcast_ref::<pstl::checkpoint::digest::IntegrityError>()
        .is_some());

    let t = ok(pretrain(&store, dir.path(), "flipped", &[]));
    assert!(t.contains("skipped") && t.contains(TENSOR), "{t}");
    assert!(
        t.contains(&format!("resumed from {}", older.display())),
        "{t}"
    );
    assert!(run.join("checkpoint.safetensors.bad").exists());
    // Cut back to the older checkpoint: every step logged exactly once.
    let steps: Vec<u64> = read_metrics(&run.join("metrics.csv"))
        .unwrap()
        .iter()
        .map(|r| r.step)
        .collect();
    let straight: Vec<u64> = read_metrics(&dir.path().join("straight/metrics.csv"))
        .unwrap()
        .iter()
        .map(|r| r.step)
        .collect();
    assert_eq!(steps, straight);
    let enc = |r: &str| {
        pstl::checkpoint::read_safetensors(&dir.path().join(r).join("encoder.safetensors"))
            .unwrap()
            .0
    };
    let (a, b) = (enc("straight"), enc("flipped"));
    assert_eq!(a.len(), b.len());
    for (k, v) in &a {
        if v.kind() == tch::Kind::Float {
            let d = max_abs(v, &b[k]);
            assert!(d < 1e-5, "{k} differs after resume by {d}");
        }
    }
}

const KEEP3: &str = "--set=pretrain.keep_checkpoints=3";
const EPOCHS4: &str = "pretrain.epochs=4";

#[test]
fn keep_checkpoints_keeps_that_many_and_none_verifying_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = tiny_store(dir.path(), 4, 16, 4);
    let run = dir.path().join("three");
    ok(pretrain(
        &store,
        dir.path(),
        "three",
        &[KEEP3, "--set", EPOCHS4, "--stop-after", "2"],
    ));
    assert_eq!(
        kept(&run),
        ["checkpoint.1.safetensors", "checkpoint.safetensors"]
    );
    ok(pretrain(
        &store,
        dir.path(),
        "three",
        &[KEEP3, "--set", EPOCHS4, "--stop-after", "1"],
    ));
    let files: Vec<PathBuf> = (0..3)
        .map(|i| match i {
            0 => run.join("checkpoint.safetensors"),
            i => run.join(format!("checkpoint.{i}.safetensors")),
        })
        .collect();
    let steps: Vec<u64> = files.iter().map(|f| step_of(f)).collect();
    assert!(steps[0] > steps[1] && steps[1] > steps[2], "{steps:?}");
    // Every kept checkpoint corrupt: an error naming each, nothing trained.
    for f in &files {
        flip_exponent_bit(f, TENSOR);
    }
    let out = pretrain(&store, dir.path(), "three", &[KEEP3, "--set", EPOCHS4]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains("no checkpoint of") && t.contains("3 tried"),
        "{t}"
    );
    for f in &files {
        assert!(t.contains(&f.display().to_string()), "{t}");
    }
    assert!(!t.contains("panicked"), "{t}");
}

/// Offset of the data of the largest tensor record of a `.pt` archive.
fn largest_record(pt: &Path) -> usize {
    let mut zip = zip::ZipArchive::new(std::fs::File::open(pt).unwrap()).unwrap();
    let (mut best, mut at) = (0, 0);
    for i in 0..zip.len() {
        let f = zip.by_index(i).unwrap();
        if f.name().contains("/data/") && f.size() > best {
            (best, at) = (f.size(), f.data_start() as usize);
        }
    }
    at
}

fn pstl(args: &[&str], sets: &[String]) -> Output {
    let mut cmd = Command::new(pstl_bin());
    cmd.args(args);
    for ov in sets {
        cmd.args(["--set", ov]);
    }
    cmd.output().unwrap()
}

#[test]
fn verify_checks_stores_checkpoints_and_exports_and_names_each_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = tiny_store(dir.path(), 4, 8, 2);
    let run = dir.path().join("v");
    ok(pretrain(&store, dir.path(), "v", &["--stop-after", "1"]));
    let sets = tiny_overrides(&store, dir.path(), "v");
    let ckpt = run.join("checkpoint.safetensors");
    let (st, pt) = (
        dir.path().join("enc.safetensors"),
        dir.path().join("enc.pt"),
    );
    ok(pstl(
        &[
            "export",
            "--checkpoint",
            ckpt.to_str().unwrap(),
            "--safetensors",
            st.to_str().unwrap(),
            "--pt",
            pt.to_str().unwrap(),
        ],
        &sets,
    ));
    let official = crate::common::root().join("tests/fuzz-corpus/state_dict.pt");
    let good = [&store, &ckpt, &st, &pt, &official];
    let args: Vec<&str> = std::iter::once("verify")
        .chain(good.iter().map(|p| p.to_str().unwrap()))
        .collect();
    let t = ok(pstl(&args, &[]));
    assert_eq!(
        t.lines().filter(|l| l.starts_with("OK   ")).count(),
        5,
        "{t}"
    );
    assert!(t.contains("every value read and finite"), "{t}");
    assert!(
        t.contains("pstl checkpoint at epoch 1") && t.contains("match its stored config"),
        "{t}"
    );
    assert!(t.contains("no digests"), "{t}");

    // A flipped bit in a checkpoint and in a .pt export; a NaN written with its digest;
    // a missing file. Each its own FAIL line, the good ones still OK.
    let bad_ckpt = dir.path().join("bad.safetensors");
    std::fs::copy(&ckpt, &bad_ckpt).unwrap();
    flip_exponent_bit(&bad_ckpt, TENSOR);
    let bad_pt = dir.path().join("bad.pt");
    let mut bytes = std::fs::read(&pt).unwrap();
    let at = largest_record(&pt) + 3;
    bytes[at] ^= 0x20;
    std::fs::write(&bad_pt, bytes).unwrap();
    let nan = dir.path().join("nan.safetensors");
    let t = tch::Tensor::from_slice(&[1.0f32, f32::NAN, 3.0]);
    pstl::checkpoint::write_safetensors(&nan, &[("w".into(), t)], &Default::default()).unwrap();
    let missing = dir.path().join("missing.safetensors");
    let out = pstl(
        &[
            "verify",
            store.to_str().unwrap(),
            bad_ckpt.to_str().unwrap(),
            bad_pt.to_str().unwrap(),
            nan.to_str().unwrap(),
            missing.to_str().unwrap(),
        ],
        &[],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    let line = |p: &Path| {
        t.lines()
            .find(|l| l.contains(&p.display().to_string()))
            .unwrap_or_default()
            .to_string()
    };
    assert!(line(&store).starts_with("OK"), "{t}");
    assert!(
        line(&bad_ckpt).starts_with("FAIL") && line(&bad_ckpt).contains(TENSOR),
        "{t}"
    );
    assert!(line(&bad_pt).starts_with("FAIL"), "{t}");
    assert!(
        line(&nan).starts_with("FAIL") && line(&nan).contains("tensor `w` holds a non-finite"),
        "{t}"
    );
    assert!(line(&missing).starts_with("FAIL"), "{t}");
    assert!(t.contains("4 of 5 file(s) failed verification"), "{t}");
    assert!(!t.contains("panicked"), "{t}");
}

#[test]
fn a_flipped_bit_in_a_store_is_named_by_store_split_and_sample() {
    let dir = tempfile::tempdir().unwrap();
    let store = tiny_store(dir.path(), 4, 8, 2);
    // The stored bytes of train sample 3 (one chunk), from HDF5's own index.
    let out = Command::new(crate::common::python())
        .args([
            "-c",
            "import h5py, sys; d = h5py.File(sys.argv[1], 'r')['train/x']; \
             assert d.fletcher32, 'no fletcher32'; c = d.id.get_chunk_info(3); \
             print(c.byte_offset, c.size)",
            store.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let v: Vec<usize> = t.split_whitespace().map(|s| s.parse().unwrap()).collect();
    let mut bytes = std::fs::read(&store).unwrap();
    bytes[v[0] + v[1] / 2] ^= 0x04;
    std::fs::write(&store, bytes).unwrap();
    let out = pstl(&["verify", store.to_str().unwrap()], &[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    let want = "train: sample 3 (";
    assert!(t.contains(want) && t.contains("Fletcher-32"), "{t}");
    assert!(t.contains(&store.display().to_string()), "{t}");
    // pretrain refuses it before training, with the same message.
    let out = pretrain(&store, dir.path(), "s", &[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains(want) && t.contains("Fletcher-32"), "{t}");
    assert!(!dir.path().join("s/metrics.csv").exists());
}

/// CRC-32 (IEEE, as zip uses), bit by bit: small and independent of the code under test.
fn crc32(bytes: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in bytes {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// Flip bit 29 of the first float32 of zip record `record` (an exponent bit, as in
/// [`flip_exponent_bit`]); with `fix_crc`, write the record's new CRC-32 where the
/// archive keeps it (central directory; data descriptor when the local header announces
/// one), so that the zip stays valid and only a digest can tell.
fn flip_in_record(path: &Path, record: &str, fix_crc: bool) {
    let (start, len, local, central) = {
        let mut zip = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
        let f = zip.by_name(record).unwrap();
        assert_eq!(f.compression(), zip::CompressionMethod::Stored);
        let at = |v: u64| v as usize;
        (
            at(f.data_start()),
            at(f.size()),
            at(f.header_start()),
            at(f.central_header_start()),
        )
    };
    let mut bytes = std::fs::read(path).unwrap();
    let before = f32::from_le_bytes(bytes[start..start + 4].try_into().unwrap());
    bytes[start + 3] ^= 0x20;
    let after = f32::from_le_bytes(bytes[start..start + 4].try_into().unwrap());
    assert!(after.is_finite() && after != before, "{before} -> {after}");
    if !fix_crc {
        std::fs::write(path, bytes).unwrap();
        return;
    }
    let crc = crc32(&bytes[start..start + len]).to_le_bytes();
    bytes[central + 16..central + 20].copy_from_slice(&crc);
    if u16::from_le_bytes([bytes[local + 6], bytes[local + 7]]) & 0x8 != 0 {
        let mut d = start + len;
        if bytes[d..d + 4] == [b'P', b'K', 7, 8] {
            d += 4;
        }
        bytes[d..d + 4].copy_from_slice(&crc);
    } else {
        bytes[local + 14..local + 18].copy_from_slice(&crc);
    }
    std::fs::write(path, bytes).unwrap();
}

/// The digest record of a TorchScript export, and its archive's top folder.
fn script_record(path: &Path) -> (serde_json::Value, String) {
    let mut zip = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    let top = zip
        .by_index(0)
        .unwrap()
        .name()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let f = zip
        .by_name(&format!("{top}/extra/pstl_digests.json"))
        .unwrap();
    (serde_json::from_reader(f).unwrap(), top)
}

/// `x.matmul(w)` traced by tch, saved as libtorch saves it (no digest record).
fn traced_matmul(w: &tch::Tensor, path: &Path) -> tch::CModule {
    let mut f = |x: &[tch::Tensor]| vec![x[0].matmul(w)];
    let x = tch::Tensor::ones([2, w.size()[0]], tch::kind::FLOAT_CPU);
    let m = tch::CModule::create_by_tracing("M", "forward", &[x], &mut f).unwrap();
    m.save(path).unwrap();
    m
}

#[test]
fn torchscript_exports_carry_digests_and_verify_names_a_flipped_bit() {
    let dir = tempfile::tempdir().unwrap();
    let ts = dir.path().join("enc_ts.pt");
    let golden = crate::common::golden_path();
    let export = [
        "export",
        "--checkpoint",
        golden.to_str().unwrap(),
        "--torchscript",
    ];
    ok(pstl(
        &[&export[..], &[ts.to_str().unwrap(), "--device", "cpu"]].concat(),
        &[],
    ));
    // A TorchScript file without the record verifies too.
    let plain = dir.path().join("plain.pt");
    traced_matmul(&tch::Tensor::ones([3, 2], tch::kind::FLOAT_CPU), &plain);
    let t = ok(pstl(
        &["verify", ts.to_str().unwrap(), plain.to_str().unwrap()],
        &[],
    ));
    let (record, top) = script_record(&ts);
    let n = record["tensors"].as_object().unwrap().len();
    let want = format!("enc_ts.pt: TorchScript module, {n} tensor digests verified");
    assert!(t.contains(&want), "{t}");
    assert!(
        t.contains("plain.pt: TorchScript module, no digests"),
        "{t}"
    );

    // The record holding st_gcn_networks.9.tcn.2.weight gets a flipped bit, once with
    // the zip's CRC-32 rewritten to match and once without.
    let weight = TENSOR.trim_start_matches("encoder.");
    let names = record["names"].as_object().unwrap();
    let rec = names
        .iter()
        .find(|(_, w)| w.as_str() == Some(weight))
        .map(|(r, _)| r.clone())
        .unwrap_or_else(|| panic!("no record named {weight}: {names:?}"));
    let (bad, crc) = (dir.path().join("bad_ts.pt"), dir.path().join("crc_ts.pt"));
    for (p, fix_crc) in [(&bad, true), (&crc, false)] {
        std::fs::copy(&ts, p).unwrap();
        flip_in_record(p, &format!("{top}/{rec}"), fix_crc);
    }
    // libtorch loads and runs the corrupt module without complaint.
    let m = tch::CModule::load(&bad).unwrap();
    let x = tch::Tensor::randn([2, 3, 50, 25, 2], tch::kind::FLOAT_CPU);
    assert!(tch::no_grad(|| m.forward_ts(&[x])).is_ok());
    let paths = [&ts, &bad, &crc].map(|p| p.to_str().unwrap());
    let out = pstl(&[&["verify"], &paths[..]].concat(), &[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    let line = |f: &str| t.lines().find(|l| l.contains(f)).unwrap_or_default();
    let named =
        format!("tensor `{rec}` (weight `{weight}`) does not match its recorded xxh3-64 digest");
    assert!(
        line("bad_ts.pt").starts_with("FAIL") && line("bad_ts.pt").contains(&named),
        "{t}"
    );
    // Left with its old CRC-32, the record fails the zip's own check first.
    let crc_error = format!("/{rec}': Invalid checksum");
    assert!(
        line("crc_ts.pt").starts_with("FAIL") && line("crc_ts.pt").contains(&crc_error),
        "{t}"
    );
    assert!(t.contains("2 of 3 file(s) failed verification"), "{t}");
}

#[test]
fn digest_record_is_appended_without_touching_the_archive_libtorch_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.pt");
    let w = tch::Tensor::randn([4, 4], tch::kind::FLOAT_CPU);
    let m = traced_matmul(&w, &path);
    let before = std::fs::read(&path).unwrap();
    // libtorch's central directory: from the first central header to the end records.
    let find = |b: &[u8], pat: &[u8], from: usize| {
        b[from..]
            .windows(pat.len())
            .position(|s| s == pat)
            .map(|i| i + from)
    };
    let cd = find(&before, b"PK\x01\x02", 0).unwrap();
    let end = find(&before, b"PK\x06\x06", cd)
        .or_else(|| find(&before, b"PK\x05\x06", cd))
        .unwrap();
    let r = pstl::checkpoint::torchscript::add_digests(&path, &[("w".into(), w.shallow_clone())])
        .unwrap();
    assert_eq!((r.records, r.named), (1, 1));
    let after = std::fs::read(&path).unwrap();
    assert_eq!(
        after[..cd],
        before[..cd],
        "bytes before the central directory changed"
    );
    assert!(
        find(&after, &before[cd..end], cd).is_some(),
        "libtorch's central directory is not kept byte for byte"
    );
    // Still a module libtorch loads, with its record 64-byte aligned.
    let m2 = tch::CModule::load(&path).unwrap();
    let x = tch::Tensor::randn([3, 4], tch::kind::FLOAT_CPU);
    let (a, b) = tch::no_grad(|| {
        (
            m.forward_ts(&[x.shallow_clone()]).unwrap(),
            m2.forward_ts(&[x.shallow_clone()]).unwrap(),
        )
    });
    assert_eq!(max_abs(&a, &b), 0.0);
    let (record, top) = script_record(&path);
    assert_eq!(record["names"]["constants/0"], "w", "{record}");
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&path).unwrap()).unwrap();
    let f = zip
        .by_name(&format!("{top}/extra/pstl_digests.json"))
        .unwrap();
    assert_eq!(f.data_start() % 64, 0);
    assert!(pstl::checkpoint::torchscript::verify(&path).is_ok());
}
