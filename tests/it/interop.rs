//! Interop with real PyTorch from the project's venv: TorchScript and official-key
//! safetensors exports load in Python and agree with `pstl embed`; official `.pt`
//! state_dicts load in pstl; a renamed key fails loudly on both sides.

use crate::common::{golden, golden_path, max_abs, pstl_bin, python, root};
use std::path::Path;
use std::process::{Command, Output};
use tch::Tensor;

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("spawn")
}

fn ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn write_npy(path: &Path, t: &Tensor) {
    let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
    let data: Vec<f32> = Vec::try_from(t.flatten(0, -1)).unwrap();
    pstl::data::npy::write_npy_f32(path, &data, &shape).unwrap();
}

fn read_npy(path: &Path) -> Tensor {
    let (data, shape) = pstl::data::npy::read_npy_f32(path).unwrap();
    let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
    Tensor::from_slice(&data).view(dims.as_slice())
}

fn pstl(args: &[&str]) -> Output {
    run(Command::new(pstl_bin())
        .args(args)
        .args(["--device", "cpu"])
        .current_dir(root()))
}

#[test]
fn exports_load_in_pytorch_and_match_embed() {
    let dir = tempfile::tempdir().unwrap();
    let d = |f: &str| dir.path().join(f).display().to_string();
    let g = golden();
    write_npy(&dir.path().join("x.npy"), &g["x"]);
    let ckpt = golden_path().display().to_string();

    ok(
        &pstl(&[
            "embed",
            "--checkpoint",
            &ckpt,
            "--input",
            &d("x.npy"),
            "--output",
            &d("z.npy"),
        ]),
        "embed",
    );
    let z = read_npy(&dir.path().join("z.npy"));
    assert!(
        max_abs(&z, &g["z_eval"]) < 1e-4,
        "embed differs from the official z_eval"
    );
    ok(
        &pstl(&[
            "embed",
            "--checkpoint",
            &ckpt,
            "--input",
            &d("x.npy"),
            "--output",
            &d("zc.npy"),
            "--drop-joints",
            "1,4,20,20,13,22",
        ]),
        "embed --drop-joints",
    );
    assert!(max_abs(&read_npy(&dir.path().join("zc.npy")), &g["z_eval_csm"]) < 1e-4);

    ok(
        &pstl(&[
            "export",
            "--checkpoint",
            &ckpt,
            "--torchscript",
            &d("enc.pt"),
            "--safetensors",
            &d("enc.safetensors"),
        ]),
        "export",
    );
    let check = |ts: &str, st: &str, extra: &[&str]| {
        run(Command::new(python())
            .arg(root().join("tests/python/interop_check.py"))
            .args([
                "--torchscript",
                ts,
                "--safetensors",
                st,
                "--input",
                &d("x.npy"),
                "--expected",
                &d("z.npy"),
            ])
            .args(extra))
    };
    ok(
        &check(&d("enc.pt"), &d("enc.safetensors"), &[]),
        "interop_check",
    );
    // C++ libtorch (through tch's CModule) loads it too, with another batch size.
    let module = tch::CModule::load(dir.path().join("enc.pt")).unwrap();
    let x3 = g["x"].narrow(0, 0, 3);
    let z3 = tch::no_grad(|| module.forward_ts(&[x3])).unwrap();
    assert!(max_abs(&z3, &z.narrow(0, 0, 3)) < 1e-4);

    // Renaming one key must break strict loading in PyTorch and in pstl.
    let (mut tensors, meta) =
        pstl::checkpoint::read_safetensors(&dir.path().join("enc.safetensors")).unwrap();
    let w = tensors.remove("data_bn.weight").unwrap();
    tensors.insert("data_bn.wt".into(), w);
    let renamed: Vec<(String, Tensor)> = tensors.into_iter().collect();
    pstl::checkpoint::write_safetensors(&dir.path().join("renamed.safetensors"), &renamed, &meta)
        .unwrap();
    assert!(
        !check(&d("enc.pt"), &d("renamed.safetensors"), &[])
            .status
            .success(),
        "PyTorch accepted a renamed key"
    );
    let out = pstl(&[
        "embed",
        "--checkpoint",
        &d("renamed.safetensors"),
        "--input",
        &d("x.npy"),
        "--output",
        &d("bad.npy"),
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("data_bn.weight"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !dir.path().join("bad.npy").exists(),
        "a failed embed left an output"
    );

    // A classifier head: TorchScript logits equal PyTorch Linear on the reference features.
    let fc_w = Tensor::randn([5, 256], (tch::Kind::Float, tch::Device::Cpu)) * 0.1;
    let fc_b = Tensor::randn([5], (tch::Kind::Float, tch::Device::Cpu)) * 0.1;
    pstl::checkpoint::write_safetensors(
        &dir.path().join("fc.safetensors"),
        &[
            ("fc.weight".to_string(), fc_w.shallow_clone()),
            ("fc.bias".to_string(), fc_b.shallow_clone()),
        ],
        &Default::default(),
    )
    .unwrap();
    ok(
        &pstl(&[
            "export",
            "--checkpoint",
            &ckpt,
            "--classifier",
            &d("fc.safetensors"),
            "--torchscript",
            &d("cls.pt"),
        ]),
        "export classifier",
    );
    let logits = z.matmul(&fc_w.tr()) + &fc_b;
    write_npy(&dir.path().join("logits.npy"), &logits);
    let out = run(Command::new(python())
        .arg(root().join("tests/python/interop_check.py"))
        .args([
            "--torchscript",
            &d("cls.pt"),
            "--safetensors",
            &d("enc.safetensors"),
            "--input",
            &d("x.npy"),
        ])
        .args([
            "--expected",
            &d("logits.npy"),
            "--classifier",
            &d("fc.safetensors"),
        ]));
    ok(&out, "interop_check --classifier");
}

#[test]
fn official_pt_state_dict_loads_like_safetensors() {
    let dir = tempfile::tempdir().unwrap();
    let d = |f: &str| dir.path().join(f).display().to_string();
    let g = golden();
    write_npy(&dir.path().join("x.npy"), &g["x"]);
    let out = run(Command::new(python())
        .arg(root().join("tests/python/interop_check.py"))
        .args([
            "--make-official-pt",
            &d("official.pt"),
            "--from-safetensors",
            &golden_path().display().to_string(),
        ]));
    ok(&out, "make official .pt");
    ok(
        &pstl(&[
            "embed",
            "--checkpoint",
            &d("official.pt"),
            "--input",
            &d("x.npy"),
            "--output",
            &d("z_pt.npy"),
        ]),
        "embed .pt",
    );
    let ckpt = golden_path().display().to_string();
    ok(
        &pstl(&[
            "embed",
            "--checkpoint",
            &ckpt,
            "--input",
            &d("x.npy"),
            "--output",
            &d("z_st.npy"),
        ]),
        "embed safetensors",
    );
    let a = read_npy(&dir.path().join("z_pt.npy"));
    let b = read_npy(&dir.path().join("z_st.npy"));
    assert_eq!(max_abs(&a, &b), 0.0);

    // The `--pt` export is readable by torch.load and loads strictly.
    ok(
        &pstl(&["export", "--checkpoint", &ckpt, "--pt", &d("ours.pt")]),
        "export --pt",
    );
    ok(
        &pstl(&[
            "embed",
            "--checkpoint",
            &d("ours.pt"),
            "--input",
            &d("x.npy"),
            "--output",
            &d("z_ours.npy"),
        ]),
        "embed ours.pt",
    );
    assert_eq!(max_abs(&read_npy(&dir.path().join("z_ours.npy")), &b), 0.0);
    let script = format!(
        "import sys, torch; sys.path.insert(0, {:?}); from stgcn_ref import build_encoder; m = build_encoder(); \
         sd = torch.load({:?}, weights_only=True); m.load_state_dict(sd, strict=True); print(type(sd).__name__)",
        root().join("tests/python").display().to_string(),
        d("ours.pt")
    );
    ok(
        &run(Command::new(python()).args(["-c", &script])),
        "torch.load of --pt export",
    );
}
