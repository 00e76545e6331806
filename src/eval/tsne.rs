//! `tsne`: a 2-D t-SNE map of the test features (Barnes-Hut, the `bhtsne` crate) of the
//! pretrained encoder beside a randomly initialised one (`run.seed`), drawn coloured
//! by class (`tsne.png`), the points in `tsne.csv`, and the silhouette score of the
//! classes in the feature space and in the map (`results.json`). Features are
//! L2-normalised first, as the k-NN protocol compares them. Deterministic per
//! seed: the map starts from `run.seed`'s draw, not from the crate's own RNG.

use super::{base_json, check_finite, features, load_data, load_encoder, EvalData, EvalOutput};
use crate::config::Config;
use crate::model::{Layout, StGcn};
use crate::rng::PstlRng;
use crate::viz::scatter::{write_scatter, ScatterPanel};
use anyhow::{bail, Result};
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Perplexity (capped at `(n - 1) / 3` for small sets), Barnes-Hut angle, iterations.
const PERPLEXITY: f32 = 30.0;
const THETA: f32 = 0.5;
const EPOCHS: usize = 1000;

/// A t-SNE map of rows `x` (`n` x `d`, row-major), from a seeded start.
pub fn tsne_2d(x: &[f32], n: usize, d: usize, seed: u64) -> Result<Vec<f32>> {
    if n < 4 || x.len() != n * d {
        bail!("t-SNE needs at least 4 points of equal length (got {n})");
    }
    let perplexity = PERPLEXITY.min(((n - 1) / 3) as f32);
    let rows: Vec<&[f32]> = x.chunks(d).collect();
    let mut rng = PstlRng::seed_from_u64(seed);
    let normal = Normal::new(0.0f32, 1e-4).map_err(|e| anyhow::anyhow!("{e}"))?;
    let init: Vec<f32> = (0..2 * n).map(|_| normal.sample(&mut rng)).collect();
    let mut t = bhtsne::tSNE::<f32, &[f32], 2>::new(&rows);
    t.perplexity(perplexity)
        .epochs(EPOCHS)
        .initial_embedding(init)
        .barnes_hut(THETA, |a, b| {
            a.iter()
                .zip(b.iter())
                .map(|(p, q)| (p - q) * (p - q))
                .sum::<f32>()
                .sqrt()
        });
    Ok(t.embedding())
}

/// Mean silhouette of the classes `y` (0-based) for points `x` (`n` x `d`), with
/// Euclidean distances; a point alone in its class scores 0.
pub fn silhouette(x: &Tensor, y: &Tensor) -> f64 {
    let x = x.to_kind(Kind::Double);
    let n = x.size()[0];
    let k = y.max().int64_value(&[]) + 1;
    let dist = Tensor::cdist(&x, &x, 2.0, None::<i64>);
    let onehot = y.one_hot(k).to_kind(Kind::Double); // (n, k)
    let counts = onehot.sum_dim_intlist([0i64].as_slice(), false, Kind::Double); // (k,)
    let sums = dist.matmul(&onehot); // (n, k): distance to each class
    let own_count = onehot.matmul(&counts.unsqueeze(1)).squeeze_dim(1); // (n,)
    let own_sum = (&sums * &onehot).sum_dim_intlist([1i64].as_slice(), false, Kind::Double);
    let a = &own_sum / (&own_count - 1.0).clamp_min(1.0);
    let other_mean = &sums / counts.clamp_min(1.0).unsqueeze(0);
    let masked = other_mean.masked_fill(&onehot.to_kind(Kind::Bool), f64::INFINITY);
    let masked = masked.masked_fill(
        &counts.eq(0.0).unsqueeze(0).expand([n, k], false),
        f64::INFINITY,
    );
    let b = masked.min_dim(1, false).0;
    let s = (&b - &a) / a.maximum(&b).clamp_min(1e-12);
    let s = s.where_self(
        &own_count.gt(1.0).logical_and(&b.isfinite()),
        &s.zeros_like(),
    );
    s.mean(Kind::Double).double_value(&[])
}

/// Row-major host copy of a 2-D tensor.
fn host(t: &Tensor) -> Result<Vec<f32>> {
    Ok(Vec::try_from(
        t.to_device(Device::Cpu)
            .to_kind(Kind::Float)
            .contiguous()
            .flatten(0, -1),
    )?)
}

