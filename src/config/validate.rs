//! The validation layer: every key of every section range-checked when a config is
//! loaded ([`Config::validate`]), and the checks that need the data
//! ([`Config::validate_data`]: frames for MATM, joints for CSM). Errors name the key,
//! the value and what is allowed.

use super::{Config, ConfigError};

impl Config {
    /// Range checks that serde cannot express, every key of every section, before any
    /// work starts. Checks that need the data (frames, joints) are in
    /// [`Config::validate_data`].
    pub fn validate(&self, label: &str) -> Result<(), ConfigError> {
        let mut c = Checker { label, err: None };
        self.check_run(&mut c);
        self.check_model(&mut c);
        self.check_pretrain(&mut c);
        self.check_eval(&mut c);
        c.err.map_or(Ok(()), Err)
    }

    fn check_run(&self, c: &mut Checker) {
        let r = &self.run;
        c.check(
            "run.name",
            &r.name,
            !r.name.is_empty() && !r.name.contains(['/', '\\']) && r.name != ".." && r.name != ".",
            "must be a non-empty file name",
        );
        c.check(
            "run.device",
            &r.device,
            crate::device::parse_device(&r.device).is_ok(),
            "expected auto, cpu, cuda or cuda:N",
        );
        let max = max_threads();
        c.check(
            "run.threads",
            r.threads,
            r.threads <= max,
            &format!("at most {max} (0 = all cores)"),
        );
        let d = &self.data;
        c.check(
            "data.path",
            d.path.display(),
            !d.path.as_os_str().is_empty(),
            "must not be empty",
        );
        c.check(
            "data.memory_budget_mb",
            d.memory_budget_mb,
            d.memory_budget_mb <= 1 << 30,
            "at most 2^30 MiB",
        );
        let s = &d.synth;
        c.check(
            "data.synth.classes",
            s.classes,
            (1..=crate::data::synth::MAX_CLASSES).contains(&s.classes),
            &format!("must be in 1..={}", crate::data::synth::MAX_CLASSES),
        );
        c.check(
            "data.synth.train_per_class",
            s.train_per_class,
            s.train_per_class >= 1,
            "must be at least 1",
        );
        c.check(
            "data.synth.test_per_class",
            s.test_per_class,
            s.test_per_class >= 1,
            "must be at least 1",
        );
    }

    fn check_model(&self, c: &mut Checker) {
        let m = &self.model;
        c.check(
            "model.layout",
            &m.layout,
            crate::model::Layout::by_name(&m.layout).is_some(),
            "known layouts: ntu25",
        );
        for (key, v) in [
            ("model.base_channels", m.base_channels),
            ("model.feature_dim", m.feature_dim),
            ("model.projector_dim", m.projector_dim),
        ] {
            c.check(key, v, (1..=1 << 20).contains(&v), "must be in 1..=2^20");
        }
        c.check(
            "model.temporal_kernel",
            m.temporal_kernel,
            m.temporal_kernel >= 1 && m.temporal_kernel % 2 == 1 && m.temporal_kernel <= 99,
            "must be odd, in 1..=99 (the padding keeps T)",
        );
        c.check(
            "model.dropout",
            m.dropout,
            (0.0..1.0).contains(&m.dropout),
            "must be in [0, 1)",
        );
        let a = &self.augment;
        c.check(
            "augment.shear_amp",
            a.shear_amp,
            a.shear_amp.is_finite() && a.shear_amp >= 0.0,
            "must be >= 0 (0 disables)",
        );
        c.check(
            "augment.pad_ratio",
            a.pad_ratio,
            a.pad_ratio >= 0,
            "must be >= 0 (0 disables)",
        );
        for (key, v) in [
            ("augment.rotate_main_deg", a.rotate_main_deg),
            ("augment.rotate_other_deg", a.rotate_other_deg),
        ] {
            c.check(
                key,
                v,
                v.is_finite() && (0.0..=360.0).contains(&v),
                "must be in [0, 360]",
            );
        }
        c.check(
            "augment.flip_prob",
            a.flip_prob,
            (0.0..=1.0).contains(&a.flip_prob),
            "must be in [0, 1]",
        );
    }

