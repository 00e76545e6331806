//! PNG output of `plot`: valid files of the right size, atomic writes, errors.

use std::path::Path;

use pstl::plot::{bar_plot, confusion_plot, line_plot};

/// `(name, points)` curves as `line_plot` takes them.
type Series = Vec<(String, Vec<(f64, f64)>)>;

const PNG_MAGIC: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];

/// Checks the PNG signature and returns the IHDR width and height.
fn png_size(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap();
    assert!(bytes.len() > 33, "{} is too short", path.display());
    assert_eq!(bytes[..8], PNG_MAGIC, "{} is not a PNG", path.display());
    assert_eq!(&bytes[12..16], b"IHDR");
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    (be(&bytes[16..20]), be(&bytes[20..24]))
}

/// Names of the files in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn curves() -> Series {
    let train = (0..50).map(|e| (e as f64, 2.0 * (-(e as f64) / 10.0).exp() + 0.1));
    let val = (0..5).map(|e| (e as f64 * 10.0, 1.5 * (-(e as f64) / 2.0).exp() + 0.2));
    vec![
        ("train".to_string(), train.collect()),
        ("val".to_string(), val.collect()),
    ]
}

fn confusion(n: usize) -> Vec<Vec<u64>> {
    (0..n)
        .map(|t| {
            (0..n)
                .map(|p| if t == p { 20 } else { ((t + 2 * p) % 5) as u64 })
                .collect()
        })
        .collect()
}

#[test]
fn line_plot_writes_png_and_no_temp() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("loss.png");
    line_plot(&path, "loss", "epoch", "loss", &curves(), false).unwrap();
    assert_eq!(png_size(&path), (800, 500));
    assert_eq!(listing(dir.path()), ["loss.png"]);
}

#[test]
fn line_plot_log_axis() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("loss_log.png");
    line_plot(&path, "loss", "epoch", "loss", &curves(), true).unwrap();
    assert_eq!(png_size(&path), (800, 500));
    // Non-positive values fall back to a linear axis instead of failing.
    let mixed = vec![("s".to_string(), vec![(0.0, -1.0), (1.0, 0.0), (2.0, 3.0)])];
    line_plot(&path, "mixed", "x", "y", &mixed, true).unwrap();
    assert_eq!(png_size(&path), (800, 500));
    assert_eq!(listing(dir.path()), ["loss_log.png"]);
}

#[test]
fn line_plot_degenerate_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, Series)> = vec![
        ("none", vec![]),
        ("empty", vec![("e".to_string(), vec![])]),
        ("single", vec![("one".to_string(), vec![(3.0, 0.5)])]),
        (
            "constant",
            vec![("c".to_string(), vec![(0.0, 2.0), (1.0, 2.0), (2.0, 2.0)])],
        ),
        (
            "zeros",
            vec![("z".to_string(), vec![(0.0, 0.0), (0.0, 0.0)])],
        ),
        (
            "non_finite",
            vec![(
                "nan".to_string(),
                vec![
                    (0.0, 1.0),
                    (1.0, f64::NAN),
                    (f64::INFINITY, 2.0),
                    (3.0, f64::NEG_INFINITY),
                    (4.0, 0.5),
                ],
            )],
        ),
        (
            "all_nan",
            vec![("n".to_string(), vec![(0.0, f64::NAN), (f64::NAN, 1.0)])],
        ),
        (
            "unnamed",
            vec![(String::new(), vec![(0.0, 1.0), (1.0, 2.0)])],
        ),
        (
            "many_series",
            (0..14)
                .map(|i| {
                    (
                        format!("s{i}"),
                        vec![(0.0, i as f64), (1.0, i as f64 + 1.0)],
                    )
                })
                .collect(),
        ),
    ];
    for (name, series) in &cases {
        for log_y in [false, true] {
            let path = dir.path().join(format!("{name}_{log_y}.png"));
            line_plot(&path, name, "x", "y", series, log_y)
                .unwrap_or_else(|e| panic!("{name} (log_y={log_y}): {e:#}"));
            assert_eq!(png_size(&path), (800, 500), "{name}");
        }
    }
    assert!(listing(dir.path()).iter().all(|n| !n.contains(".tmp")));
}

#[test]
fn bar_plot_writes_png() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bars.png");
    let bars: Vec<(String, f64)> = ["drink water", "eat meal", "brush teeth", "sit down"]
        .iter()
        .enumerate()
        .map(|(i, n)| (n.to_string(), 0.5 + 0.1 * i as f64))
        .collect();
    bar_plot(&path, "per-class accuracy", "accuracy", &bars).unwrap();
    assert_eq!(png_size(&path), (800, 500));
    assert_eq!(listing(dir.path()), ["bars.png"]);
}

#[test]
fn bar_plot_degenerate_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let many: Vec<(String, f64)> = (0..120)
        .map(|i| {
            (
                format!("A{:03} long action name", i + 1),
                (i % 7) as f64 - 2.0,
            )
        })
        .collect();
    let cases: Vec<(&str, Vec<(String, f64)>)> = vec![
        ("none", vec![]),
        ("single", vec![("a".to_string(), 0.7)]),
        ("zero", vec![("a".to_string(), 0.0), ("b".to_string(), 0.0)]),
        (
            "negative",
            vec![("a".to_string(), -1.0), ("b".to_string(), -3.0)],
        ),
        (
            "non_finite",
            vec![
                ("a".to_string(), f64::NAN),
                ("b".to_string(), 1.0),
                ("c".to_string(), f64::INFINITY),
            ],
        ),
        ("many", many),
    ];
    for (name, bars) in &cases {
        let path = dir.path().join(format!("{name}.png"));
        bar_plot(&path, name, "y", bars).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        assert_eq!(png_size(&path), (800, 500), "{name}");
    }
    assert!(listing(dir.path()).iter().all(|n| !n.contains(".tmp")));
}

