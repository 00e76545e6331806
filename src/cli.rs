//! The command line: `pstl <command>`; see `pstl --help` and `pstl <command> --help`.
//! Argument types only (one struct per command) and the config they resolve to; what a
//! command does is in [`crate::commands`], and `main.rs` dispatches.

use crate::config::Config;
use crate::stream::Stream;
use anyhow::Result;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Self-supervised skeleton action representations with PSTL (AAAI 2023).
#[derive(Debug, Parser)]
#[command(name = "pstl", version, about, long_about = None, propagate_version = true,
    after_help = "Examples:\n  pstl synth --out data/synthetic.h5\n  pstl pretrain --config configs/synthetic.toml\n  RUST_LOG=debug pstl --log-format json eval linear --config configs/synthetic.toml --checkpoint runs/synthetic/encoder.safetensors\n\nEnvironment: PSTL_DEVICE, PSTL_THREADS, PSTL_RUNS_DIR (see the options), RUST_LOG (log filter).")]
pub struct Cli {
    /// Options shared by every command.
    #[command(flatten)]
    pub global: GlobalOpts,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Options shared by every command.
#[derive(Debug, Args, Clone)]
pub struct GlobalOpts {
    /// Compute device: auto (CUDA when available), cpu, cuda or cuda:N. Overrides run.device.
    #[arg(long, global = true, env = "PSTL_DEVICE")]
    pub device: Option<String>,
    /// CPU threads for libtorch and data preparation (0 = all cores). Overrides run.threads.
    #[arg(long, global = true, env = "PSTL_THREADS")]
    pub threads: Option<usize>,
    /// Random seed. Overrides run.seed.
    #[arg(long, global = true)]
    pub seed: Option<u64>,
    /// Folder of the run directories. Overrides run.dir.
    #[arg(long, global = true, env = "PSTL_RUNS_DIR", value_name = "DIR")]
    pub runs_dir: Option<PathBuf>,
    /// Log line format on stderr (RUST_LOG sets the filter, e.g. RUST_LOG=debug).
    #[arg(long, global = true, value_enum, default_value_t = crate::logging::LogFormat::Text)]
    pub log_format: crate::logging::LogFormat,
    /// Fewer log lines (-q: warnings only, -qq: errors only).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "verbose")]
    pub quiet: u8,
    /// More log lines (-v: debug, -vv: trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Print the command's final summary as one JSON object on stdout (instead of text).
    #[arg(long, global = true)]
    pub json: bool,
}

impl GlobalOpts {
    /// `-v` count minus `-q` count.
    pub fn verbosity(&self) -> i8 {
        self.verbose.min(3) as i8 - self.quiet.min(3) as i8
    }
}

/// Experiment config options (`--config`, `--set`).
#[derive(Debug, Args, Clone)]
pub struct ConfigOpts {
    /// Experiment file (TOML) from configs/; without it the official defaults are used.
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
    /// Override one key, e.g. --set pretrain.epochs=5 --set data.path=data/x.h5 (repeatable).
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    pub overrides: Vec<String>,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Convert raw skeletons (NTU RGB+D, PKU-MMD) or AimCLR .npy/.pkl files into one HDF5 store.
    #[command(subcommand)]
    Prepare(PrepareCmd),
    /// Write the built-in procedural skeleton action dataset (the default of `make pretrain`).
    #[command(after_help = "Example:\n  pstl synth --out data/synthetic.h5 --classes 10 --seed 1")]
    Synth(SynthArgs),
    /// Self-supervised PSTL pretraining (anchor + MATM + CSM views, two Barlow Twins losses).
    #[command(
        after_help = "Example:\n  pstl pretrain --config configs/synthetic.toml --set pretrain.epochs=2"
    )]
    Pretrain(PretrainArgs),
    /// Downstream evaluation of a pretrained encoder.
    #[command(
        after_help = "Example:\n  pstl eval linear --config configs/synthetic.toml --checkpoint runs/synthetic/encoder.safetensors"
    )]
    Eval(EvalArgs),
    /// Eval-mode features (N, 256) of an .npy input (N, 3, T, 25, M).
    #[command(
        after_help = "Example:\n  pstl embed --checkpoint runs/synthetic/encoder.safetensors --input x.npy --output z.npy"
    )]
    Embed(EmbedArgs),
    /// Export an encoder: TorchScript, official-key safetensors / .pt, or a hub directory.
    #[command(
        after_help = "Example:\n  pstl export --checkpoint runs/synthetic/encoder.safetensors --hub hub/pstl-synthetic"
    )]
    Export(ExportArgs),
    /// Measure pretraining throughput (samples/s) on random batches.
    #[command(
        after_help = "Example:\n  pstl bench --config configs/ntu60_xsub_joint.toml --steps 2"
    )]
    Bench(BenchArgs),
    /// Print a shell completion script, or the man page (`man`), to stdout.
    #[command(
        after_help = "Examples:\n  pstl completions bash > /etc/bash_completion.d/pstl\n  pstl completions man > pstl.1"
    )]
    Completions(CompletionsArgs),
    /// Markdown table of the results.json files under run folders, in the paper's layout
    /// with the published figures and the differences.
    #[command(after_help = "Example:\n  pstl report runs --out report.md")]
    Report(ReportArgs),
    /// Draw a sample of a store and its three PSTL views (anchor, MATM, CSM) with the
    /// masks marked: a PNG sheet and an animated GIF.
    #[command(
        after_help = "Example:\n  pstl show --store data/synthetic.h5 --index 0 --out show/ --config configs/synthetic.toml"
    )]
    Show(ShowArgs),
    /// Check stores, checkpoints and exports offline (digests, shapes against their
    /// stored config, finiteness): one line per file, exit 1 if any fails.
    #[command(
        after_help = "Example:\n  pstl verify data/ntu60_xsub.h5 runs/ntu60/checkpoint*.safetensors"
    )]
    Verify(VerifyArgs),
}

