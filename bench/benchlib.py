"""benchlib.py: the reading back of the CPU benchmarks' measurements (bench/lib.sh's `measure`
writes WORK/NAME.ROUND.json, one JSON object of `imgsim bench --json` or a peer's same fields).

pick(work, name, rounds, how): the rounds of one configuration combined, None if none ran.
  how="best": the round with the lowest median latency (the least disturbed round of a shared
              machine; cpu_vs_torch.sh, cpu_int8.sh, cpu_qdq.sh)
  how="median": the round whose median latency is the median over rounds (cpu_models.sh)
  The result gets ips_median = batch / median latency, n_rounds and latency_ms_best (the lowest
  latency of any round).
ratio(a, b, target=None): "1.23x" (with " (target >= 1.2x)" when given).
"""
import json


def rounds_of(work, name, rounds):
    runs = []
    for r in range(1, rounds + 1):
        try:
            with open("%s/%s.%d.json" % (work, name, r)) as f:
                runs.append(json.load(f))
        except (OSError, ValueError):
            pass
    return runs


def pick(work, name, rounds, how="best"):
    runs = rounds_of(work, name, rounds)
    if not runs:
        return None
    runs.sort(key=lambda j: j["latency_ms_median"])
    j = runs[0] if how == "best" else runs[(len(runs) - 1) // 2]
    j = dict(j)
    j["ips_median"] = j["batch_size"] * 1000.0 / j["latency_ms_median"]
    j["n_rounds"] = len(runs)
    j["latency_ms_best"] = min(r.get("latency_ms_min", r["latency_ms_median"]) for r in runs)
    return j


def ratio(a, b, target=None):
    s = "%.2fx" % (a / b) if b else "n/a"
    if target is not None:
        s += " (target >= %gx)" % target
    return s