#[test]
fn confusion_plot_writes_png() {
    let dir = tempfile::tempdir().unwrap();
    for (n, normalise) in [(5, false), (5, true), (20, true), (60, true)] {
        let path = dir.path().join(format!("cm_{n}_{normalise}.png"));
        confusion_plot(&path, "confusion", &confusion(n), normalise).unwrap();
        assert_eq!(png_size(&path), (700, 700));
    }
    assert_eq!(listing(dir.path()).len(), 4);
    assert!(listing(dir.path()).iter().all(|n| !n.contains(".tmp")));
}

#[test]
fn confusion_plot_degenerate_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, Vec<Vec<u64>>)> = vec![
        ("none", vec![]),
        ("empty_rows", vec![vec![], vec![]]),
        ("zeros", vec![vec![0, 0], vec![0, 0]]),
        ("one", vec![vec![7]]),
        ("ragged", vec![vec![1, 2, 3], vec![4], vec![0, 5]]),
    ];
    for (name, m) in &cases {
        for normalise in [false, true] {
            let path = dir.path().join(format!("{name}_{normalise}.png"));
            confusion_plot(&path, name, m, normalise).unwrap_or_else(|e| panic!("{name}: {e:#}"));
            assert_eq!(png_size(&path), (700, 700), "{name}");
        }
    }
}

#[test]
fn plot_replaces_existing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("loss.png");
    std::fs::write(&path, b"old contents").unwrap();
    line_plot(&path, "loss", "epoch", "loss", &curves(), false).unwrap();
    assert_eq!(png_size(&path), (800, 500));
    assert_eq!(listing(dir.path()), ["loss.png"]);
}

#[test]
fn unwritable_path_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no/such/folder/plot.png");
    assert!(line_plot(&missing, "t", "x", "y", &curves(), false).is_err());
    assert!(bar_plot(&missing, "t", "y", &[("a".to_string(), 1.0)]).is_err());
    assert!(confusion_plot(&missing, "t", &confusion(3), true).is_err());
    assert!(!missing.exists());
    assert!(listing(dir.path()).is_empty());
}

#[test]
fn failed_rename_removes_temp_file() {
    // Rendering succeeds but the target is a non-empty folder, so the final rename
    // fails; the temporary file must not be left behind.
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("taken.png");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("keep"), b"x").unwrap();
    assert!(line_plot(&target, "t", "x", "y", &curves(), false).is_err());
    assert!(bar_plot(&target, "t", "y", &[("a".to_string(), 1.0)]).is_err());
    assert!(confusion_plot(&target, "t", &confusion(3), false).is_err());
    assert_eq!(listing(dir.path()), ["taken.png"]);
    assert!(target.join("keep").exists());
}

#[test]
fn class_names_label_confusion_matrices_and_per_class_tables() {
    use pstl::data::classes::class_names;
    let ntu = class_names("ntu60", 60);
    assert_eq!(
        (ntu[0].as_str(), ntu[59].as_str()),
        ("drink water", "walking apart from each other")
    );
    assert_eq!(class_names("ntu120", 120)[119], "finger-guessing game");
    let synth: Vec<String> = pstl::data::synth::class_names(10)
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(class_names("synthetic", 10), synth);
    assert_eq!(class_names("pku1", 3), ["class 0", "class 1", "class 2"]);

    let dir = tempfile::tempdir().unwrap();
    let names = class_names("ntu60", 5);
    let (plain, named) = (dir.path().join("plain.png"), dir.path().join("named.png"));
    confusion_plot(&plain, "confusion", &confusion(5), true).unwrap();
    pstl::plot::confusion_plot_named(&named, "confusion", &confusion(5), true, &names).unwrap();
    assert_eq!(png_size(&named), (700, 700));
    assert_ne!(
        std::fs::read(&plain).unwrap(),
        std::fs::read(&named).unwrap()
    );

    // Through the evaluation output: 3 classes, logits pick class 0 for everything.
    let out = pstl::eval::EvalOutput::new(&dir.path().join("eval"))
        .unwrap()
        .with_class_names(class_names("synthetic", 3));
    let logits = tch::Tensor::from_slice(&[1.0f32, 0.0, 0.0].repeat(4)).view([4, 3]);
    let y = tch::Tensor::from_slice(&[0i64, 0, 1, 2]);
    out.write_scores("", &logits, &y, 3).unwrap();
    let table = std::fs::read_to_string(dir.path().join("eval/per_class.md")).unwrap();
    let s = &synth;
    assert!(
        table.contains(&format!("| 0 | {} | 2 | 100.00 |", s[0])),
        "{table}"
    );
    assert!(
        table.contains(&format!("| 1 | {} | 1 | 0.00 |", s[1])),
        "{table}"
    );
    assert!(dir.path().join("eval/confusion.png").exists());
}
