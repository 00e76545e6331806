//! `pstl prepare`: NTU RGB+D `.skeleton` files, PKU-MMD, or AimCLR `.npy` + `.pkl`
//! into one HDF5 store ([`crate::data::prepare`]).

use super::print_summary;
use crate::cli::{GlobalOpts, PrepareCmd};
use crate::data::prepare;
use crate::device::set_threads;
use anyhow::Result;
use serde_json::json;

/// `pstl prepare ntu|pku|npy`: raw skeletons or AimCLR arrays into one HDF5 store.
pub fn run(p: PrepareCmd, g: &GlobalOpts) -> Result<()> {
    set_threads(g.threads.unwrap_or(0));
    let report = prepare_store(p)?;
    summarise(&report, g);
    Ok(())
}

/// The store written by the chosen source.
fn prepare_store(p: PrepareCmd) -> Result<prepare::PrepareReport> {
    let progress = crate::progress::Progress::is_terminal();
    Ok(match p {
        PrepareCmd::Ntu {
            raw,
            out,
            benchmark,
            dataset,
            ignore,
            frames,
            skip_bad,
        } => prepare::prepare_ntu(&prepare::PrepareNtuOpts {
            raw,
            out,
            benchmark: crate::cli::value_name(&benchmark),
            dataset: crate::cli::value_name(&dataset),
            ignore,
            frames,
            skip_bad,
            progress,
        })?,
        PrepareCmd::Pku {
            skeletons,
            labels,
            split,
            out,
            part,
            frames,
            skip_bad,
        } => prepare::prepare_pku(&prepare::PreparePkuOpts {
            skeletons,
            labels,
            split,
            out,
            part: part.to_string(),
            frames,
            skip_bad,
            progress,
        })?,
        PrepareCmd::Npy {
            train_data,
            train_labels,
            test_data,
            test_labels,
            out,
            dataset,
            benchmark,
        } => prepare::prepare_npy(&prepare::PrepareNpyOpts {
            train_data,
            train_labels,
            test_data,
            test_labels,
            out,
            dataset,
            benchmark,
        })?,
    })
}

/// Skipped files as warnings, then the summary line.
fn summarise(report: &prepare::PrepareReport, g: &GlobalOpts) {
    for (file, why) in &report.skipped {
        tracing::warn!("skipped {file}: {why}");
    }
    let text = format!(
        "prepare: {} file(s), {} parsed, {} ignored, {} skipped; {} train / {} test samples in {:.1}s ({:.0} files/s)",
        report.files,
        report.parsed,
        report.ignored,
        report.skipped.len(),
        report.train,
        report.test,
        report.seconds,
        report.files_per_sec
    );
    let v = json!({
        "command": "prepare", "files": report.files, "parsed": report.parsed,
        "ignored": report.ignored, "skipped": report.skipped.len(), "train": report.train,
        "test": report.test, "seconds": report.seconds, "files_per_sec": report.files_per_sec,
    });
    print_summary(g, &text, v);
}
