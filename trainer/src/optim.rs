//! AdamW with warm-up + cosine decay and global-norm clipping, written out over the
//! VarStore's tensors (rather than tch's C++ optimiser) so its moments can be saved
//! to safetensors and a resumed run continues bit-for-bit.

use std::path::Path;

use tch::{nn, Kind, Tensor};

use crate::config::TrainConfig;

pub struct AdamW {
    /// (name, parameter, first moment, second moment), sorted by name.
    params: Vec<(String, Tensor, Tensor, Tensor)>,
    pub step: u64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
}

impl AdamW {
    pub fn new(vs: &nn::VarStore, cfg: &TrainConfig) -> Self {
        let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let params = vars
            .into_iter()
            .map(|(n, p)| {
                let m = p.zeros_like().detach();
                let v = p.zeros_like().detach();
                (n, p, m, v)
            })
            .collect();
        AdamW { params, step: 0, beta1: cfg.beta1, beta2: cfg.beta2, eps: cfg.eps, weight_decay: cfg.weight_decay }
    }

    pub fn zero_grad(&mut self) {
        for (_, p, _, _) in &mut self.params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
    }

    /// Scales gradients so their global L2 norm is at most `max` (when max > 0);
    /// returns the norm before clipping, as a scalar tensor on the parameters' device:
    /// the scale is computed there too, so clipping never waits for the GPU.
    pub fn clip_grad_norm(&mut self, max: f64) -> Tensor {
        let _guard = tch::no_grad_guard();
        let sq: Vec<Tensor> = self.params.iter().map(|(_, p, _, _)| p.grad()).filter(|g| g.defined()).map(|g| g.pow_tensor_scalar(2).sum(Kind::Float)).collect();
        if sq.is_empty() {
            return Tensor::zeros([], (Kind::Float, self.params.first().map_or(tch::Device::Cpu, |p| p.1.device())));
        }
        let norm = Tensor::stack(&sq, 0).sum(Kind::Float).sqrt();
        if max > 0.0 {
            // min(1, max / (norm + 1e-6)): exactly 1 when the norm is within bounds, so
            // unclipped gradients are unchanged.
            let scale = (max / (&norm + 1e-6)).clamp_max(1.0);
            for (_, p, _, _) in &self.params {
                let mut g = p.grad();
                if g.defined() {
                    g *= &scale;
                }
            }
        }
        norm
    }

    pub fn apply(&mut self, lr: f64) {
        let _guard = tch::no_grad_guard();
        self.step += 1;
        let t = self.step as i32;
        let (b1, b2) = (self.beta1, self.beta2);
        let bc1 = 1.0 - b1.powi(t);
        let bc2 = 1.0 - b2.powi(t);
        for (_, p, m, v) in &mut self.params {
            let g = p.grad();
            if !g.defined() {
                continue;
            }
            // Decoupled decay on matrices only; biases and norm gains are not shrunk.
            if self.weight_decay > 0.0 && p.dim() >= 2 {
                *p *= 1.0 - lr * self.weight_decay;
            }
            // In place where libtorch allows it, as torch.optim.AdamW does: the moments
            // and the update would otherwise allocate several parameter-sized temporaries.
            let _ = m.lerp_(&g, 1.0 - b1);
            *v *= b2;
            let _ = v.addcmul_(&(&g * (1.0 - b2)), &g);
            let mut denom = v.sqrt();
            let _ = denom.g_div_scalar_(bc2.sqrt());
            let _ = denom.g_add_scalar_(self.eps);
            let _ = p.addcdiv_(&(&*m * (-lr / bc1)), &denom);
        }
    }

    /// Gives every parameter a (zero) gradient tensor, so that gradients of parameters a
    /// batch did not touch (the patch projection in a text-only batch) still exist and
    /// every rank flattens the same layout.
    pub fn prime_grads(&mut self) {
        let total = self.params.iter().map(|(_, p, _, _)| p.sum(Kind::Float) * 0.0).fold(None, |acc: Option<Tensor>, t| Some(match acc {
            Some(a) => a + t,
            None => t,
        }));
        if let Some(t) = total {
            t.backward();
        }
        self.zero_grad();
    }

    /// The gradient tensors themselves (sharing storage with the parameters'
    /// gradients, so an in-place all-reduce on them is seen by [`AdamW::apply`]), in
    /// parameter-name order; every one defined after [`AdamW::prime_grads`].
    pub fn grads(&self) -> Vec<Tensor> {
        self.params.iter().map(|(_, p, _, _)| p.grad()).collect()
    }

