//! `pstl report`: the `results.json` files of a set of runs gathered into Markdown
//! tables in the layout of the paper's (linear, fine-tune, semi-supervised, k-NN,
//! transfer, missing joints; NTU-60 xsub/xview, NTU-120 xsub/xset, PKU-MMD I), each
//! cell beside the paper's published figure and the difference.
//!
//! Trained protocols contribute `top1_best` (best epoch, per-sample), the figure the
//! authors report; several runs of one cell (seeds) are shown as mean ± sd.

use anyhow::{Context, Result};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The paper's benchmark columns: (dataset, benchmark) in the store's attributes, title.
pub const COLUMNS: [(&str, &str, &str); 5] = [
    ("ntu60", "xsub", "NTU-60 xsub"),
    ("ntu60", "xview", "NTU-60 xview"),
    ("ntu120", "xsub", "NTU-120 xsub"),
    ("ntu120", "xset", "NTU-120 xset"),
    ("pku1", "xsub", "PKU-MMD I"),
];

/// Published top-1 (%) of PSTL (`../shared/pstl-method.md` §7) for a table row and a
/// column. The fine-tune 3-stream figures are listed there without columns; they are
/// read in the order of the paper's other NTU tables (NTU-60 xsub/xview, NTU-120
/// xsub/xset).
pub fn published(section: &str, row: &str, column: &str) -> Option<f64> {
    let col = COLUMNS.iter().position(|c| c.2 == column)?;
    let table: [Option<f64>; 5] = match (section, row) {
        ("linear", "joint") => [Some(77.3), Some(81.8), None, Some(67.7), Some(88.4)],
        ("linear", "3-stream") => [Some(79.1), Some(83.8), None, Some(70.3), Some(89.2)],
        ("finetune", "3-stream") => [Some(87.1), Some(93.9), Some(81.3), Some(82.6), None],
        _ => return None,
    };
    table[col]
}

/// One figure of one run.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Table: linear, finetune, semi, knn, transfer, missing.
    pub section: String,
    /// Row within the table (stream, label fraction, missing part, ...).
    pub row: String,
    /// Column title (a paper benchmark, or `dataset benchmark` for others).
    pub column: String,
    /// Top-1 (%).
    pub value: f64,
    /// The results file.
    pub source: PathBuf,
}

