#!/usr/bin/env python3
"""netevd benchmark: every figure next to its floor, measured in the same run.

  latency      kernel event -> hook start, p50/p99, against `ip monitor`
               seeing the same event plus one fork/exec of the same hook
  ingest       CPU seconds for 100,000 address events, netevd vs ip monitor
  burst        10,000 routes in one batch: route hooks run, final state seen
  rss          idle with 10 links, with 1,000 links; ip monitor alongside
  size         stripped release binary

Run as root from the repository: `make bench`. Writes bench/out/results.md.
"""
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "bench", "out")
BIN = os.path.join(ROOT, "target", "release", "netevd")
NS = f"nvbench-{os.getpid()}"


def sh(*args, **kw):
    return subprocess.run(list(args), check=True, **kw)


def ip(*args):
    sh("ip", "-n", NS, *args)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_idle(pid, quiet=1.0, limit=120):
    """Until the process used no CPU for `quiet` seconds."""
    end = time.time() + limit
    last = cpu_s(pid)
    still = time.time()
    while time.time() < end:
        time.sleep(0.2)
        c = cpu_s(pid)
        if c != last:
            last, still = c, time.time()
        elif time.time() - still >= quiet:
            return
    raise SystemExit(f"process {pid} never went idle")


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


class Daemon:
    def __init__(self, name, config):
        self.dir = os.path.join(OUT, name)
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(os.path.join(self.dir, "hooks"))
        cfg = os.path.join(self.dir, "netevd.yaml")
        with open(cfg, "w") as f:
            f.write(f"system:\n  script_dir: {self.dir}/hooks\n  log_level: warn\n{config}")
        self.log = open(os.path.join(self.dir, "log"), "w")
        self.p = subprocess.Popen(
            ["ip", "netns", "exec", NS, BIN, "--foreground", "--config", cfg],
            stdout=self.log, stderr=self.log)
        time.sleep(0.5)
        wait_idle(self.p.pid, 0.3)

    def hook(self, state, name="stamp"):
        d = os.path.join(self.dir, "hooks", f"{state}.d")
        os.makedirs(d, exist_ok=True)
        dst = os.path.join(d, name)
        shutil.copy(os.path.join(OUT, "stamp"), dst)
        return dst

    def stop(self):
        self.p.terminate()
        self.p.wait()


def monitor(*what):
    f = open(os.path.join(OUT, f"monitor-{'-'.join(what)}.txt"), "w")
    p = subprocess.Popen(["ip", "-n", NS, "-ts", "monitor", *what], stdout=f)
    time.sleep(0.3)
    return p, f.name


def ts_of(line):
    m = re.match(r"\[(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)\]", line)
    return datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f").timestamp() if m else None


def setup():
    sh("ip", "netns", "add", NS)
    ip("link", "set", "lo", "up")
    ip("link", "add", "va", "type", "veth", "peer", "name", "vb")
    ip("link", "set", "va", "up")
    ip("link", "set", "vb", "up")
    ip("addr", "add", "10.0.0.1/24", "dev", "va")
    for i in range(4):  # 10 links in all
        ip("link", "add", f"x{i}", "type", "veth", "peer", "name", f"y{i}")


