//! Experiment configs: the shipped files load, overrides apply, mistakes are named.

use crate::common::root;
use pstl::config::{Config, ConfigError};
use std::path::Path;

#[test]
fn shipped_configs_load() {
    let dir = root().join("configs");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            Config::load(Some(&path), &[]).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            n += 1;
        }
    }
    assert!(n >= 8, "expected the shipped configs, found {n}");
}

#[test]
fn official_defaults() {
    let c = Config::load(Some(&root().join("configs/ntu60_xsub_joint.toml")), &[]).unwrap();
    assert_eq!(
        c,
        Config::load(
            None,
            &[
                "run.name=\"ntu60_xsub_joint\"".into(),
                "data.path=\"data/ntu60_xsub.h5\"".into()
            ]
        )
        .unwrap()
    );
    assert_eq!(c.pretrain.epochs, 150);
    assert_eq!(c.pretrain.batch_size, 128);
    assert_eq!(c.pretrain.lr, 5e-3);
    assert_eq!(c.pretrain.lambda, 2e-4);
    assert_eq!(c.model.projector_dim, 6144);
    assert_eq!((c.pretrain.mask_frame, c.pretrain.mask_joint), (10, 8));
}

#[test]
fn overrides_apply_and_are_checked() {
    let c = Config::load(
        Some(&root().join("configs/synthetic.toml")),
        &[
            "pretrain.epochs=3".into(),
            "data.path=x/y.h5".into(),
            "model.projector_dim=128".into(),
        ],
    )
    .unwrap();
    assert_eq!(c.pretrain.epochs, 3);
    assert_eq!(c.data.path, Path::new("x/y.h5"));
    assert_eq!(c.model.projector_dim, 128);
    let e = Config::load(None, &["pretrain.epochz=3".into()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("epochz"), "{e}");
    let e = Config::load(None, &["pretrain.epochs=0".into()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("pretrain.epochs"), "{e}");
    let e = Config::load(None, &["pretrain.checkpoint_every=0".into()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("pretrain.checkpoint_every"), "{e}");
    let e = Config::load(None, &["noequals".into()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("section.key=value"), "{e}");
}

#[test]
fn file_errors_name_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[pretrain]\nepochs = 10\nlearning_rate = 0.1\n").unwrap();
    let e = Config::load(Some(&bad), &[]).unwrap_err();
    assert!(matches!(e, ConfigError::Parse { .. }));
    let msg = e.to_string();
    assert!(
        msg.contains("bad.toml") && msg.contains("learning_rate"),
        "{msg}"
    );
    assert!(!msg.contains('\n'), "one line: {msg}");
    std::fs::write(&bad, "[pretrain]\nbatch_size = \"big\"\n").unwrap();
    let msg = Config::load(Some(&bad), &[]).unwrap_err().to_string();
    assert!(
        msg.contains("bad.toml") && msg.contains("batch_size"),
        "{msg}"
    );
    std::fs::write(&bad, "[data]\nstream = \"joints\"\n").unwrap();
    let msg = Config::load(Some(&bad), &[]).unwrap_err().to_string();
    assert!(msg.contains("bad.toml") && msg.contains("joints"), "{msg}");
    let msg = Config::load(Some(&dir.path().join("nope.toml")), &[])
        .unwrap_err()
        .to_string();
    assert!(msg.contains("nope.toml"), "{msg}");
}

#[test]
fn resolved_config_round_trips() {
    let c = Config::load(Some(&root().join("configs/synthetic.toml")), &[]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("config.toml");
    std::fs::write(&p, c.to_toml()).unwrap();
    assert_eq!(Config::load(Some(&p), &[]).unwrap(), c);
}