/// Every `results.json` under `dirs` (recursively), sorted.
pub fn find_results(dirs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
        let entries =
            std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
        for e in entries {
            let path = e
                .with_context(|| format!("reading {}", dir.display()))?
                .path();
            if path.is_dir() {
                walk(&path, out)?;
            } else if path.file_name().is_some_and(|n| n == "results.json") {
                out.push(path);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    for d in dirs {
        if d.is_file() {
            out.push(d.clone());
        } else {
            walk(d, &mut out)?;
        }
    }
    out.sort();
    Ok(out)
}

fn column_of(v: &Value) -> String {
    let b = &v["benchmark"];
    let (ds, bm) = (
        b["dataset"].as_str().unwrap_or("unknown"),
        b["benchmark"].as_str().unwrap_or("?"),
    );
    COLUMNS
        .iter()
        .find(|c| c.0 == ds && c.1 == bm)
        .map_or_else(|| format!("{ds} {bm}"), |c| c.2.to_string())
}

/// The entries of one results object (none for files that are not protocol results,
/// e.g. the summary `pretrain` writes).
pub fn entries_of(v: &Value, source: &Path) -> Vec<Entry> {
    let Some(protocol) = v["protocol"].as_str() else {
        return Vec::new();
    };
    let stream = v["stream"].as_str().unwrap_or("joint");
    let random = if v.get("checkpoint").is_some_and(Value::is_null) && protocol != "ensemble" {
        " (random init)"
    } else {
        ""
    };
    let mut c = Collector {
        column: column_of(v),
        random,
        source,
        out: Vec::new(),
    };
    match protocol {
        "linear" | "finetune" => c.push(protocol, stream.to_string(), &v["top1_best"]),
        "semi" => c.semi(v, stream),
        "knn" => c.knn(v, stream),
        "transfer" => c.transfer(v, stream),
        "robust" => c.missing(v, stream),
        "ensemble" => c.ensemble(v),
        _ => {}
    }
    c.out
}

/// Gathers the entries of one results file, all in its column.
struct Collector<'a> {
    column: String,
    /// Row suffix of runs from a random initialisation.
    random: &'static str,
    source: &'a Path,
    out: Vec<Entry>,
}

impl Collector<'_> {
    /// Adds `x` (when it is a number) to `section`, row `row`.
    fn push(&mut self, section: &str, row: String, x: &Value) {
        if let Some(value) = x.as_f64() {
            self.out.push(Entry {
                section: section.to_string(),
                row: format!("{row}{}", self.random),
                column: self.column.clone(),
                value,
                source: self.source.to_path_buf(),
            });
        }
    }

    /// `semi<pct>.top1_best`, one row per label fraction.
    fn semi(&mut self, v: &Value, stream: &str) {
        let runs = v.as_object().into_iter().flatten();
        for (k, x) in runs.filter(|(k, _)| k.starts_with("semi")) {
            let pct = k.trim_start_matches("semi");
            self.push("semi", format!("{stream}, {pct}% labels"), &x["top1_best"]);
        }
    }

    /// `top1_k<k>`, one row per k.
    fn knn(&mut self, v: &Value, stream: &str) {
        for (k, x) in v.as_object().into_iter().flatten() {
            if let Some(kk) = k.strip_prefix("top1_k") {
                self.push("knn", format!("{stream}, k={kk}"), x);
            }
        }
    }

    /// The linear and fine-tune results of a transfer run.
    fn transfer(&mut self, v: &Value, stream: &str) {
        self.push(
            "transfer",
            format!("linear, {stream}"),
            &v["linear"]["top1_best"],
        );
        self.push(
            "transfer",
            format!("fine-tune, {stream}"),
            &v["finetune"]["top1_best"],
        );
    }

    /// A `robust` run: nothing missing, each body part (set), k random joints.
    fn missing(&mut self, v: &Value, stream: &str) {
        self.push(
            "missing",
            format!("{stream}, none missing"),
            &v["top1_full"],
        );
        for key in ["parts", "part_sets"] {
            for (part, x) in v[key].as_object().into_iter().flatten() {
                self.push("missing", format!("{stream}, {part}"), x);
            }
        }
        for (k, x) in v["random_k"].as_object().into_iter().flatten() {
            self.push("missing", format!("{stream}, {k} random joints"), x);
        }
    }

    /// The 3-stream row of the protocol the ensembled runs came from.
    fn ensemble(&mut self, v: &Value) {
        let from = v["sources"][0]["protocol"].as_str().unwrap_or("linear");
        let mode = v["mode"].as_str().unwrap_or("softmax");
        let section = if from == "finetune" {
            "finetune"
        } else {
            "linear"
        };
        // An ensemble is never a random-init run: the row carries no suffix.
        self.push(section, format!("3-stream ({mode})"), &v["top1"]);
    }
}

const SECTIONS: [(&str, &str); 6] = [
    ("linear", "Linear evaluation"),
    ("finetune", "Fine-tune"),
    (
        "semi",
        "Semi-supervised (fine-tune on a fraction of the labels)",
    ),
    ("knn", "k-NN (cosine, frozen features)"),
    (
        "transfer",
        "Transfer (encoder pretrained on another dataset)",
    ),
    (
        "missing",
        "Missing joints at test time (practical evaluation)",
    ),
];

fn mean_sd(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, var.sqrt())
}

fn cell(values: Option<&Vec<f64>>, paper: Option<f64>) -> String {
    let ours = values.map(|xs| {
        let (m, sd) = mean_sd(xs);
        if xs.len() > 1 {
            (format!("{m:.2} ± {sd:.2} (n={})", xs.len()), m)
        } else {
            (format!("{m:.2}"), m)
        }
    });
    match (ours, paper) {
        (Some((o, m)), Some(p)) => format!("{o} / {p:.1} ({:+.2})", m - p),
        (Some((o, _)), None) => format!("{o} / –"),
        (None, Some(p)) => format!("– / {p:.1}"),
        (None, None) => "–".to_string(),
    }
}

