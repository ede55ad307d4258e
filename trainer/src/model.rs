//! The M6-style unified transformer: text tokens and image patches share one
//! pre-LayerNorm encoder under a prefix-LM mask (bidirectional over the image and the
//! prefix, causal over the target), with the output head tied to the token embedding.

use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};

use crate::config::ModelConfig;
use crate::data::{Batch, DataMeta};

struct Block {
    ln1: nn::LayerNorm,
    qkv: nn::Linear,
    proj: nn::Linear,
    ln2: nn::LayerNorm,
    fc1: nn::Linear,
    fc2: nn::Linear,
}

pub struct M6Model {
    tok: nn::Embedding,
    pos: nn::Embedding,
    modality: nn::Embedding,
    patch: Option<nn::Linear>,
    blocks: Vec<Block>,
    ln_f: nn::LayerNorm,
    cfg: ModelConfig,
    n_patches: i64,
    /// Matmuls run in this kind: BFloat16 on CUDA (autocast-style: weights stay fp32,
    /// norms, the residual stream and the loss in fp32; what a linear layer feeds to
    /// attention, GELU or the next linear layer stays bf16), Float on CPU.
    compute: Kind,
}

fn small_init() -> nn::Init {
    nn::Init::Randn { mean: 0.0, stdev: 0.02 }
}

impl M6Model {
    /// Builds the variables under `vs.root()`; their names are stable, so a
    /// safetensors checkpoint loads by name.
    pub fn new(vs: &nn::VarStore, cfg: &ModelConfig, meta: &DataMeta, bf16: bool) -> Self {
        let p = vs.root();
        let d = cfg.d_model;
        let emb = nn::EmbeddingConfig { ws_init: small_init(), ..Default::default() };
        let tok = nn::embedding(&p / "tok_emb", meta.vocab_size, d, emb);
        let pos = nn::embedding(&p / "pos_emb", cfg.max_len, d, emb);
        let modality = nn::embedding(&p / "modality_emb", 2, d, emb);
        let patch = meta.image.as_ref().map(|g| nn::linear(&p / "patch_proj", g.patch_dim(), d, Default::default()));
        let blocks = (0..cfg.n_layers)
            .map(|i| {
                let b = &p / "blocks" / i;
                Block {
                    ln1: nn::layer_norm(&b / "ln1", vec![d], Default::default()),
                    qkv: nn::linear(&b / "qkv", d, 3 * d, Default::default()),
                    proj: nn::linear(&b / "proj", d, d, Default::default()),
                    ln2: nn::layer_norm(&b / "ln2", vec![d], Default::default()),
                    fc1: nn::linear(&b / "fc1", d, cfg.d_ff, Default::default()),
                    fc2: nn::linear(&b / "fc2", cfg.d_ff, d, Default::default()),
                }
            })
            .collect();
        let ln_f = nn::layer_norm(&p / "ln_f", vec![d], Default::default());
        let n_patches = meta.image.as_ref().map_or(0, |g| g.n_patches());
        M6Model { tok, pos, modality, patch, blocks, ln_f, cfg: cfg.clone(), n_patches, compute: if bf16 { Kind::BFloat16 } else { Kind::Float } }
    }

    /// A linear layer whose output stays in the compute kind: casting every
    /// activation back to fp32 and again to bf16 for the next matmul doubled the memory
    /// traffic of the elementwise work on the GPU.
    fn lin_c(&self, x: &Tensor, l: &nn::Linear) -> Tensor {
        if self.compute == Kind::Float {
            return x.apply(l);
        }
        let c = self.compute;
        x.to_kind(c).linear(&l.ws.to_kind(c), l.bs.as_ref().map(|b| b.to_kind(c)))
    }

    fn lin(&self, x: &Tensor, l: &nn::Linear) -> Tensor {
        self.lin_c(x, l).to_kind(Kind::Float)
    }