    fn check_pretrain(&self, c: &mut Checker) {
        let p = &self.pretrain;
        c.check(
            "pretrain.epochs",
            p.epochs,
            p.epochs >= 1,
            "must be at least 1",
        );
        c.check(
            "pretrain.batch_size",
            p.batch_size,
            p.batch_size >= 2,
            "must be at least 2 (batch norm)",
        );
        c.check(
            "pretrain.lr",
            p.lr,
            p.lr.is_finite() && p.lr > 0.0,
            "must be a positive number",
        );
        c.check(
            "pretrain.weight_decay",
            p.weight_decay,
            p.weight_decay.is_finite() && p.weight_decay >= 0.0,
            "must be >= 0",
        );
        c.check(
            "pretrain.lambda",
            p.lambda,
            p.lambda.is_finite() && p.lambda > 0.0,
            "must be a positive number",
        );
        c.check(
            "pretrain.mask_frame",
            p.mask_frame,
            p.mask_frame >= 0,
            "must be >= 0 (0 disables MATM)",
        );
        let joints = self.layout().num_joints;
        c.check(
            "pretrain.mask_joint",
            p.mask_joint,
            p.mask_joint < joints,
            &format!("must leave a joint: at most {} of {joints}", joints - 1),
        );
        c.check(
            "pretrain.log_every",
            p.log_every,
            p.log_every >= 1,
            "must be at least 1",
        );
        c.check(
            "pretrain.checkpoint_every",
            p.checkpoint_every,
            p.checkpoint_every >= 1,
            "must be at least 1",
        );
        c.check(
            "pretrain.checkpoint_minutes",
            p.checkpoint_minutes,
            p.checkpoint_minutes.is_finite() && p.checkpoint_minutes >= 0.0,
            "must be >= 0 (0: per epoch only)",
        );
        c.check(
            "pretrain.keep_checkpoints",
            p.keep_checkpoints,
            (1..=100).contains(&p.keep_checkpoints),
            "must be in 1..=100",
        );
        c.check(
            "pretrain.dist_timeout_s",
            p.dist_timeout_s,
            p.dist_timeout_s.is_finite() && p.dist_timeout_s >= 1.0,
            "must be at least 1 second",
        );
    }

    fn check_eval(&self, c: &mut Checker) {
        self.check_eval_training(c);
        self.check_eval_protocols(c);
        self.check_eval_robust(c);
        let w = &self.eval.ensemble_weights;
        c.check(
            "eval.ensemble_weights",
            format!("{w:?}"),
            w.len() == 3 && check_weights(w).is_ok(),
            "need 3 finite weights >= 0, not all 0 (joint, motion, bone)",
        );
    }

    /// The linear and fine-tune training of the downstream protocols.
    fn check_eval_training(&self, c: &mut Checker) {
        let e = &self.eval;
        c.check(
            "eval.linear_epochs",
            e.linear_epochs,
            e.linear_epochs >= 1,
            "must be at least 1",
        );
        c.check(
            "eval.finetune_epochs",
            e.finetune_epochs,
            e.finetune_epochs >= 1,
            "must be at least 1",
        );
        for (key, v) in [
            ("eval.linear_lr", e.linear_lr),
            ("eval.finetune_lr", e.finetune_lr),
        ] {
            c.check(
                key,
                v,
                v.is_finite() && v > 0.0,
                "must be a positive number",
            );
        }
        c.check(
            "eval.weight_decay",
            e.weight_decay,
            e.weight_decay.is_finite() && e.weight_decay >= 0.0,
            "must be >= 0",
        );
        c.check(
            "eval.batch_size",
            e.batch_size,
            e.batch_size >= 2,
            "must be at least 2",
        );
    }