/// `pstl show`
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// HDF5 store.
    #[arg(long)]
    pub store: PathBuf,
    /// Sample index within the split.
    #[arg(long, default_value_t = 0)]
    pub index: usize,
    /// Split: train or test.
    #[arg(long, default_value = "train")]
    pub split: String,
    /// Output folder (sheet.png, views.gif, marks.json).
    #[arg(long)]
    pub out: PathBuf,
    /// Draw the views with the random draws of this pretraining step (seed: run.seed).
    #[arg(long, default_value_t = 0)]
    pub step: u64,
    /// Frames drawn on the sheet (evenly spaced; the GIF has them all).
    #[arg(long, default_value_t = 6)]
    pub frames: usize,
    #[command(flatten)]
    /// Config (augmentations, masks, run.seed).
    pub cfg: ConfigOpts,
}

/// `pstl verify`
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// HDF5 stores, checkpoints, encoders and exports (`.safetensors`, `.pt`), in any mix.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

/// `pstl completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// Shell (bash, zsh, fish, elvish, powershell) or `man` for the roff man page.
    #[arg(value_enum)]
    pub shell: CompletionTarget,
}

/// Targets of `pstl completions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompletionTarget {
    Bash,
    Zsh,
    Fish,
    Elvish,
    Powershell,
    /// The man page (roff).
    Man,
}

/// NTU benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NtuBenchmarkArg {
    /// Cross-subject.
    Xsub,
    /// Cross-view (NTU-60).
    Xview,
    /// Cross-setup (NTU-120).
    Xset,
}

/// NTU datasets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NtuDatasetArg {
    /// NTU RGB+D 60 (setups 1-17).
    Ntu60,
    /// NTU RGB+D 120.
    Ntu120,
}

/// The lower-case name of a value enum's variant (as typed on the command line).
pub fn value_name<T: ValueEnum>(v: &T) -> String {
    v.to_possible_value()
        .map(|p| p.get_name().to_string())
        .unwrap_or_default()
}