    /// Token logits (B, T, vocab) for a batch already on `device`.
    pub fn forward(&self, b: &DeviceBatch) -> Tensor {
        let (bsz, t) = b.ids.size2().unwrap();
        let dev = b.ids.device();
        let d = self.cfg.d_model;
        let pos = Tensor::arange(t, (Kind::Int64, dev));
        let mut x = self.tok.forward(&b.ids);
        let mut modality = Tensor::zeros([bsz, t], (Kind::Int64, dev));
        if let (Some((patches, has)), Some(proj)) = (&b.patches, &self.patch) {
            let p = self.n_patches;
            // uint8 pixels to [-1, 1] before the linear projection.
            let pe = self.lin(&(patches.to_kind(Kind::Float) / 127.5 - 1.0), proj);
            let full = Tensor::cat(&[Tensor::zeros([bsz, 1, d], (Kind::Float, dev)), pe, Tensor::zeros([bsz, t - 1 - p, d], (Kind::Float, dev))], 1);
            let slot = pos.ge(1).logical_and(&pos.le(p)).view([1, t]).logical_and(&has.view([bsz, 1]));
            x = full.where_self(&slot.unsqueeze(-1), &x);
            modality = slot.to_kind(Kind::Int64);
        }
        x = x + self.pos.forward(&pos).unsqueeze(0) + self.modality.forward(&modality);
        let mask = prefix_lm_mask(&b.prefix_len, &b.lengths, t);
        let h = self.cfg.n_heads;
        let hd = d / h;
        for blk in &self.blocks {
            let qkv = self.lin_c(&x.apply(&blk.ln1), &blk.qkv).view([bsz, t, 3, h, hd]).permute([2, 0, 3, 1, 4]);
            let (q, k, v) = (qkv.get(0), qkv.get(1), qkv.get(2));
            let a = Tensor::scaled_dot_product_attention(&q, &k, &v, Some(&mask), 0.0, false, None::<f64>, false);
            let a = a.transpose(1, 2).contiguous().view([bsz, t, d]);
            // fp32 residual + bf16 branch promotes to fp32.
            x = x + self.lin_c(&a, &blk.proj);
            let m = self.lin_c(&self.lin_c(&x.apply(&blk.ln2), &blk.fc1).gelu("none"), &blk.fc2);
            x = x + m;
        }
        let x = x.apply(&self.ln_f);
        // Output head tied to the token embedding, as in BERT/M6.
        if self.compute == Kind::Float {
            x.matmul(&self.tok.ws.tr())
        } else {
            x.to_kind(self.compute).matmul(&self.tok.ws.to_kind(self.compute).tr()).to_kind(Kind::Float)
        }
    }

    /// Mean cross-entropy over the labelled (target) positions.
    pub fn loss(&self, b: &DeviceBatch) -> Tensor {
        let logits = self.forward(b);
        let v = logits.size()[2];
        logits.view([-1, v]).cross_entropy_loss::<Tensor>(&b.labels.view([-1]), None, tch::Reduction::Mean, crate::data::IGNORE, 0.0)
    }
}

/// (B, 1, T, T) boolean: query i may attend key j when j is real and either in the
/// prefix or not after i. Padding keys are hidden from real queries; the diagonal is
/// always allowed so no row is fully masked (which would give NaN).
pub fn prefix_lm_mask(prefix_len: &Tensor, lengths: &Tensor, t: i64) -> Tensor {
    let dev = prefix_len.device();
    let b = prefix_len.size()[0];
    let pos = Tensor::arange(t, (Kind::Int64, dev));
    let i = pos.view([1, t, 1]);
    let j = pos.view([1, 1, t]);
    let real = j.lt_tensor(&lengths.view([b, 1, 1]));
    let visible = j.lt_tensor(&prefix_len.view([b, 1, 1])).logical_or(&j.le_tensor(&i));
    real.logical_and(&visible).logical_or(&i.eq_tensor(&j)).unsqueeze(1)
}