def latency(results, n=200):
    d = Daemon("latency", "scripts:\n  run_on_startup: false\n")
    hook = d.hook("routes")
    mon, monfile = monitor("route")
    feeder = subprocess.Popen(["ip", "-n", NS, "-batch", "-"], stdin=subprocess.PIPE, text=True)
    sent = {}
    for i in range(n):
        dst = f"10.100.{i // 250}.{i % 250}/32"
        t = time.time()
        feeder.stdin.write(f"route add {dst} via 10.0.0.2\n")
        feeder.stdin.flush()
        sent[dst] = t
        time.sleep(0.1)
    time.sleep(0.5)
    feeder.stdin.close()
    feeder.wait()
    mon.terminate()
    mon.wait()
    d.stop()
    hook_ms, mon_ms = [], []
    for line in open(hook + ".log"):
        t, _, act, dst = line.split()
        if act == "add" and dst in sent:
            hook_ms.append((float(t) - sent[dst]) * 1000)
    for line in open(monfile):
        m = re.search(r"\]\s*(\S+) via", line)
        t = ts_of(line)
        if m and t:
            dst = m.group(1) if "/" in m.group(1) else m.group(1) + "/32"
            if dst in sent:
                mon_ms.append((t - sent[dst]) * 1000)
    # fork/exec of the same hook from a C parent
    fe_hook = os.path.join(OUT, "fe", "stamp")
    os.makedirs(os.path.dirname(fe_hook), exist_ok=True)
    shutil.copy(os.path.join(OUT, "stamp"), fe_hook)
    if os.path.exists(fe_hook + ".log"):
        os.remove(fe_hook + ".log")
    starts = {}
    out = subprocess.run([os.path.join(OUT, "forkexec"), fe_hook, str(n)],
                         capture_output=True, text=True, check=True).stdout
    for line in out.split("\n"):
        if line:
            t, tag = line.split()
            starts[tag] = float(t)
    fe_ms = []
    for line in open(fe_hook + ".log"):
        t, _, _, dst = line.split()
        fe_ms.append((float(t) - starts[dst]) * 1000)
    results["latency"] = dict(
        hooks=len(hook_ms), sent=n, seen_by_monitor=len(mon_ms),
        hook_p50=statistics.median(hook_ms), hook_p99=pct(hook_ms, 99),
        mon_p50=statistics.median(mon_ms), mon_p99=pct(mon_ms, 99),
        fe_p50=statistics.median(fe_ms), fe_p99=pct(fe_ms, 99))


