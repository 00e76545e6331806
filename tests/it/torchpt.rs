//! `pstl::torchpt`: reading files written by real PyTorch (`torch.save`) and writing
//! files that `torch.load(..., weights_only=True)` accepts. Needs the project venv's
//! Python with torch (`make setup`).

use pstl::torchpt::{read_state_dict, write_state_dict, PtDtype, PtError, PtTensor};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The project venv's Python.
fn python() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(p.exists(), "{} missing: run `make setup`", p.display());
    p
}

/// Helpers every script gets: `dump(sd, out)` writes `out/manifest.txt` (one
/// `name<TAB>dtype<TAB>shape` line per tensor, in order) and `out/<i>.bin` (the tensor's
/// contiguous C-order bytes).
const PRELUDE: &str = r#"
import collections, os, sys, zipfile
import torch
def tensor_bytes(t):
    return t.detach().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes()
def dump(sd, out):
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "manifest.txt"), "w") as f:
        for i, (k, t) in enumerate(sd.items()):
            f.write(f"{k}\t{t.dtype}\t{','.join(map(str, t.shape))}\n")
            with open(os.path.join(out, f"{i}.bin"), "wb") as b:
                b.write(tensor_bytes(t))
"#;

/// Runs `PRELUDE + script` with `args` as `sys.argv[1..]`; panics with its output on failure.
fn py(script: &str, args: &[&Path]) -> String {
    let out = Command::new(python())
        .arg("-c")
        .arg(format!("{PRELUDE}\n{script}"))
        .args(args)
        .output()
        .expect("run python");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "python failed:\n{text}");
    text
}

fn dtype_name(d: PtDtype) -> &'static str {
    match d {
        PtDtype::F32 => "torch.float32",
        PtDtype::F64 => "torch.float64",
        PtDtype::F16 => "torch.float16",
        PtDtype::BF16 => "torch.bfloat16",
        PtDtype::I64 => "torch.int64",
        PtDtype::I32 => "torch.int32",
        PtDtype::I16 => "torch.int16",
        PtDtype::I8 => "torch.int8",
        PtDtype::U8 => "torch.uint8",
        PtDtype::Bool => "torch.bool",
    }
}

fn shape_str(shape: &[usize]) -> String {
    shape
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Writes `tensors` in the `dump` layout.
fn write_manifest(dir: &Path, tensors: &[(String, PtTensor)]) {
    fs::create_dir_all(dir).unwrap();
    let mut manifest = String::new();
    for (i, (name, t)) in tensors.iter().enumerate() {
        manifest += &format!("{name}\t{}\t{}\n", dtype_name(t.dtype), shape_str(&t.shape));
        fs::write(dir.join(format!("{i}.bin")), &t.data).unwrap();
    }
    fs::write(dir.join("manifest.txt"), manifest).unwrap();
}

/// Asserts that `got` matches what Python's `dump` wrote into `dir`: same names in the same
/// order, dtypes, shapes and bytes.
fn assert_matches_dump(got: &[(String, PtTensor)], dir: &Path) {
    let manifest = fs::read_to_string(dir.join("manifest.txt")).unwrap();
    let lines: Vec<&str> = manifest.lines().collect();
    let got_names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    let want_names: Vec<&str> = lines
        .iter()
        .map(|l| l.split('\t').next().unwrap())
        .collect();
    assert_eq!(got_names, want_names, "names / order");
    for (i, (line, (name, t))) in lines.iter().zip(got).enumerate() {
        let f: Vec<&str> = line.split('\t').collect();
        assert_eq!(dtype_name(t.dtype), f[1], "{name}: dtype");
        assert_eq!(shape_str(&t.shape), f[2], "{name}: shape");
        let want = fs::read(dir.join(format!("{i}.bin"))).unwrap();
        assert_eq!(t.data.len(), want.len(), "{name}: byte length");
        assert!(t.data == want, "{name}: values differ");
        assert_eq!(
            t.data.len(),
            t.numel().unwrap() * t.dtype.size(),
            "{name}: data length vs shape"
        );
    }
}

#[test]
fn reads_ordered_dict_state_dict_of_a_pytorch_model() {
    let tmp = tempfile::tempdir().unwrap();
    let pt = tmp.path().join("model.pt");
    let dump = tmp.path().join("dump");
    py(
        r#"
torch.manual_seed(0)
m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Linear(5, 6))
m.train()
m[1](torch.randn(8, 4, 5, 5))
m[1](torch.randn(8, 4, 5, 5))
sd = m.state_dict()
assert type(sd) is collections.OrderedDict and hasattr(sd, "_metadata")
assert sd["1.num_batches_tracked"].dim() == 0 and int(sd["1.num_batches_tracked"]) == 2
torch.save(sd, sys.argv[1])
dump(sd, sys.argv[2])
"#,
        &[&pt, &dump],
    );
    let got = read_state_dict(&pt).unwrap();
    assert_eq!(got.len(), 9);
    assert_matches_dump(&got, &dump);
    let (name, nbt) = &got[6];
    assert_eq!(name, "1.num_batches_tracked");
    assert_eq!((nbt.dtype, nbt.shape.as_slice()), (PtDtype::I64, &[][..]));
    assert_eq!(nbt.data, 2i64.to_le_bytes());
}