/// `pstl report`
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Run folders (searched recursively for results.json) or results files.
    #[arg(default_value = "runs")]
    pub dirs: Vec<PathBuf>,
    /// Write the Markdown here (default: standard output).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `pstl prepare ...`
#[derive(Debug, Subcommand)]
pub enum PrepareCmd {
    /// NTU RGB+D 60/120 `.skeleton` files: split by the official ids, AimCLR's frame-50 normalisation.
    #[command(
        after_help = "Example:\n  pstl prepare ntu --raw nturgb+d_skeletons --out data/ntu60_xsub.h5 --benchmark xsub"
    )]
    Ntu {
        /// Folder with the .skeleton files.
        #[arg(long)]
        raw: PathBuf,
        /// Output HDF5 store.
        #[arg(long)]
        out: PathBuf,
        /// Benchmark: xsub, xview (NTU-60) or xset (NTU-120).
        #[arg(long, value_enum)]
        benchmark: NtuBenchmarkArg,
        /// Dataset: ntu60 (setups 1-17) or ntu120.
        #[arg(long, value_enum, default_value_t = NtuDatasetArg::Ntu60)]
        dataset: NtuDatasetArg,
        /// File of sample names to exclude (the official missing-skeleton lists).
        #[arg(long)]
        ignore: Option<PathBuf>,
        /// Frames after normalisation.
        #[arg(long, default_value_t = 50)]
        frames: usize,
        /// Report malformed files and skip them instead of stopping.
        #[arg(long)]
        skip_bad: bool,
    },
    /// PKU-MMD: cut action instances from the skeleton videos by their label files.
    #[command(
        after_help = "Example:\n  pstl prepare pku --skeletons PKU/skeleton --labels PKU/label --split PKU/cross-subject.txt --out data/pku1.h5"
    )]
    Pku {
        /// Folder of skeleton .txt files (one frame per line, 150 values).
        #[arg(long)]
        skeletons: PathBuf,
        /// Folder of label .txt files (class,start,end,confidence).
        #[arg(long)]
        labels: PathBuf,
        /// The official split file (training / validation video ids).
        #[arg(long)]
        split: PathBuf,
        /// Output HDF5 store.
        #[arg(long)]
        out: PathBuf,
        /// PKU-MMD part (1 or 2).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
        part: u8,
        /// Frames after normalisation.
        #[arg(long, default_value_t = 50)]
        frames: usize,
        /// Report malformed files and skip them instead of stopping.
        #[arg(long)]
        skip_bad: bool,
    },
    /// Import AimCLR/PSTL `*_position.npy` + label `.pkl` files.
    #[command(
        after_help = "Example:\n  pstl prepare npy --train-data train_position.npy --train-labels train_label.pkl --test-data val_position.npy --test-labels val_label.pkl --out data/ntu60_xsub.h5"
    )]
    Npy {
        /// Training data (N, 3, T, 25, M) float32 .npy.
        #[arg(long)]
        train_data: PathBuf,
        /// Training labels: pickle of (names, labels).
        #[arg(long)]
        train_labels: PathBuf,
        /// Test data .npy.
        #[arg(long)]
        test_data: PathBuf,
        /// Test labels .pkl.
        #[arg(long)]
        test_labels: PathBuf,
        /// Output HDF5 store.
        #[arg(long)]
        out: PathBuf,
        /// Dataset name stored in the file (e.g. ntu60).
        #[arg(long, default_value = "ntu60")]
        dataset: String,
        /// Benchmark name stored in the file (e.g. xsub).
        #[arg(long, default_value = "xsub")]
        benchmark: String,
    },
}