/// A batch's tensors on the training device.
pub struct DeviceBatch {
    pub ids: Tensor,
    pub labels: Tensor,
    pub prefix_len: Tensor,
    pub lengths: Tensor,
    pub patches: Option<(Tensor, Tensor)>,
}

impl DeviceBatch {
    pub fn new(b: &Batch, dev: Device) -> Self {
        // non_blocking: a blocking host-to-device copy waits for every kernel already
        // queued, which would stall the CPU once a step. From pageable memory the driver
        // stages the bytes before returning, so the host tensor may be dropped at once.
        // On the CPU (copy = false, same device and kind) this returns the tensor itself.
        let to = |t: &Tensor| t.to_device_(dev, t.kind(), true, false);
        DeviceBatch {
            ids: to(&b.ids),
            labels: to(&b.labels),
            prefix_len: to(&b.prefix_len),
            lengths: to(&b.lengths),
            patches: b.patches.as_ref().map(|(p, h)| (to(p), to(h))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_is_bidirectional_over_prefix_and_causal_after() {
        let m = prefix_lm_mask(&Tensor::from_slice(&[2i64]), &Tensor::from_slice(&[4i64]), 5);
        let got: Vec<Vec<bool>> = (0..5).map(|i| Vec::<bool>::try_from(m.get(0).get(0).get(i)).unwrap()).collect();
        let want = vec![
            vec![true, true, false, false, false],
            vec![true, true, false, false, false],
            vec![true, true, true, false, false],
            vec![true, true, true, true, false],
            vec![true, true, true, true, true], // a padding query: its output is never used
        ];
        assert_eq!(got, want);
    }

    /// The bf16 path (what CUDA runs) computes the same function as fp32: built on the
    /// CPU from the same variables, so it is checked on machines without a GPU too.
    #[test]
    fn bf16_path_matches_fp32() {
        let meta = DataMeta { vocab_size: 300, pad_id: 0, cls_id: 2, sep_id: 3, mask_id: 4, img_id: 5, img_end_id: 6, image: Some(crate::data::ImageGeom { image_size: 8, patch_size: 4, grid: 2 }) };
        let cfg = ModelConfig { d_model: 32, n_layers: 2, n_heads: 4, d_ff: 64, max_len: 16 };
        tch::manual_seed(7);
        let vs = nn::VarStore::new(Device::Cpu);
        let fp32 = M6Model::new(&vs, &cfg, &meta, false);
        let mut vs16 = nn::VarStore::new(Device::Cpu);
        let bf16 = M6Model::new(&vs16, &cfg, &meta, true);
        vs16.copy(&vs).unwrap();
        let (bsz, t) = (3i64, 12i64);
        let b = DeviceBatch {
            ids: Tensor::randint_low(7, 300, [bsz, t], (Kind::Int64, Device::Cpu)),
            labels: Tensor::randint_low(7, 300, [bsz, t], (Kind::Int64, Device::Cpu)),
            prefix_len: Tensor::from_slice(&[6i64, 4, 8]),
            lengths: Tensor::from_slice(&[12i64, 9, 10]),
            patches: Some((Tensor::randint(256, [bsz, 4, 48], (Kind::Uint8, Device::Cpu)), Tensor::from_slice(&[true, false, true]))),
        };
        let (a, c) = (fp32.forward(&b), bf16.forward(&b));
        assert_eq!(c.kind(), Kind::Float);
        let rel = (&a - &c).norm().double_value(&[]) / a.norm().double_value(&[]);
        assert!(rel > 0.0 && rel < 2e-2, "bf16 vs fp32 relative error {rel}");
        let (la, lc) = (fp32.loss(&b).double_value(&[]), bf16.loss(&b).double_value(&[]));
        assert!((la - lc).abs() < 2e-2 * la, "loss {la} vs {lc}");
    }
}