#[test]
fn reads_strided_views_offsets_and_shared_storages() {
    let tmp = tempfile::tempdir().unwrap();
    let pt = tmp.path().join("views.pt");
    let dump = tmp.path().join("dump");
    py(
        r#"
big = torch.arange(60, dtype=torch.float32).reshape(5, 12)
sd = {  # a plain dict; all views share big's storage
    "transposed": big.t(),
    "block": big[1:4, 2:7],
    "offset_contiguous": big.view(-1)[13:21],
    "every_other": big[:, ::2],
    "permuted": torch.arange(24, dtype=torch.int64).reshape(2, 3, 4).permute(2, 0, 1),
    "expanded": torch.tensor([1.0, 2.0]).expand(3, 2),
    "empty": torch.zeros(0, 3),
    "scalar": torch.tensor(3.5, dtype=torch.float64),
    "whole": big,
}
assert not sd["transposed"].is_contiguous() and sd["block"].storage_offset() == 14
assert sd["offset_contiguous"].is_contiguous() and sd["offset_contiguous"].storage_offset() == 13
torch.save(sd, sys.argv[1])
dump(sd, sys.argv[2])
"#,
        &[&pt, &dump],
    );
    let got = read_state_dict(&pt).unwrap();
    assert_matches_dump(&got, &dump);
    let t = &got[0].1;
    assert_eq!(t.shape, vec![12, 5]);
    let first: Vec<f32> = t
        .data
        .chunks(4)
        .take(3)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(
        first,
        vec![0.0, 12.0, 24.0],
        "transpose gathered in C order"
    );
}

#[test]
fn reads_all_dtypes_and_pickle_protocol_4() {
    let tmp = tempfile::tempdir().unwrap();
    let dump = tmp.path().join("dump");
    let p2 = tmp.path().join("p2.pt");
    let p4 = tmp.path().join("p4.pt");
    py(
        r#"
torch.manual_seed(1)
sd = collections.OrderedDict()
sd["f32"] = torch.randn(2, 3)
sd["f64"] = torch.randn(3, dtype=torch.float64)
sd["f16"] = torch.randn(4, 1).half()
sd["bf16"] = torch.randn(2, 2).bfloat16()
sd["i64"] = torch.tensor([-(2 ** 40), 7, 2 ** 62])
sd["i64_scalar"] = torch.tensor(-5)
sd["i32"] = torch.tensor([[-1, 2 ** 31 - 1]], dtype=torch.int32)
sd["i16"] = torch.tensor([-300, 300], dtype=torch.int16)
sd["i8"] = torch.tensor([-128, 127], dtype=torch.int8)
sd["u8"] = torch.tensor([0, 255], dtype=torch.uint8)
sd["bool"] = torch.tensor([[True, False], [False, True]])
sd["param"] = torch.nn.Parameter(torch.randn(3))  # pickled via _rebuild_parameter
torch.save(sd, sys.argv[1])
torch.save(sd, sys.argv[2], pickle_protocol=4)
dump(sd, sys.argv[3])
"#,
        &[&p2, &p4, &dump],
    );
    for pt in [&p2, &p4] {
        let got = read_state_dict(pt).unwrap_or_else(|e| panic!("{e}"));
        assert_matches_dump(&got, &dump);
    }
}