    /// Every gradient, flattened in parameter-name order (for cross-rank averaging).
    pub fn flat_grads(&self) -> Vec<f32> {
        let mut out = vec![];
        for (_, p, _, _) in &self.params {
            let g = p.grad();
            if g.defined() {
                out.extend(Vec::<f32>::try_from(g.to_kind(Kind::Float).flatten(0, -1).to_device(tch::Device::Cpu)).expect("f32 gradient"));
            } else {
                out.extend(std::iter::repeat(0f32).take(p.numel()));
            }
        }
        out
    }

    /// Writes back gradients produced by [`AdamW::flat_grads`] (after averaging).
    pub fn set_flat_grads(&mut self, flat: &[f32]) {
        let _guard = tch::no_grad_guard();
        let mut o = 0;
        for (_, p, _, _) in &self.params {
            let n = p.numel();
            let mut g = p.grad();
            if g.defined() {
                let src = Tensor::from_slice(&flat[o..o + n]).view(p.size().as_slice()).to_kind(g.kind()).to_device(g.device());
                g.copy_(&src);
            }
            o += n;
        }
    }

    /// Moments as safetensors (`m.<name>`, `v.<name>`).
    pub fn save(&self, path: &Path) -> Result<(), tch::TchError> {
        let mut named: Vec<(String, &Tensor)> = vec![];
        for (n, _, m, v) in &self.params {
            named.push((format!("m.{n}"), m));
            named.push((format!("v.{n}"), v));
        }
        Tensor::write_safetensors(&named, path)
    }

    pub fn load(&mut self, path: &Path, step: u64) -> Result<(), tch::TchError> {
        let saved: std::collections::HashMap<String, Tensor> = Tensor::read_safetensors(path)?.into_iter().collect();
        let _guard = tch::no_grad_guard();
        for (n, _, m, v) in &mut self.params {
            for (prefix, dst) in [("m", m), ("v", v)] {
                let src = saved.get(&format!("{prefix}.{n}")).ok_or_else(|| {
                    tch::TchError::FileFormat(format!("{}: no optimiser state for `{n}` (model changed?)", path.display()))
                })?;
                if src.size() != dst.size() {
                    return Err(tch::TchError::FileFormat(format!("{}: `{n}` has shape {:?}, model has {:?}", path.display(), src.size(), dst.size())));
                }
                dst.copy_(&src.to_device(dst.device()));
            }
        }
        self.step = step;
        Ok(())
    }
}

/// Linear warm-up to `lr`, then cosine decay to `lr * min_lr_ratio` at `total` steps.
/// `step` is 0-based (the step about to be taken).
pub fn lr_at(cfg: &TrainConfig, step: u64, total: u64) -> f64 {
    if cfg.warmup_steps > 0 && step < cfg.warmup_steps {
        return cfg.lr * (step + 1) as f64 / cfg.warmup_steps as f64;
    }
    let span = total.saturating_sub(cfg.warmup_steps).max(1) as f64;
    let progress = ((step - cfg.warmup_steps.min(step)) as f64 / span).min(1.0);
    let min = cfg.lr * cfg.min_lr_ratio;
    min + (cfg.lr - min) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_warms_up_then_decays_to_the_floor() {
        let cfg = TrainConfig { lr: 1.0, warmup_steps: 10, min_lr_ratio: 0.1, ..Default::default() };
        assert!((lr_at(&cfg, 0, 110) - 0.1).abs() < 1e-12);
        assert!((lr_at(&cfg, 9, 110) - 1.0).abs() < 1e-12);
        assert!((lr_at(&cfg, 10, 110) - 1.0).abs() < 1e-12);
        assert!((lr_at(&cfg, 60, 110) - 0.55).abs() < 1e-12);
        assert!((lr_at(&cfg, 110, 110) - 0.1).abs() < 1e-12);
        let mut prev = f64::MAX;
        for s in 10..=110 {
            let lr = lr_at(&cfg, s, 110);
            assert!(lr <= prev);
            prev = lr;
        }
    }

    #[test]
    fn adamw_matches_the_closed_form_first_step() {
        // After one step Adam moves each weight by lr·sign(g) (bias-corrected m/√v = ±1).
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let w = vs.root().var_copy("w", &Tensor::from_slice(&[1.0f32, -2.0, 3.0]));
        let cfg = TrainConfig { weight_decay: 0.0, eps: 0.0, ..Default::default() };
        let mut opt = AdamW::new(&vs, &cfg);
        let loss = (&w * Tensor::from_slice(&[2.0f32, -1.0, 0.5])).sum(Kind::Float);
        loss.backward();
        opt.apply(0.1);
        let got = Vec::<f32>::try_from(&w).unwrap();
        let want = [0.9f32, -1.9, 2.9];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{got:?}");
        }
    }
}