/// `pstl synth`
#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Output HDF5 store.
    #[arg(long)]
    pub out: PathBuf,
    /// Number of action classes.
    #[arg(long, default_value_t = 10)]
    pub classes: usize,
    /// Training samples per class.
    #[arg(long, default_value_t = 200)]
    pub train_per_class: usize,
    /// Test samples per class.
    #[arg(long, default_value_t = 50)]
    pub test_per_class: usize,
}

/// `pstl pretrain`
#[derive(Debug, Args)]
pub struct PretrainArgs {
    #[command(flatten)]
    /// Config.
    pub cfg: ConfigOpts,
    /// Continue from runs/<name>/checkpoint.safetensors (also automatic when it exists).
    #[arg(long)]
    pub resume: bool,
    /// Start over even if the run directory has a checkpoint.
    #[arg(long, conflicts_with = "resume")]
    pub fresh: bool,
    /// Initialise the encoder from a checkpoint (ours, official .pt or safetensors).
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Stop after N epochs of this invocation (checkpointed; resume later).
    #[arg(long, value_name = "N")]
    pub stop_after: Option<usize>,
}

/// Downstream protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    /// Frozen encoder + linear classifier.
    Linear,
    /// Cosine k-nearest neighbours on features.
    Knn,
    /// Encoder and classifier trained end to end.
    Finetune,
    /// Fine-tune on 1% / 10% of the labels per class.
    Semi,
    /// Linear + fine-tune on a dataset other than the pretraining one.
    Transfer,
    /// Accuracy with joints missing at test time (body parts, k random joints).
    Robust,
    /// Weighted sum of per-stream logits or softmax scores (eval.ensemble_mode).
    Ensemble,
    /// 2-D t-SNE of the test features coloured by class (pretrained beside random
    /// init), with silhouette scores.
    Tsne,
}

/// `pstl eval`
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Protocol.
    #[arg(value_enum)]
    pub protocol: Protocol,
    #[command(flatten)]
    /// Config.
    pub cfg: ConfigOpts,
    /// Pretrained encoder (runs/<name>/encoder.safetensors, an official .pt, ...).
    /// Omit for a randomly initialised encoder (a baseline).
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// `robust`: a classifier.safetensors from `linear` or `finetune`.
    #[arg(long)]
    pub classifier: Option<PathBuf>,
    /// `robust`: also remove these body parts together, e.g. `--parts left_arm,right_leg`
    /// (repeatable; parts: left_arm, right_arm, left_leg, right_leg, trunk).
    #[arg(long, value_name = "PART,PART")]
    pub parts: Vec<String>,
    /// `ensemble`: scores.npy of each stream (joint, motion, bone).
    #[arg(long, num_args = 1..)]
    pub scores: Vec<PathBuf>,
    /// `ensemble`: one weight per scores file (default: eval.ensemble_weights).
    #[arg(long, num_args = 1.., value_delimiter = ',')]
    pub weights: Vec<f64>,
    /// Output folder (default: runs/<name>/eval-<protocol>).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `pstl embed`
#[derive(Debug, Args)]
pub struct EmbedArgs {
    /// Encoder checkpoint (ours, an official .pt state_dict, or safetensors).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Input .npy (N, 3, T, 25, M) float32.
    #[arg(long)]
    pub input: PathBuf,
    /// Output .npy (N, 256).
    #[arg(long)]
    pub output: PathBuf,
    /// Stream computed from the joint input.
    #[arg(long, value_enum, default_value = "joint")]
    pub stream: Stream,
    /// Joints to remove as CSM does, 0-based, comma separated (duplicates allowed).
    #[arg(long, value_delimiter = ',')]
    pub drop_joints: Vec<usize>,
    /// Batch size.
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
    #[command(flatten)]
    /// Config (model shape).
    pub cfg: ConfigOpts,
}