#[test]
fn reads_official_format_pt_of_the_golden_encoder() {
    let golden = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/golden/pstl_official_seed1.safetensors");
    assert!(golden.exists(), "{} missing", golden.display());
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/interop_check.py");
    let tmp = tempfile::tempdir().unwrap();
    let pt = tmp.path().join("official.pt");
    let dump = tmp.path().join("dump");
    let out = Command::new(python())
        .arg(&script)
        .arg("--make-official-pt")
        .arg(&pt)
        .arg("--from-safetensors")
        .arg(&golden)
        .output()
        .expect("run interop_check.py");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Dump through torch.load (independent of our reader) for a value comparison.
    py(
        "dump(torch.load(sys.argv[1], weights_only=True), sys.argv[2])",
        &[&pt, &dump],
    );
    let got = read_state_dict(&pt).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(got.len(), 177);
    assert_matches_dump(&got, &dump);
}

/// Tensors covering every dtype, 0-d, empty and large (LONG1-pickled) dims.
fn sample_tensors() -> Vec<(String, PtTensor)> {
    let f32s: Vec<u8> = (0..24)
        .flat_map(|i| (i as f32 * 0.5 - 3.0).to_le_bytes())
        .collect();
    let mut v = vec![
        (
            "encoder.conv.weight".to_string(),
            PtTensor {
                dtype: PtDtype::F32,
                shape: vec![2, 3, 4],
                data: f32s,
            },
        ),
        (
            "b.f64".into(),
            PtTensor {
                dtype: PtDtype::F64,
                shape: vec![3],
                data: [1.5f64, -2.25, 1e300]
                    .iter()
                    .flat_map(|x| x.to_le_bytes())
                    .collect(),
            },
        ),
        (
            "a.num_batches_tracked".into(),
            PtTensor {
                dtype: PtDtype::I64,
                shape: vec![],
                data: 12345678901i64.to_le_bytes().to_vec(),
            },
        ),
        (
            "empty_huge_dim".into(),
            PtTensor {
                dtype: PtDtype::F32,
                shape: vec![0, 3_000_000_000],
                data: vec![],
            },
        ),
    ];
    let simple = [
        (PtDtype::F16, vec![2, 2], 8),
        (PtDtype::BF16, vec![3], 6),
        (PtDtype::I32, vec![2], 8),
        (PtDtype::I16, vec![1, 1, 2], 4),
        (PtDtype::I8, vec![4], 4),
        (PtDtype::U8, vec![5], 5),
    ];
    for (i, (dtype, shape, n)) in simple.into_iter().enumerate() {
        let data = (0..n).map(|b| (b * 37 + i * 11) as u8 % 120).collect();
        v.push((format!("t{i}"), PtTensor { dtype, shape, data }));
    }
    v.push((
        "mask".into(),
        PtTensor {
            dtype: PtDtype::Bool,
            shape: vec![2, 3],
            data: vec![1, 0, 0, 1, 1, 0],
        },
    ));
    v
}

#[test]
fn written_files_load_in_pytorch_with_weights_only() {
    let tmp = tempfile::tempdir().unwrap();
    let pt = tmp.path().join("ours.pt");
    let want = tmp.path().join("want");
    let tensors = sample_tensors();
    write_state_dict(&pt, &tensors).unwrap();
    write_manifest(&want, &tensors);
    let out = py(
        r#"
path, want = sys.argv[1], sys.argv[2]
lines = open(os.path.join(want, "manifest.txt")).read().splitlines()
for mmap in (False, True):
    sd = torch.load(path, weights_only=True, mmap=mmap)
    assert type(sd) is collections.OrderedDict, type(sd)
    assert list(sd) == [l.split("\t")[0] for l in lines], list(sd)
    for i, line in enumerate(lines):
        name, dtype, shape = line.split("\t")
        t = sd[name]
        assert str(t.dtype) == dtype, (name, t.dtype)
        assert ",".join(map(str, t.shape)) == shape, (name, t.shape)
        assert t.is_contiguous() and not t.requires_grad, name
        assert tensor_bytes(t) == open(os.path.join(want, f"{i}.bin"), "rb").read(), name
z = zipfile.ZipFile(path)
assert z.testzip() is None  # CRCs
names = z.namelist()
assert names[0] == "archive/data.pkl" and "archive/version" in names and "archive/byteorder" in names
assert z.read("archive/byteorder") == b"little" and z.read("archive/version") == b"3\n"
raw = open(path, "rb").read()
for info in z.infolist():
    assert info.compress_type == zipfile.ZIP_STORED, info.filename
    h = info.header_offset  # data offset from the local header (torch mmaps records)
    start = h + 30 + int.from_bytes(raw[h + 26 : h + 28], "little") + int.from_bytes(raw[h + 28 : h + 30], "little")
    assert start % 64 == 0, (info.filename, start)
    assert raw[start : start + info.file_size] == z.read(info.filename), info.filename
print("OK", len(lines))
"#,
        &[&pt, &want],
    );
    assert!(out.contains(&format!("OK {}", tensors.len())), "{out}");
    // And back through our reader.
    assert_eq!(read_state_dict(&pt).unwrap(), tensors);
}

