//! Fine-tuning (paper §4.2): encoder and classifier trained end to end with the
//! authors' augmentations.

use super::{
    classifier::batches, classifier::classifier, classifier::save_classifier,
    classifier::summarise, classifier::ClassifierResult, classifier::EpochRow, features, load_data,
    load_encoder, output::add_classifier_figures, output::base_json, output::EvalOutput, EvalData,
};
use crate::augment::augment;
use crate::config::Config;
use crate::model::{Layout, StGcn};
use crate::optim::{cosine, Adam};
use crate::progress::Progress;
use crate::rng::{step_seed, PstlRng};
use anyhow::Result;
use rand::SeedableRng;
use serde_json::Value;
use std::path::Path;
use tch::{nn, nn::Module, nn::ModuleT, Device, Kind, Tensor};

/// Fine-tune encoder + classifier on the training rows `rows` (all when `None`).
pub fn finetune_rows(
    cfg: &Config,
    ckpt: Option<&Path>,
    device: Device,
    data: &EvalData,
    rows: Option<&[i64]>,
    label: &str,
) -> Result<(nn::VarStore, nn::VarStore, ClassifierResult, Tensor)> {
    let (enc_vs, enc) = load_encoder(cfg, ckpt, device)?;
    let fc_vs = nn::VarStore::new(device);
    let fc = classifier(&fc_vs, cfg.model.feature_dim, data.num_classes);
    let mut adam = joint_adam(&enc_vs, &fc_vs, cfg.eval.weight_decay);
    let all: Vec<i64> = (0..data.train_y.size()[0]).collect();
    let tuner = Tuner {
        cfg,
        data,
        rows: rows.unwrap_or(&all),
        enc: &enc,
        fc: &fc,
        layout: cfg.layout(),
        device,
    };
    let e = &cfg.eval;
    let mut history = Vec::new();
    let mut bar = Progress::with_plain_lines(label, e.finetune_epochs as u64);
    let mut last_logits = Tensor::zeros([0], (Kind::Float, device));
    for epoch in 0..e.finetune_epochs {
        let lr = cosine(e.finetune_lr, epoch as f64, e.finetune_epochs);
        let train_loss = tuner.train_epoch(epoch, &mut adam, lr);
        let logits = tuner.test_logits();
        let row = EpochRow::of_test(epoch, lr, train_loss, &logits, &data.test_y, e.batch_size);
        bar.set_message(format!("test top-1 {:.2}", row.test_top1));
        history.push(row);
        last_logits = logits;
        bar.inc(1);
    }
    bar.finish();
    Ok((enc_vs, fc_vs, summarise(history), last_logits))
}

/// One Adam over the encoder's (`encoder.*`) and the classifier's parameters, in name
/// order.
fn joint_adam(enc_vs: &nn::VarStore, fc_vs: &nn::VarStore, weight_decay: f64) -> Adam {
    let mut params: Vec<(String, Tensor)> = enc_vs
        .variables()
        .into_iter()
        .filter(|(_, t)| t.requires_grad())
        .map(|(k, v)| (format!("encoder.{k}"), v))
        .collect();
    params.extend(
        fc_vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad()),
    );
    params.sort_by(|a, b| a.0.cmp(&b.0));
    Adam::from_params(params, weight_decay)
}

/// What a fine-tuning epoch works on.
struct Tuner<'a> {
    cfg: &'a Config,
    data: &'a EvalData,
    /// Training rows used.
    rows: &'a [i64],
    enc: &'a StGcn,
    fc: &'a nn::Linear,
    layout: Layout,
    device: Device,
}

impl Tuner<'_> {
    /// One epoch over the rows in shuffled batches; returns the mean training loss.
    fn train_epoch(&self, epoch: usize, adam: &mut Adam, lr: f64) -> f64 {
        let (cfg, e) = (self.cfg, &self.cfg.eval);
        let mut loss_sum = Tensor::zeros([], (Kind::Float, self.device));
        let mut count = 0;
        for (i, b) in batches(self.rows.len(), e.batch_size, cfg.run.seed, epoch)
            .iter()
            .enumerate()
        {
            if b.len() < 2 {
                continue; // batch norm needs two samples
            }
            let sel: Vec<i64> = b.iter().map(|&j| self.rows[j as usize]).collect();
            let idx = Tensor::from_slice(&sel);
            // Stream first, then augment, as in pretraining (`method::pstl_views`).
            let x = self
                .data
                .train_x
                .index_select(0, &idx)
                .to_device(self.device);
            let mut x = cfg.data.stream.apply(&x, &self.layout);
            if e.finetune_augment {
                let mut rng =
                    PstlRng::seed_from_u64(step_seed(cfg.run.seed, (epoch * 1_000_003 + i) as u64));
                x = augment(&x, &cfg.augment, &self.layout, &mut rng);
            }
            let y = self
                .data
                .train_y
                .index_select(0, &idx)
                .to_device(self.device);
            let logits = self.enc.forward_t(&x, true).apply(self.fc);
            let loss = logits.cross_entropy_for_logits(&y);
            adam.zero_grad();
            loss.backward();
            adam.step(lr);
            loss_sum += loss.detach();
            count += 1;
        }
        loss_sum.double_value(&[]) / count.max(1) as f64
    }

    /// Test logits in eval mode.
    fn test_logits(&self) -> Tensor {
        let test_f = features(
            self.enc,
            &self.data.test_x,
            self.cfg.data.stream,
            &self.layout,
            &[],
            self.cfg.eval.batch_size,
            self.device,
        );
        tch::no_grad(|| self.fc.forward(&test_f))
    }
}

/// Fine-tune on all training labels.
pub fn finetune(
    cfg: &Config,
    ckpt: Option<&Path>,
    device: Device,
    out: &EvalOutput,
) -> Result<Value> {
    let data = load_data(cfg)?;
    let (enc_vs, fc_vs, res, logits) = finetune_rows(cfg, ckpt, device, &data, None, "finetune")?;
    out.write_training("finetune", &res)?;
    out.write_scores("", &logits, &data.test_y, data.num_classes)?;
    save_classifier(
        &out.dir.join("classifier.safetensors"),
        &fc_vs,
        Some(&enc_vs),
        cfg,
    )?;
    let mut v = base_json(cfg, "finetune", ckpt)?;
    add_classifier_figures(&mut v, &res);
    out.write_results(&v)?;
    Ok(v)
}