    /// k-NN's k values and the semi-supervised label fractions.
    fn check_eval_protocols(&self, c: &mut Checker) {
        let e = &self.eval;
        c.check(
            "eval.knn_k",
            format!("{:?}", e.knn_k),
            !e.knn_k.is_empty() && !e.knn_k.contains(&0),
            "every k must be >= 1",
        );
        c.check(
            "eval.semi_percents",
            format!("{:?}", e.semi_percents),
            e.semi_percents.iter().all(|&p| p > 0.0 && p <= 100.0),
            "percents must be in (0, 100]",
        );
    }

    /// The missing-joints protocol (`robust`): each removal must leave a joint.
    fn check_eval_robust(&self, c: &mut Checker) {
        let e = &self.eval;
        let joints = self.layout().num_joints;
        c.check(
            "eval.robust_max_k",
            e.robust_max_k,
            e.robust_max_k < joints,
            &format!("must leave a joint: at most {}", joints - 1),
        );
        let layout = self.layout();
        for spec in &e.robust_part_sets {
            check_part_set(c, &layout, joints, spec);
        }
        c.check(
            "eval.robust_draws",
            e.robust_draws,
            e.robust_draws >= 1,
            "must be at least 1",
        );
    }

    /// Checks that need the data: MATM must leave frames (`T > 2 * mask_frame`), CSM and
    /// `robust` must leave joints. `store` names the data in the message.
    pub fn validate_data(
        &self,
        store: &str,
        frames: usize,
        joints: usize,
    ) -> Result<(), ConfigError> {
        let mut c = Checker {
            label: store,
            err: None,
        };
        let m = self.pretrain.mask_frame.max(0) as usize;
        c.check(
            "pretrain.mask_frame",
            m,
            frames > m.saturating_mul(2),
            &format!(
                "MATM drops 2 x {m} frames but the samples have {frames}: use at most {}",
                frames.saturating_sub(1) / 2
            ),
        );
        c.check(
            "pretrain.mask_joint",
            self.pretrain.mask_joint,
            self.pretrain.mask_joint < joints,
            &format!("the data has {joints} joints"),
        );
        c.err.map_or(Ok(()), Err)
    }
}

/// Collects the first range error (the key, its value and what is allowed).
struct Checker<'a> {
    label: &'a str,
    err: Option<ConfigError>,
}

impl Checker<'_> {
    fn check(&mut self, key: &str, value: impl std::fmt::Display, ok: bool, why: &str) {
        if !ok && self.err.is_none() {
            self.err = Some(ConfigError::Invalid {
                path: self.label.to_string(),
                key: key.into(),
                value: value.to_string(),
                why: why.into(),
            });
        }
    }
}

/// One `eval.robust_part_sets` entry: a known part set that leaves at least one joint.
fn check_part_set(c: &mut Checker, layout: &crate::model::Layout, joints: usize, spec: &str) {
    let set = crate::model::part_set(layout, spec);
    let left = set.as_ref().map_or(0, |(_, js)| {
        let mut js = js.clone();
        js.sort_unstable();
        js.dedup();
        joints - js.len().min(joints)
    });
    let why = match &set {
        Err(e) => format!("{e:#}"),
        Ok(_) => "removes every joint: leave at least one".into(),
    };
    c.check("eval.robust_part_sets", spec, set.is_ok() && left > 0, &why);
}

/// Ensemble weights: finite, non-negative, not all zero.
pub fn check_weights(w: &[f64]) -> Result<(), String> {
    if let Some(x) = w.iter().find(|x| !(x.is_finite() && **x >= 0.0)) {
        return Err(format!("weight {x} is not a finite number >= 0"));
    }
    if w.iter().all(|&x| x == 0.0) {
        return Err("all weights are 0".into());
    }
    Ok(())
}

/// Largest accepted thread count (libgomp fails far above; a fixed bound keeps a config
/// valid on every machine).
pub fn max_threads() -> usize {
    1024
}