#[test]
fn written_state_dict_loads_into_a_pytorch_module() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src.pt");
    let ours = tmp.path().join("ours.pt");
    py(
        r#"
torch.manual_seed(3)
m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
m[1].num_batches_tracked.fill_(4)
torch.save(m.state_dict(), sys.argv[1])
"#,
        &[&src],
    );
    let sd = read_state_dict(&src).unwrap();
    write_state_dict(&ours, &sd).unwrap();
    let out = py(
        r#"
ref = torch.load(sys.argv[1], weights_only=True)
m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
m.load_state_dict(torch.load(sys.argv[2], weights_only=True), strict=True)
for k, v in m.state_dict().items():
    assert torch.equal(v, ref[k]), k
print("OK")
"#,
        &[&src, &ours],
    );
    assert!(out.contains("OK"), "{out}");
}

#[test]
fn write_replaces_existing_file_atomically_and_validates_input() {
    let tmp = tempfile::tempdir().unwrap();
    let pt = tmp.path().join("x.pt");
    fs::write(&pt, b"old").unwrap();
    let tensors = sample_tensors();
    write_state_dict(&pt, &tensors).unwrap();
    assert_eq!(read_state_dict(&pt).unwrap(), tensors);
    let names: Vec<_> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names,
        vec![std::ffi::OsString::from("x.pt")],
        "no temporary files left"
    );

    // Data length not matching the shape: rejected, existing file untouched.
    let bad = vec![(
        "w".to_string(),
        PtTensor {
            dtype: PtDtype::F32,
            shape: vec![2, 2],
            data: vec![0; 15],
        },
    )];
    let err = write_state_dict(&pt, &bad).unwrap_err();
    assert!(matches!(err, PtError::Invalid { .. }), "{err:?}");
    assert!(
        err.to_string().contains("x.pt") && err.to_string().contains("'w'"),
        "{err}"
    );
    let dup = vec![tensors[0].clone(), tensors[0].clone()];
    assert!(write_state_dict(&pt, &dup)
        .unwrap_err()
        .to_string()
        .contains("duplicate"));
    assert_eq!(read_state_dict(&pt).unwrap(), tensors);

    // Empty state dict is fine too.
    let empty = tmp.path().join("empty.pt");
    write_state_dict(&empty, &[]).unwrap();
    assert!(read_state_dict(&empty).unwrap().is_empty());
    let out = py(
        "sd = torch.load(sys.argv[1], weights_only=True); assert len(sd) == 0; print('OK')",
        &[&empty],
    );
    assert!(out.contains("OK"));

    // Unwritable destination: an error naming the path.
    let missing = tmp.path().join("no/such/dir/y.pt");
    let err = write_state_dict(&missing, &tensors).unwrap_err();
    assert!(err.to_string().contains("y.pt"), "{err}");
}

