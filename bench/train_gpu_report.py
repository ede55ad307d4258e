"""Sums up bench/train_gpu.sh's runs into RUNS/train_gpu.json and prints a table.

Usage: train_gpu_report.py RUNS ROUNDS SMALL_WARM SMALL_STEPS BASE_WARM BASE_STEPS
Throughput is taken over the timed steps only (after the warm-up steps; the last step,
which also evaluates and writes the checkpoint, left out), from log.jsonl's `time`;
GPU utilisation is the mean of the NVML samples inside that same window.
"""
import csv
import json
import os
import struct
import sys

runs = sys.argv[1]
rounds, small_warm, small_steps, base_warm, base_steps = (int(x) for x in sys.argv[2:7])


def path(*p):
    return os.path.join(runs, *p)


def load_json(name):
    try:
        with open(path(name)) as f:
            text = f.read().strip()
        return json.loads(text.splitlines()[-1]) if text else None
    except (OSError, ValueError):
        return None


def err_tail(name):
    try:
        with open(path(name + ".err")) as f:
            return f.read()[-800:]
    except OSError:
        return None


def trace(name, t0, t1):
    """Mean utilisation and power, peak memory, over NVML samples with t0 <= time <= t1."""
    try:
        rows = [r for r in csv.DictReader(open(path("smi-%s.csv" % name))) if t0 <= float(r["time"]) <= t1]
    except OSError:
        rows = []
    if not rows:
        return {"gpu_util_pct": None, "samples": 0}
    return {
        "gpu_util_pct": sum(float(r["util_pct"]) for r in rows) / len(rows),
        "gpu_mem_mib_peak": max(float(r["mem_mib"]) for r in rows),
        "power_w_mean": sum(float(r["power_w"]) for r in rows) / len(rows),
        "samples": len(rows),
    }


def m6_run(name, warm, steps):
    summary = load_json(name + ".json")
    try:
        log = [json.loads(l) for l in open(path(name, "log.jsonl"))]
    except OSError:
        return {"error": err_tail(name)}
    start = [l for l in log if l["step"] == warm]
    timed = [l for l in log if warm < l["step"] <= warm + steps]
    if not start or not timed or timed[-1]["step"] != warm + steps:
        return {"error": "the timed steps were not all logged", "stderr": err_tail(name)}
    t0, t1 = start[0]["time"], timed[-1]["time"]
    prev, tokens, samples = t0, 0.0, 0.0
    for l in timed:
        dt = l["time"] - prev
        tokens += l["tokens_per_s"] * dt
        samples += l["samples_per_s"] * dt
        prev = l["time"]
    secs = t1 - t0
    out = {
        "tokens_per_s": tokens / secs,
        "samples_per_s": samples / secs,
        "warmup_steps": warm,
        "timed_steps": steps,
        "seconds": secs,
        "loss_first_line": log[0]["loss"],
        "loss_last_line": log[-1]["loss"],
        "log_every": log[1]["step"] - log[0]["step"] if len(log) > 1 else None,
        "eval_loss": log[-1].get("eval_loss"),
    }
    if summary:
        out["device"], out["parameters"] = summary["device"], summary["parameters"]
    out.update(trace(name, t0, t1))
    return out


def peer_run(name):
    r = load_json(name + ".json")
    if not r:
        return {"error": err_tail(name)}
    out = {k: r[k] for k in ("tokens_per_s", "samples_per_s", "warmup_steps", "steps", "seconds", "final_loss", "torch", "parameters", "gpu_peak_mem_mb") if k in r}
    out.update(trace(name, r["time_start"], r["time_end"]))
    return out