/// `pstl export`
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Encoder checkpoint.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Write a traced TorchScript module here.
    #[arg(long)]
    pub torchscript: Option<PathBuf>,
    /// Write a hub directory here (model.safetensors, config.json, README.md model card)
    /// for `pstl_torch.from_pretrained(DIR)`.
    #[arg(long, value_name = "DIR")]
    pub hub: Option<PathBuf>,
    /// `--hub`: results.json files for the model card (default: those beside the checkpoint).
    #[arg(long, value_name = "FILE")]
    pub results: Vec<PathBuf>,
    /// Write safetensors with the official PyTorch state_dict keys here.
    #[arg(long)]
    pub safetensors: Option<PathBuf>,
    /// Write a `torch.save` state_dict (official keys) here, for `torch.load`.
    #[arg(long)]
    pub pt: Option<PathBuf>,
    /// Add a classifier (classifier.safetensors from `eval linear|finetune`): logits instead of features.
    #[arg(long)]
    pub classifier: Option<PathBuf>,
    /// Frames fixed by tracing.
    #[arg(long, default_value_t = 50)]
    pub frames: i64,
    /// Persons fixed by tracing.
    #[arg(long, default_value_t = 2)]
    pub persons: i64,
    /// Stream: the traced module takes joints and computes this stream inside.
    #[arg(long, value_enum, default_value = "joint")]
    pub stream: Stream,
    #[command(flatten)]
    /// Config (model shape).
    pub cfg: ConfigOpts,
}

/// `pstl bench`
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    /// Config (model size, batch size).
    pub cfg: ConfigOpts,
    /// Timed steps (after the warm-up steps).
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// Untimed warm-up steps.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Also write one step (weights, views, losses) for `benches/pytorch_step.py --check`.
    #[arg(long, value_name = "FILE.safetensors")]
    pub dump: Option<PathBuf>,
    /// Benchmark the loader on `data.path` instead (shuffled, from memory and from disk).
    #[arg(long)]
    pub loader: bool,
    /// Epochs per loader measurement.
    #[arg(long, default_value_t = 3)]
    pub epochs: usize,
    /// Time the step by phase instead: views, each encoder block, pooling, projector,
    /// losses, backward, optimizer (synchronised at each boundary).
    #[arg(long, conflicts_with_all = ["loader", "epoch", "kernels"])]
    pub phases: bool,
    /// Profile `--steps` steps instead (libtorch's Kineto profiler): time by kernel
    /// family (CUDA kernel time; CPU operator self time on CPU).
    #[arg(long, conflicts_with_all = ["loader", "epoch"])]
    pub kernels: bool,
    /// Train one epoch of `data.path` through the loader instead (after `--warmup`
    /// batches): samples/s and the share of time spent waiting for the loader.
    #[arg(long, conflicts_with = "loader")]
    pub epoch: bool,
}

/// Resolve a config with the global overrides applied; a bad value names the option
/// it came from (`--set k=v`, `--device`, `--threads`, `--seed`).
pub fn resolve_config(opts: &ConfigOpts, global: &GlobalOpts) -> Result<Config> {
    let mut overrides: Vec<(String, String)> = opts
        .overrides
        .iter()
        .map(|ov| (format!("--set {ov}"), ov.clone()))
        .collect();
    if let Some(d) = &global.device {
        let quoted = toml::Value::String(d.clone()).to_string();
        overrides.push((format!("--device {d}"), format!("run.device={quoted}")));
    }
    if let Some(t) = global.threads {
        overrides.push((format!("--threads {t}"), format!("run.threads={t}")));
    }
    if let Some(s) = global.seed {
        overrides.push((format!("--seed {s}"), format!("run.seed={s}")));
    }
    if let Some(d) = &global.runs_dir {
        let d = toml::Value::String(d.display().to_string());
        overrides.push((
            format!("--runs-dir / PSTL_RUNS_DIR {d}"),
            format!("run.dir={d}"),
        ));
    }
    Ok(Config::load_labelled(opts.config.as_deref(), &overrides)?)
}

/// An error and its causes on one line, `outer: cause: ...`, leaving out a cause whose
/// text the line holds already (OS and HDF5 errors that quote their source).
pub fn error_chain(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}