#[test]
fn bad_files_give_errors_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let good = tmp.path().join("good.pt");
    write_state_dict(&good, &sample_tensors()).unwrap();
    let bytes = fs::read(&good).unwrap();

    let check = |name: &str, contents: &[u8], expect: &str| {
        let p = tmp.path().join(name);
        fs::write(&p, contents).unwrap();
        let err = read_state_dict(&p).expect_err(name);
        let msg = err.to_string();
        assert!(
            msg.contains(name),
            "{name}: message does not name the file: {msg}"
        );
        assert!(
            msg.contains(expect),
            "{name}: expected {expect:?} in: {msg}"
        );
    };
    check("text.pt", b"hello, not a checkpoint", "not a zip archive");
    check("empty.pt", b"", "not a zip archive");
    check("legacy.pt", b"\x80\x02\x8a\x0alz", "legacy");
    check("truncated.pt", &bytes[..bytes.len() / 2], "zip");
    check("no_end.pt", &bytes[..bytes.len() - 10], "zip");

    let err = read_state_dict(&tmp.path().join("absent.pt")).unwrap_err();
    assert!(
        matches!(err, PtError::Io { .. }) && err.to_string().contains("absent.pt"),
        "{err}"
    );

    // Corrupted pickle bytes (a valid zip whose data.pkl is cut short / unknown opcode).
    let broken = tmp.path().join("broken.pt");
    let garbage = tmp.path().join("garbage.pt");
    let no_storage = tmp.path().join("no_storage.pt");
    py(
        r#"
src, broken, garbage, no_storage = sys.argv[1:5]
z = zipfile.ZipFile(src)
def rewrite(out, edit):
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as o:
        for n in z.namelist():
            data = edit(n, z.read(n))
            if data is not None:
                o.writestr(n, data)
rewrite(broken, lambda n, d: d[: len(d) // 2] if n.endswith("data.pkl") else d)
rewrite(garbage, lambda n, d: b"\x80\x02\xff" + d[2:] if n.endswith("data.pkl") else d)
rewrite(no_storage, lambda n, d: None if n == "archive/data/1" else d)
"#,
        &[&good, &broken, &garbage, &no_storage],
    );
    let msg = read_state_dict(&broken).unwrap_err().to_string();
    assert!(
        msg.contains("broken.pt") && msg.contains("truncated"),
        "{msg}"
    );
    let msg = read_state_dict(&garbage).unwrap_err().to_string();
    assert!(
        msg.contains("garbage.pt") && msg.contains("unsupported pickle opcode 0xff"),
        "{msg}"
    );
    let msg = read_state_dict(&no_storage).unwrap_err().to_string();
    assert!(
        msg.contains("no_storage.pt") && msg.contains("missing storage 'archive/data/1'"),
        "{msg}"
    );
}

#[test]
fn rejects_pickles_that_are_not_state_dicts() {
    let tmp = tempfile::tempdir().unwrap();
    let module = tmp.path().join("module.pt");
    let list = tmp.path().join("list.pt");
    let nested = tmp.path().join("nested.pt");
    py(
        r#"
torch.save(torch.nn.Linear(2, 2), sys.argv[1])
torch.save([torch.ones(2)], sys.argv[2])
torch.save({"state_dict": {"w": torch.ones(2)}, "epoch": 3}, sys.argv[3])
"#,
        &[&module, &list, &nested],
    );
    let msg = read_state_dict(&module).unwrap_err().to_string();
    assert!(
        msg.contains("module.pt")
            && msg.contains("unsupported pickle global")
            && msg.contains("state_dict"),
        "{msg}"
    );
    let msg = read_state_dict(&list).unwrap_err().to_string();
    assert!(msg.contains("list.pt") && msg.contains("a list"), "{msg}");
    let msg = read_state_dict(&nested).unwrap_err().to_string();
    assert!(
        msg.contains("nested.pt") && msg.contains("'state_dict'") && msg.contains("not a tensor"),
        "{msg}"
    );
}

/// Why pstl keeps its own `.pt` reader: libtorch's loaders in tch (`load_multi` for
/// TorchScript-style archives, `loadz_multi` for `torch.save` zips) cannot read the
/// `OrderedDict` that `torch.save(model.state_dict())` writes, which is how the
/// authors' checkpoints are saved. When a tch release reads it, this test fails and
/// the hand reader can go.
#[test]
fn tch_loaders_cannot_read_an_official_state_dict() {
    let tmp = tempfile::tempdir().unwrap();
    let pt = tmp.path().join("sd.pt");
    py(
        "m = torch.nn.Linear(3, 2)\ntorch.save(m.state_dict(), sys.argv[1])",
        &[&pt],
    );
    assert_eq!(read_state_dict(&pt).unwrap().len(), 2);
    let multi = tch::Tensor::load_multi(&pt);
    assert!(
        multi.is_err(),
        "tch load_multi now reads an OrderedDict .pt"
    );
    let zipped = tch::Tensor::loadz_multi(&pt);
    assert!(
        zipped.is_err(),
        "tch loadz_multi now reads an OrderedDict .pt"
    );
}
