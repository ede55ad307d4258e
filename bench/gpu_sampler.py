"""GPU utilisation trace for bench/train_gpu.sh: one CSV line every PERIOD seconds
(unix_time, utilization.gpu %, memory used MiB, power W) until SIGTERM.

Unix times, so the trace can be cut to the timed steps of a run (m6-train's log.jsonl
`time`, the peer's time_start/time_end). NVML through pynvml (nvidia-ml-py) when it
is installed, else one `nvidia-smi --query-gpu` per sample.
"""
import signal
import subprocess
import sys
import time

period = float(sys.argv[1]) if len(sys.argv) > 1 else 0.1
stop = False


def on_term(*_):
    global stop
    stop = True


signal.signal(signal.SIGTERM, on_term)
try:
    import pynvml

    pynvml.nvmlInit()
    h = pynvml.nvmlDeviceGetHandleByIndex(0)

    def sample():
        u = pynvml.nvmlDeviceGetUtilizationRates(h)
        m = pynvml.nvmlDeviceGetMemoryInfo(h)
        return u.gpu, m.used / 2**20, pynvml.nvmlDeviceGetPowerUsage(h) / 1000
except Exception:  # no pynvml: the slower nvidia-smi path
    def sample():
        q = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu,memory.used,power.draw", "--format=csv,noheader,nounits"],
                           capture_output=True, text=True, check=True).stdout.split("\n")[0]
        u, m, p = (float(x) for x in q.split(","))
        return u, m, p

print("time,util_pct,mem_mib,power_w", flush=True)
while not stop:
    try:
        u, m, p = sample()
    except Exception as e:  # no GPU here: an empty trace, and the report says so
        print("no GPU trace: %s" % e, file=sys.stderr)
        break
    print("%.3f,%d,%.0f,%.1f" % (time.time(), u, m, p), flush=True)
    time.sleep(period)
