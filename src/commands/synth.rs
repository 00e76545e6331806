//! `pstl synth`: the built-in procedural dataset ([`crate::data::synth`]) into an HDF5
//! store; also what `pretrain` calls when `data.synth.create_if_missing` is set.

use super::print_summary;
use crate::cli::{GlobalOpts, SynthArgs};
use crate::data::store::{write_store, SplitData, StoreMeta};
use crate::device::set_threads;
use anyhow::{bail, Context, Result};
use serde_json::json;
use std::path::Path;
use std::time::Instant;

/// `pstl synth --out F.h5`.
pub fn run(a: SynthArgs, g: &GlobalOpts) -> Result<()> {
    check_synth_args(&a)?;
    set_threads(g.threads.unwrap_or(0));
    let opts = crate::data::synth::SynthOpts {
        classes: a.classes,
        train_per_class: a.train_per_class,
        test_per_class: a.test_per_class,
        seed: g.seed.unwrap_or(1),
        frames: crate::data::FRAMES,
    };
    let v = write_synth(&a.out, &opts)?;
    let text = format!(
        "synth: {} classes, {} train / {} test samples written to {} in {:.1}s",
        opts.classes,
        v["train"],
        v["test"],
        a.out.display(),
        v["seconds"].as_f64().unwrap_or(f64::NAN)
    );
    print_summary(g, &text, v);
    Ok(())
}

/// `synth` flags: class count within the generator's, at least one sample per class.
fn check_synth_args(a: &SynthArgs) -> Result<()> {
    use crate::data::synth::MAX_CLASSES;
    if !(1..=MAX_CLASSES).contains(&a.classes) {
        bail!("--classes {}: must be in 1..={MAX_CLASSES}", a.classes);
    }
    for (flag, v) in [
        ("--train-per-class", a.train_per_class),
        ("--test-per-class", a.test_per_class),
    ] {
        if !(1..=1_000_000).contains(&v) {
            bail!("{flag} {v}: must be in 1..=1000000");
        }
    }
    Ok(())
}

/// Generate the synthetic dataset into an HDF5 store; returns the summary.
pub fn write_synth(out: &Path, opts: &crate::data::synth::SynthOpts) -> Result<serde_json::Value> {
    let t0 = Instant::now();
    let (train, test) = crate::data::synth::generate(opts);
    let meta = StoreMeta::new(
        "synthetic",
        "default",
        opts.classes,
        opts.frames,
        "pstl synth",
    );
    let to_split = |s: crate::data::synth::SynthSplit| SplitData {
        x: s.x,
        y: s.y,
        names: s.names,
    };
    let (ntrain, ntest) = (train.y.len(), test.y.len());
    write_store(out, &meta, &to_split(train), &to_split(test))
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(json!({
        "command": "synth", "classes": opts.classes, "train": ntrain, "test": ntest,
        "out": out, "seconds": t0.elapsed().as_secs_f64(),
    }))
}