/// The `tsne` protocol: maps of the random-init encoder and (with `ckpt`) the
/// pretrained one, side by side.
pub fn tsne(cfg: &Config, ckpt: Option<&Path>, device: Device, out: &EvalOutput) -> Result<Value> {
    let data = load_data(cfg)?;
    let layout = cfg.layout();
    let y = data.test_y.shallow_clone();
    let labels: Vec<i64> = Vec::try_from(&y)?;
    let mut encoders = vec![("random init", None)];
    if let Some(p) = ckpt {
        encoders.push(("pretrained", Some(p)));
    }
    let mut panels = Vec::new();
    let mut figures: std::collections::BTreeMap<&str, Value> = Default::default();
    let mut csv_rows = Vec::new();
    for (name, path) in encoders {
        let (_vs, enc) = load_encoder(cfg, path, device)?;
        let f = unit_features(&enc, &data, cfg, &layout, device)?;
        let (n, d) = (f.size()[0] as usize, f.size()[1] as usize);
        let start = Instant::now();
        let map = tsne_2d(&host(&f)?, n, d, cfg.run.seed)?;
        let seconds = start.elapsed().as_secs_f64();
        let map_t = Tensor::from_slice(&map).view([n as i64, 2]);
        let s_feat = silhouette(&f, &y);
        let s_map = silhouette(&map_t, &y);
        tracing::info!("t-SNE of {n} {name} features: {seconds:.1} s, silhouette {s_feat:.3} (features) {s_map:.3} (map)");
        let key = name.replace(' ', "_");
        for (what, x) in [
            ("silhouette_features", s_feat),
            ("silhouette_tsne", s_map),
            ("tsne_seconds", seconds),
        ] {
            figures.entry(what).or_insert_with(|| json!({}))[&key] = json!(x);
        }
        let points = (0..n)
            .map(|i| (map[2 * i], map[2 * i + 1], labels[i].max(0) as usize))
            .collect();
        panels.push(ScatterPanel {
            title: format!("{name}: silhouette {s_map:.2} (map), {s_feat:.2} (features)"),
            points,
        });
        for i in 0..n {
            csv_rows.push((name, i, labels[i], map[2 * i], map[2 * i + 1]));
        }
    }
    write_points(out, &csv_rows)?;
    let caption = format!(
        "t-SNE of the test features ({} samples, seed {})",
        labels.len(),
        cfg.run.seed
    );
    write_scatter(
        &out.dir.join("tsne.png"),
        &caption,
        &panels,
        &out.class_names,
    )?;
    let mut v = base_json(cfg, "tsne", ckpt)?;
    for (what, x) in figures {
        v[what] = x;
    }
    v["points"] = json!(labels.len());
    v["perplexity"] = json!(PERPLEXITY.min(((labels.len().max(1) - 1) / 3) as f32));
    v["theta"] = json!(THETA);
    v["iterations"] = json!(EPOCHS);
    v["note"] = json!("silhouette: mean over test samples of (b - a) / max(a, b) with Euclidean distances between classes, in the encoder's L2-normalised feature space and in the 2-D map; 1 is perfectly separated classes, 0 overlapping");
    out.write_results(&v)?;
    Ok(v)
}

/// Eval-mode test features on the unit sphere, as the k-NN protocol compares them
/// (cosine), on the CPU.
fn unit_features(
    enc: &StGcn,
    data: &EvalData,
    cfg: &Config,
    layout: &Layout,
    device: Device,
) -> Result<Tensor> {
    let f = features(
        enc,
        &data.test_x,
        cfg.data.stream,
        layout,
        &[],
        cfg.eval.batch_size,
        device,
    );
    check_finite(&f, "features of the test split")?;
    let f = f.to_device(Device::Cpu).to_kind(Kind::Float);
    let norm = f
        .norm_scalaropt_dim(2.0, [1i64].as_slice(), true)
        .clamp_min(1e-12);
    Ok(f / norm)
}

/// `tsne.csv`: encoder, test index, label, class name, x, y.
fn write_points(out: &EvalOutput, rows: &[(&str, usize, i64, f32, f32)]) -> Result<()> {
    crate::io::atomic_write_with(&out.dir.join("tsne.csv"), |tmp| {
        let mut w = csv::Writer::from_path(tmp)?;
        w.write_record(["encoder", "index", "label", "class", "x", "y"])?;
        for &(enc, i, label, x, y) in rows {
            let class = out
                .class_names
                .get(label.max(0) as usize)
                .map_or("", String::as_str);
            w.write_record([
                enc,
                &i.to_string(),
                &label.to_string(),
                class,
                &x.to_string(),
                &y.to_string(),
            ])?;
        }
        w.flush()?;
        Ok(())
    })
}
