"""Peer for bench/train.sh: the same work done the usual Python way.

loader: pyarrow reads the same sample shards (shard order shuffled, rows shuffled in
        a bounded buffer, padded int64 batches + uint8 patch arrays), no model.
train:  the same M6-style prefix-LM transformer (pre-LN blocks, tied head, SDPA with
        a prefix-LM mask, patch projection) in PyTorch eager with torch.optim.AdamW
        and grad clipping, fed the same batch shapes; on the CPU in fp32, or with
        --device cuda under bf16 autocast (what m6-train does on CUDA).
        Timed window: Unix times in the output, to cut a GPU utilisation trace.
        Under torchrun (WORLD_SIZE > 1) it is PyTorch DDP (gloo on the CPU, NCCL on
        CUDA), each rank reading its own shards (shards[rank::world]); rank 0 prints
        the tokens/s of all ranks.
Prints one JSON object.
"""
import argparse
import contextlib
import glob
import io
import json
import math
import os
import random
import resource
import time

import numpy as np
import pyarrow.parquet as pq
from PIL import Image


def shards(d):
    with open(os.path.join(d, "manifest.json")) as f:
        m = json.load(f)
    return [os.path.join(d, s["file"]) for s in m["shards"]], m["properties"]


def samples(files, seed, buffer):
    rng = random.Random(seed)
    files = files[:]
    rng.shuffle(files)
    buf = []
    for f in files:
        pf = pq.ParquetFile(f)
        for b in pf.iter_batches(batch_size=256, columns=["id", "task", "input_ids", "image_patches"]):
            ids = b.column("input_ids")
            offs = ids.offsets.to_numpy()
            vals = ids.values.to_numpy()
            tasks = b.column("task").to_pylist()
            patches = b.column("image_patches")
            for i in range(len(b)):
                p = patches[i].as_py() if tasks[i] == "image_text" else None
                buf.append((tasks[i], vals[offs[i]:offs[i + 1]], p))
                if len(buf) >= buffer:
                    yield buf.pop(rng.randrange(len(buf)))
    rng.shuffle(buf)
    yield from buf


def example(task, ids, patches, props, max_len, rng):
    """Returns (ids, labels, prefix_len, patches) like the Rust loader does."""
    mask_id, sep_id = props.get("mask_id", 4), props.get("sep_id", 3)
    if task == "image_text":
        p = props["grid"] ** 2
        prefix = [5] * (p + 1) + [6]
        target = [int(t) for t in ids if t not in (0, 2, 5, 6)] + [sep_id]
        target = target[: max_len + 1 - len(prefix)]
    else:
        toks = [int(t) for t in ids if t != 0][: max_len - 8]
        n = len(toks)
        masked = np.zeros(n, bool)
        want = max(1, round(n * 0.15))
        while masked.sum() < want:
            s = rng.randrange(n)
            masked[s:s + rng.randint(1, 5)] = True
        prefix, target = [], []
        for i, t in enumerate(toks):
            if masked[i]:
                if i == 0 or not masked[i - 1]:
                    prefix.append(mask_id)
                    target.append(mask_id)
                target.append(t)
            else:
                prefix.append(t)
        target.append(sep_id)
        target = target[: max_len + 1 - len(prefix)]
    seq = prefix + target[:-1]
    labels = [-100] * (len(prefix) - 1) + target
    return seq, labels, len(prefix), patches


def batches(files, props, bs, max_len, seed, buffer):
    rng = random.Random(seed + 1)
    cur = []
    for task, ids, p in samples(files, seed, buffer):
        cur.append(example(task, ids, p, props, max_len, rng))
        if len(cur) == bs:
            yield collate(cur, props)
            cur = []
    if cur:
        yield collate(cur, props)