def weights(run):
    """name -> flat list of floats, from the run's latest checkpoint (safetensors, F32)."""
    ck = open(path(run, "checkpoints", "latest")).read().strip()
    with open(path(run, "checkpoints", ck, "model.safetensors"), "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        assert v["dtype"] == "F32", v["dtype"]
        a, b = v["data_offsets"]
        out[k] = struct.unpack("<%df" % ((b - a) // 4), data[a:b])
    return out


def max_diff(a, b):
    try:
        wa, wb = weights(a), weights(b)
    except (OSError, AssertionError, ValueError) as e:
        return "unavailable: %s" % e
    if wa.keys() != wb.keys():
        return "different variables"
    return max(max(abs(x - y) for x, y in zip(wa[k], wb[k])) for k in wa)


def section(size, model, warm, steps):
    ms = [m6_run("m6_%s_r%d" % (size, r), warm, steps) for r in range(1, rounds + 1)]
    ps = [peer_run("peer_%s_r%d" % (size, r)) for r in range(1, rounds + 1)]
    best = lambda runs: max(runs, key=lambda x: x.get("tokens_per_s", -1))
    m, p = best(ms), best(ps)
    s = {"model": model, "m6": m, "peer": p, "rounds": rounds,
         "all_rounds_tokens_per_s": {"m6": [x.get("tokens_per_s") for x in ms], "peer": [x.get("tokens_per_s") for x in ps]}}
    if "tokens_per_s" in m and "tokens_per_s" in p:
        s["ratio_tokens_per_s"] = m["tokens_per_s"] / p["tokens_per_s"]
    if "tokens_per_s" in m and m.get("parameters"):
        # 6 FLOPs per parameter per token (forward + backward), attention left out:
        # a floor on the arithmetic the card did for the real (unpadded) tokens.
        s["m6_model_tflops_6nd"] = 6 * m["parameters"] * m["tokens_per_s"] / 1e12
    return s


machine = open(path("machine.txt")).read().strip().splitlines() if os.path.exists(path("machine.txt")) else []
res = {
    "area": "train_gpu",
    "machine": machine,
    "how": "bench/train_gpu.sh on the device machine: m6-train built here, libtorch from that machine's torch; "
           "peer = the same model in PyTorch eager under bf16 autocast with torch.optim.AdamW (bench/train_peer.py --device cuda); "
           "samples-224 = 224 px images in 16 px patches (196 a sample) + text, max_len 256; "
           "both read the loss (a device sync) every 10 steps",
    "small": section("small", "d_model 256, 4 layers, 4 heads, d_ff 1024, batch 32 (the CPU bench's size)", small_warm, small_steps),
    "base": section("base", "d_model 768, 12 layers, 12 heads, d_ff 3072, batch 64", base_warm, base_steps),
}
loader = load_json("loader.json")
if loader:
    res["loader"] = {"samples_per_s": loader["samples_per_s"], "parquet_mb_per_s": loader["parquet_mb_per_s"],
                     "reader_threads": loader["reader_threads"]}
    for k in ("small", "base"):
        sp = res[k]["m6"].get("samples_per_s")
        if sp:
            res["loader"]["headroom_over_" + k] = loader["samples_per_s"] / sp
else:
    res["loader"] = {"error": err_tail("loader")}
checks = {"rc": open(path("checks.rc")).read().strip() if os.path.exists(path("checks.rc")) else None}
for n in ("ck_straight", "ck_again", "ck_first20", "ck_resumed", "ck_eval_fresh"):
    checks[n] = load_json(n + ".json")
checks["max_abs_weight_diff_resumed_vs_straight"] = max_diff("ck_resumed", "ck_straight")
checks["max_abs_weight_diff_run_to_run"] = max_diff("ck_again", "ck_straight")
if checks["rc"] != "0":
    checks["stderr"] = open(path("checks.err")).read()[-1500:] if os.path.exists(path("checks.err")) else None
res["cuda_checks"] = checks
json.dump(res, open(path("train_gpu.json"), "w"), indent=2)

print(json.dumps(res, indent=1)[:6000])
print("\n%-6s %14s %14s %7s %9s %9s" % ("model", "m6 tok/s", "peer tok/s", "ratio", "m6 util", "peer util"))
for k in ("small", "base"):
    s = res[k]
    f = lambda d, key: ("%.0f" % d[key]) if isinstance(d.get(key), (int, float)) else "-"
    print("%-6s %14s %14s %7s %9s %9s" % (k, f(s["m6"], "tokens_per_s"), f(s["peer"], "tokens_per_s"),
                                          ("%.2f" % s["ratio_tokens_per_s"]) if "ratio_tokens_per_s" in s else "-",
                                          f(s["m6"], "gpu_util_pct"), f(s["peer"], "gpu_util_pct")))