def ingest(results, n=100_000):
    d = Daemon("ingest", "scripts:\n  run_on_startup: false\n")
    mon, _ = monitor("address")
    with open(os.path.join(OUT, "addr.batch"), "w") as f:
        for i in range(n // 2):
            a = f"198.18.{i // 250 % 250}.{i % 250 + 1}/32"
            f.write(f"addr add {a} dev vb\naddr del {a} dev vb\n")
    c0, m0 = cpu_s(d.p.pid), cpu_s(mon.pid)
    t0 = time.time()
    ip("-batch", os.path.join(OUT, "addr.batch"))
    wait_idle(d.p.pid)
    wall = time.time() - t0
    c1, m1 = cpu_s(d.p.pid), cpu_s(mon.pid)
    mon.terminate()
    mon.wait()
    d.stop()
    overruns = open(os.path.join(d.dir, "log")).read().count("overrun")
    results["ingest"] = dict(events=n, cpu=c1 - c0, mon_cpu=m1 - m0, wall=wall, overruns=overruns)


def burst(results, n=10_000):
    d = Daemon("burst", "scripts:\n  run_on_startup: false\n")
    hook = d.hook("routes")
    mon, monfile = monitor("route")
    with open(os.path.join(OUT, "route.batch"), "w") as f:
        for i in range(n):
            f.write(f"route add 10.200.{i // 250}.{i % 250}/32 via 10.0.0.2\n")
    last = f"10.200.{(n - 1) // 250}.{(n - 1) % 250}/32"
    ip("-batch", os.path.join(OUT, "route.batch"))
    wait_idle(d.p.pid, 1.5)
    time.sleep(0.5)
    mon.terminate()
    mon.wait()
    d.stop()
    lines = open(hook + ".log").read().split("\n")
    lines = [l for l in lines if l]
    seen = sum(1 for l in open(monfile) if "10.200." in l)
    results["burst"] = dict(routes=n, hook_runs=len(lines), monitor_seen=seen,
                            last_seen=lines[-1].split()[3] if lines else "",
                            final_right=bool(lines) and lines[-1].split()[3] == last)


def rss(results):
    d = Daemon("rss", "scripts:\n  run_on_startup: false\n")
    mon, _ = monitor("link")
    time.sleep(1)
    idle, mon_idle = rss_kib(d.p.pid), rss_kib(mon.pid)
    with open(os.path.join(OUT, "veth.batch"), "w") as f:
        for i in range(495):  # 990 more: 1,000 links in all
            f.write(f"link add r{i} type veth peer name s{i}\n")
    ip("-batch", os.path.join(OUT, "veth.batch"))
    wait_idle(d.p.pid)
    loaded, mon_loaded = rss_kib(d.p.pid), rss_kib(mon.pid)
    links = len(subprocess.run(["ip", "-n", NS, "-o", "link"], capture_output=True,
                               text=True).stdout.splitlines())
    mon.terminate()
    mon.wait()
    d.stop()
    results["rss"] = dict(idle=idle, mon_idle=mon_idle, loaded=loaded,
                          mon_loaded=mon_loaded, links=links)


def main():
    if os.geteuid() != 0:
        raise SystemExit("bench: run as root (it makes a network namespace)")
    os.makedirs(OUT, exist_ok=True)
    for src in ("stamp", "forkexec"):
        sh("gcc", "-O2", "-o", os.path.join(OUT, src), os.path.join(ROOT, "bench", f"{src}.c"))
    results = {"size": os.path.getsize(BIN)}
    try:
        setup()
        rss(results)
        latency(results)
        ingest(results)
        burst(results)
    finally:
        subprocess.run(["ip", "netns", "del", NS])
    L, I, B, R = results["latency"], results["ingest"], results["burst"], results["rss"]
    floor50 = L["mon_p50"] + L["fe_p50"]
    rows = [
        ("stripped binary", f"{results['size'] / 1024:.0f} KiB", ""),
        (f"idle RSS ({10} links)", f"{R['idle'] / 1024:.2f} MiB",
         f"ip monitor {R['mon_idle'] / 1024:.2f} MiB ({R['idle'] / R['mon_idle']:.2f}x)"),
        (f"RSS with {R['links']} links", f"{R['loaded'] / 1024:.2f} MiB",
         f"ip monitor {R['mon_loaded'] / 1024:.2f} MiB ({R['loaded'] / R['mon_loaded']:.2f}x)"),
        ("event to hook start p50", f"{L['hook_p50']:.2f} ms",
         f"floor {floor50:.2f} ms = ip monitor {L['mon_p50']:.2f} + fork/exec {L['fe_p50']:.2f}; "
         f"netevd is {L['hook_p50'] - floor50:+.2f} ms from it"),
        ("event to hook start p99", f"{L['hook_p99']:.2f} ms",
         f"ip monitor {L['mon_p99']:.2f} + fork/exec {L['fe_p99']:.2f}"),
        ("hooks run / events sent (latency)", f"{L['hooks']} / {L['sent']}",
         f"ip monitor saw {L['seen_by_monitor']}"),
        (f"{I['events']:,} address events, CPU", f"{I['cpu']:.2f} s ({I['events'] / max(I['cpu'], 0.01):,.0f} events/s)",
         f"ip monitor {I['mon_cpu']:.2f} s ({I['cpu'] / max(I['mon_cpu'], 0.01):.2f}x); overruns {I['overruns']}"),
        (f"{B['routes']:,}-route burst", f"{B['hook_runs']:,} route hooks, final state {'right' if B['final_right'] else 'WRONG'}",
         f"ip monitor saw {B['monitor_seen']:,}; last hook saw {B['last_seen']}"),
    ]
    text = "| figure | netevd | same run |\n|---|---|---|\n" + "\n".join(
        f"| {a} | {b} | {c} |" for a, b, c in rows)
    with open(os.path.join(OUT, "results.md"), "w") as f:
        f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    sys.exit(main())