def patches_of(b, props):
    """One sample's patches (grid*grid, patch_size*patch_size*3): tokenize's default
    stores the square as a JPEG (image_encoding "jpeg"), decoded here with Pillow the
    way the Rust loader's reader threads decode it; "raw" samples are the patches."""
    g, ps = props["grid"], props["patch_size"]
    if props.get("image_encoding", "raw") == "jpeg":
        a = np.asarray(Image.open(io.BytesIO(b)).convert("RGB"))
        return a.reshape(g, ps, g, ps, 3).transpose(0, 2, 1, 3, 4).reshape(g * g, -1)
    return np.frombuffer(b, np.uint8).reshape(g * g, -1)


def collate(ex, props):
    t = max(len(e[0]) for e in ex)
    ids = np.zeros((len(ex), t), np.int64)
    labels = np.full((len(ex), t), -100, np.int64)
    for r, e in enumerate(ex):
        ids[r, : len(e[0])] = e[0]
        labels[r, : len(e[1])] = e[1]
    pre = np.array([e[2] for e in ex], np.int64)
    lens = np.array([len(e[0]) for e in ex], np.int64)
    patches = None
    if any(e[3] is not None for e in ex):
        g, ps = props["grid"], props["patch_size"]
        patches = np.zeros((len(ex), g * g, ps * ps * 3), np.uint8)
        has = np.zeros(len(ex), bool)
        for r, e in enumerate(ex):
            if e[3] is not None:
                patches[r] = patches_of(e[3], props)
                has[r] = True
        patches = (patches, has)
    return ids, labels, pre, lens, patches


def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_loader(a, files, props):
    parquet_bytes = sum(os.path.getsize(f) for f in files)
    epochs = 3  # as m6-train --loader-bench
    t0 = time.perf_counter()
    n = 0
    for e in range(epochs):
        for b in batches(files, props, a.batch_size, a.max_len, a.seed + e, a.buffer):
            n += len(b[0])
    s = time.perf_counter() - t0
    return {"samples": n, "epochs": epochs, "seconds": s, "samples_per_s": n / s,
            "parquet_mb_per_s": epochs * parquet_bytes / 1e6 / s, "peak_rss_mb": rss_mb()}