/// Paper order of the rows: joint, motion, bone, 3-stream; within a stream nothing
/// missing, the body parts, then k random joints by k.
fn row_order(row: &str) -> (u8, u8, u64, String) {
    let stream = ["joint", "motion", "bone", "3-stream"]
        .iter()
        .position(|s| row.starts_with(s))
        .unwrap_or(4) as u8;
    let (kind, k) = if row.contains("none missing") {
        (0, 0)
    } else if let Some(k) = row
        .strip_suffix(" random joints")
        .and_then(|r| r.rsplit(' ').next())
        .and_then(|k| k.parse().ok())
    {
        (2, k)
    } else {
        (1, 0)
    };
    (stream, kind, k, row.to_string())
}

/// The Markdown report of `entries`.
pub fn render(entries: &[Entry]) -> String {
    let mut md = String::from(
        "# PSTL: results against the paper\n\n\
         Cells: ours / paper (ours − paper), top-1 % on the test split. Ours is the best \
         epoch's per-sample accuracy (`top1_best`, what the authors report); several runs \
         of a cell are shown as mean ± sd (n). Paper: Zhou et al., AAAI 2023, as listed in \
         `pstl-method.md` §7; – where no figure is listed. 3-stream rows name how the \
         streams were combined (`eval.ensemble_mode`).\n",
    );
    let mut extra: Vec<String> = entries
        .iter()
        .map(|e| e.column.clone())
        .filter(|c| !COLUMNS.iter().any(|p| p.2 == c))
        .collect();
    extra.sort();
    extra.dedup();
    let columns: Vec<String> = COLUMNS
        .iter()
        .map(|c| c.2.to_string())
        .chain(extra)
        .collect();
    for (section, title) in SECTIONS {
        let mut cells: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
        for e in entries.iter().filter(|e| e.section == section) {
            cells
                .entry((e.row.clone(), e.column.clone()))
                .or_default()
                .push(e.value);
        }
        let mut rows: Vec<String> = cells.keys().map(|(r, _)| r.clone()).collect();
        for fixed in ["joint", "3-stream"] {
            let has_paper = columns
                .iter()
                .any(|c| published(section, fixed, c).is_some());
            let present = rows
                .iter()
                .any(|r| !r.contains("random init") && r.split(" (").next() == Some(fixed));
            if has_paper && !present {
                rows.push(fixed.to_string());
            }
        }
        rows.sort_by_key(|r| row_order(r));
        rows.dedup();
        if rows.is_empty() {
            continue;
        }
        let _ = write!(md, "\n## {title}\n\n| | {} |\n|---|", columns.join(" | "));
        md.push_str(&"---|".repeat(columns.len()));
        md.push('\n');
        for row in &rows {
            let paper_row = row.split(" (").next().unwrap_or(row);
            let line: Vec<String> = columns
                .iter()
                .map(|c| {
                    let paper = if row.contains("random init") {
                        None
                    } else {
                        published(section, paper_row, c)
                    };
                    cell(cells.get(&(row.clone(), c.clone())), paper)
                })
                .collect();
            let _ = writeln!(md, "| {row} | {} |", line.join(" | "));
        }
    }
    let mut sources: Vec<&Path> = entries.iter().map(|e| e.source.as_path()).collect();
    sources.dedup();
    let _ = write!(md, "\nSources ({} files):\n\n", sources.len());
    for s in sources {
        let _ = writeln!(md, "- `{}`", s.display());
    }
    md
}

/// Read every results file under `dirs` and render the report.
pub fn report(dirs: &[PathBuf]) -> Result<String> {
    let mut entries = Vec::new();
    for path in find_results(dirs)? {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let v: Value = serde_json::from_str(&text)
            .with_context(|| format!("{}: not valid JSON", path.display()))?;
        entries.extend(entries_of(&v, &path));
    }
    if entries.is_empty() {
        anyhow::bail!(
            "no protocol results.json under {}",
            dirs.iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(render(&entries))
}