def bench_train(a, files, props):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1:
        import torch.distributed as dist
        dist.init_process_group("nccl" if a.device == "cuda" else "gloo")
        files = files[rank::world]
    dev = torch.device(a.device if a.device != "cuda" or world == 1 else "cuda:%s" % os.environ.get("LOCAL_RANK", "0"))
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else contextlib.nullcontext()
    V, d, L, H, ff = props["vocab_size"], a.d_model, a.n_layers, a.n_heads, a.d_ff
    pdim = props["patch_size"] ** 2 * 3
    P = props["grid"] ** 2

    class Block(nn.Module):
        def __init__(s):
            super().__init__()
            s.ln1, s.qkv, s.proj = nn.LayerNorm(d), nn.Linear(d, 3 * d), nn.Linear(d, d)
            s.ln2, s.fc1, s.fc2 = nn.LayerNorm(d), nn.Linear(d, ff), nn.Linear(ff, d)

        def forward(s, x, mask):
            B, T, _ = x.shape
            q, k, v = s.qkv(s.ln1(x)).view(B, T, 3, H, d // H).permute(2, 0, 3, 1, 4)
            a_ = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            x = x + s.proj(a_.transpose(1, 2).reshape(B, T, d))
            return x + s.fc2(F.gelu(s.fc1(s.ln2(x))))

    class M6(nn.Module):
        def __init__(s):
            super().__init__()
            s.tok, s.pos, s.mod = nn.Embedding(V, d), nn.Embedding(a.max_len, d), nn.Embedding(2, d)
            s.patch = nn.Linear(pdim, d)
            s.blocks = nn.ModuleList([Block() for _ in range(L)])
            s.ln = nn.LayerNorm(d)

        def forward(s, ids, pre, lens, patches):
            B, T = ids.shape
            pos = torch.arange(T, device=ids.device)
            x = s.tok(ids)
            modality = torch.zeros(B, T, dtype=torch.long, device=ids.device)
            if patches is not None:
                p, has = patches
                pe = s.patch(p.float() / 127.5 - 1)
                full = torch.cat([x.new_zeros(B, 1, d), pe, x.new_zeros(B, T - 1 - P, d)], 1)
                slot = ((pos >= 1) & (pos <= P))[None, :] & has[:, None]
                x = torch.where(slot[..., None], full, x)
                modality = slot.long()
            x = x + s.pos(pos)[None] + s.mod(modality)
            i, j = pos[None, :, None], pos[None, None, :]
            mask = ((j < lens[:, None, None]) & ((j < pre[:, None, None]) | (j <= i))) | (i == j)
            mask = mask[:, None]
            for b in s.blocks:
                x = b(x, mask)
            return s.ln(x) @ s.tok.weight.T

    model = M6().to(dev)
    if world > 1:
        # Text-only batches leave the patch projection without a gradient.
        model = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.98), weight_decay=0.01)
    def epochs():  # as m6-train, the data repeats with a new shuffle each epoch
        e = 0
        while True:
            yield from batches(files, props, a.batch_size, a.max_len, a.seed + e, a.buffer)
            e += 1

    it = epochs()

    def step():
        ids, labels, pre, lens, patches = next(it)
        t = lambda x: torch.from_numpy(x).to(dev, non_blocking=True)
        tp = None if patches is None else (t(patches[0]), t(patches[1]))
        with amp:
            logits = model(t(ids), t(pre), t(lens), tp)
        loss = F.cross_entropy(logits.float().view(-1, V), t(labels).view(-1), ignore_index=-100)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        return int(lens.sum()), len(ids), loss.detach()

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    # Warm-up, as m6-train's first steps are left out too (allocator, and on CUDA the
    # lazily loaded kernels of each new shape).
    for _ in range(a.warmup):
        step()
    sync()
    t0, unix0 = time.perf_counter(), time.time()
    toks = samples_ = 0
    losses = []
    for _ in range(a.steps):
        t, n, loss = step()
        losses.append(loss)
        toks += t
        samples_ += n
        if len(losses) % a.log_every == 0:
            float(loss)  # a training loop reads its loss now and then, which waits for the device
    sync()
    s = time.perf_counter() - t0
    if world > 1:
        import torch.distributed as dist
        tot = torch.tensor([toks, samples_], dtype=torch.float64)
        dist.all_reduce(tot)
        toks, samples_ = int(tot[0]), int(tot[1])
        # The slowest rank's time bounds the job's.
        st = torch.tensor([s], dtype=torch.float64)
        dist.all_reduce(st, op=dist.ReduceOp.MAX)
        s = float(st[0])
    loss = float(losses[-1])
    out = {"steps": a.steps, "warmup_steps": a.warmup, "seconds": s, "tokens_per_s": toks / s, "samples_per_s": samples_ / s, "final_loss": loss,
           "torch": torch.__version__, "threads": a.threads, "peak_rss_mb": rss_mb(), "device": str(dev),
           "time_start": unix0, "time_end": time.time(),
           "parameters": sum(p.numel() for p in model.parameters()), "world_size": world}
    if dev.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(dev)
        out["gpu_peak_mem_mb"] = torch.cuda.max_memory_allocated(dev) / 2**20
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--input", required=True)
    p.add_argument("--mode", choices=["loader", "train"], required=True)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-len", type=int, default=128)
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--n-layers", type=int, default=4)
    p.add_argument("--n-heads", type=int, default=4)
    p.add_argument("--d-ff", type=int, default=1024)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--buffer", type=int, default=1024)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--device", default="cpu", help="cpu, or cuda (bf16 autocast)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--log-every", type=int, default=1, help="read the loss (a device sync) every N steps")
    a = p.parse_args()
    files, props = shards(a.input)
    props = {k: (int(v) if isinstance(v, (int, float)) or (isinstance(v, str) and v.isdigit()) else v) for k, v in props.items()}
    out = bench_loader(a, files, props) if a.mode == "loader" else bench_train(a, files, props)
    if os.environ.get("RANK", "0") == "0":
        print(json.dumps(out))


if __name__ == "__main__":
    main()
