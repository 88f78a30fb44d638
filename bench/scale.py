#!/usr/bin/env python3
"""netevd at scale: full routing tables and many links, every figure next to
`ip monitor` measured in the same run (these machines are shared and noisy,
so only ratios within one run mean anything).

  Idle is measured once 300 routes came and went (`warm`): the bounded
  event and hook-run histories are full then, as in any daemon that has
  run a while.

  table      1,000,000 IPv4 + 100,000 IPv6 routes added in one `ip -batch`
             in a namespace: netevd's RSS and CPU against `ip monitor route`
             seeing the same stream; then every route deleted: RSS against
             idle. Goal: at most 64 MiB (48 bytes a route), CPU at most
             1.0x ip monitor's, back within 1.2x of idle.
  none       the same table with `monitoring.routes: none`: RSS within 1.1x
             of idle throughout.
  hook       100,000 routes with a route hook running during the load (a
             compiled no-op, so the hook's own start-up is not measured),
             then deleted; once every hook ran, RSS within 1.2x of idle.
             100,000, not the full table: each route is a hook run of its
             own, serialised per link, and a million runs take minutes.
  links      10,000 veth pairs: RSS against ip monitor's, and after they
             are deleted against idle.
  overflow   a burst of 100,000 routes against a 4 KiB receive buffer
             (growth capped at 4 MiB): the final state right, at most 20
             resyncs started, CPU at most 2x the same burst without
             overflow.

Run as root from the repository: `make bench-scale`. SCALE=0.1 runs a tenth
of every size (a quick check); PHASES=table,links runs only those. Writes
bench/out/scale.md (and scale.json) when every phase ran.
"""
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "bench", "out")
BIN = os.path.join(ROOT, "target", "release", "netevd")
NS = f"nvscale-{os.getpid()}"
SCALE = float(os.environ.get("SCALE", "1"))
STARTED = []


def n_of(n):
    return max(1000, int(n * SCALE))


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


def hwm_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_idle(pid, quiet=1.0, limit=600):
    """Until the process used no CPU for `quiet` seconds."""
    end = time.time() + limit
    last, still = cpu_s(pid), time.time()
    while time.time() < end:
        time.sleep(0.2)
        c = cpu_s(pid)
        if c != last:
            last, still = c, time.time()
        elif time.time() - still >= quiet:
            return
    raise SystemExit(f"pid {pid} did not settle in {limit} s")


class Daemon:
    def __init__(self, name, config="", system=""):
        self.dir = os.path.join(OUT, "scale", name)
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(os.path.join(self.dir, "hooks"))
        self.sock = os.path.join(self.dir, "ctl.sock")
        cfg = os.path.join(self.dir, "netevd.yaml")
        with open(cfg, "w") as f:
            f.write(f"system:\n  script_dir: {self.dir}/hooks\n  log_level: warn\n{system}"
                    f"scripts:\n  run_on_startup: false\n{config}"
                    f"control:\n  socket: {self.sock}\n")
        self.log = open(os.path.join(self.dir, "log"), "w")
        self.p = subprocess.Popen(
            ["ip", "netns", "exec", NS, BIN, "--foreground", "--config", cfg],
            stdout=self.log, stderr=self.log)
        STARTED.append(self.p)
        time.sleep(0.5)
        wait_idle(self.p.pid, 0.5)
        if self.p.poll() is not None:
            raise SystemExit(f"netevd ({name}) exited: {open(self.log.name).read()}")

    def status(self):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(30)
            s.connect(self.sock)
            s.sendall(b'{"command":"status"}\n')
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
        return json.loads(buf)["ok"]

    def routes_hook(self):
        d = os.path.join(self.dir, "hooks", "routes.d")
        os.makedirs(d)
        shutil.copy(os.path.join(OUT, "noop"), os.path.join(d, "noop"))
        # Picked up at the next event; the hook tree is read per run.

    def settle(self, quiet=1.0):
        """Idle, and the trim after a burst (500 ms after the last input)
        has run."""
        wait_idle(self.p.pid, quiet)
        time.sleep(0.7)
        wait_idle(self.p.pid, 0.5)

    def stop(self):
        self.p.terminate()
        self.p.wait()


class Monitor:
    """`ip monitor` on the same stream, output discarded."""

    def __init__(self, *what):
        self.p = subprocess.Popen(["ip", "-n", NS, "monitor", *what],
                                  stdout=subprocess.DEVNULL)
        STARTED.append(self.p)
        time.sleep(0.3)

    def stop(self):
        self.p.terminate()
        self.p.wait()


def batch(lines, name):
    path = os.path.join(OUT, "scale", name)
    with open(path, "w") as f:
        f.writelines(lines)
    t = time.time()
    sh("ip", "-n", NS, "-batch", path)
    return time.time() - t


def v4_routes(n, verb="add"):
    # 10.0.0.0/8 and up in /24s, through the veth: distinct destinations,
    # one gateway, as a full table through one peer looks.
    for i in range(n):
        a = 0x0b000000 + (i << 8)
        yield (f"route {verb} {a >> 24}.{(a >> 16) & 255}.{(a >> 8) & 255}.0/24 "
               f"via 10.0.0.2 dev va\n")


def v6_routes(n, verb="add"):
    for i in range(n):
        yield f"route {verb} 2001:db8:{i >> 16:x}:{i & 0xffff:x}::/64 via fd00::2 dev va\n"


def setup():
    os.makedirs(os.path.join(OUT, "scale"), exist_ok=True)
    sh("gcc", "-O2", "-o", os.path.join(OUT, "noop"), "-x", "c", "-",
       input=b"int main(void) { return 0; }\n")
    sh("ip", "netns", "add", NS)
    ip("link", "set", "lo", "up")
    ip("link", "add", "va", "type", "veth", "peer", "name", "vb")
    ip("link", "set", "va", "up")
    ip("link", "set", "vb", "up")
    ip("addr", "add", "10.0.0.1/24", "dev", "va")
    ip("addr", "add", "fd00::1/64", "dev", "va", "nodad")
    # Links made from here on have no IPv6: their link-local routes would
    # come and go while routes are counted.
    sh("ip", "netns", "exec", NS, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")
    for i in range(4):  # 10 links in all
        ip("link", "add", f"x{i}", "type", "veth", "peer", "name", f"y{i}")


def warm(d):
    """300 routes come and go first: the event and hook-run histories
    (bounded rings) are full then, as in a daemon that has run a while, so
    idle is not measured with them empty."""
    lines = [f"route add 12.{i >> 8}.{i & 255}.0/24 via 10.0.0.2 dev va\n" for i in range(300)]
    batch(lines + [l.replace(" add ", " del ") for l in lines], "warm")
    d.settle()


def count_routes(d, want, limit=600):
    end = time.time() + limit
    while time.time() < end:
        n = d.status()["routes"]
        if n == want:
            return
        time.sleep(0.5)
    raise SystemExit(f"the daemon holds {n} routes, not {want}")


def table(R):
    """The full table against ip monitor, then deleted."""
    n4, n6 = n_of(1_000_000), n_of(100_000)
    d = Daemon("table")
    warm(d)
    base = d.status()["routes"]
    idle = rss_kib(d.p.pid)
    mon = Monitor("route")
    mon_idle = rss_kib(mon.p.pid)
    c0, m0 = cpu_s(d.p.pid), cpu_s(mon.p.pid)
    t = batch(list(v4_routes(n4)) + list(v6_routes(n6)), "table-add")
    count_routes(d, base + n4 + n6)
    d.settle()
    wait_idle(mon.p.pid, 1.0)
    cpu, mcpu = cpu_s(d.p.pid) - c0, cpu_s(mon.p.pid) - m0
    loaded, peak = rss_kib(d.p.pid), hwm_kib(d.p.pid)
    mon_loaded = rss_kib(mon.p.pid)
    s = d.status()
    batch(list(v4_routes(n4, "del")) + list(v6_routes(n6, "del")), "table-del")
    count_routes(d, base)
    d.settle()
    after = rss_kib(d.p.pid)
    R["table"] = dict(n4=n4, n6=n6, add_s=t, idle=idle, loaded=loaded, peak=peak,
                      after=after, cpu=cpu, mon_cpu=mcpu, mon_idle=mon_idle,
                      mon_loaded=mon_loaded, overruns=s["counters"]["netlink_overruns"])
    mon.stop()
    d.stop()


def none(R):
    n4, n6 = n_of(1_000_000), n_of(100_000)
    d = Daemon("none", "monitoring:\n  routes: none\n")
    warm(d)
    idle = rss_kib(d.p.pid)
    c0 = cpu_s(d.p.pid)
    batch(list(v4_routes(n4)) + list(v6_routes(n6)), "none-add")
    d.settle()
    loaded, peak = rss_kib(d.p.pid), hwm_kib(d.p.pid)
    routes = d.status()["routes"]
    batch(list(v4_routes(n4, "del")) + list(v6_routes(n6, "del")), "none-del")
    d.settle()
    R["none"] = dict(idle=idle, loaded=loaded, peak=peak, after=rss_kib(d.p.pid),
                     routes=routes, cpu=cpu_s(d.p.pid) - c0)
    d.stop()


def hook(R):
    n = n_of(100_000)
    d = Daemon("hook")
    d.routes_hook()
    warm(d)
    base = d.status()["routes"]
    idle = rss_kib(d.p.pid)
    t0 = time.time()
    batch(list(v4_routes(n)), "hook-add")
    count_routes(d, base + n)
    loaded = rss_kib(d.p.pid)
    batch(list(v4_routes(n, "del")), "hook-del")
    count_routes(d, base)
    d.settle(quiet=2.0)
    s = d.status()
    R["hook"] = dict(n=n, idle=idle, loaded=loaded, peak=hwm_kib(d.p.pid),
                     after=rss_kib(d.p.pid), runs=s["counters"]["hooks_started"],
                     coalesced=s["counters"]["coalesced"], secs=time.time() - t0)
    d.stop()


def links(R):
    n = n_of(10_000)
    d = Daemon("links")
    warm(d)
    idle = rss_kib(d.p.pid)
    mon = Monitor("link", "address")
    mon_idle = rss_kib(mon.p.pid)
    batch([f"link add l{i} type veth peer name p{i}\n" for i in range(n // 2)], "links-add")
    want = d.status()["links"]
    d.settle()
    wait_idle(mon.p.pid, 1.0)
    loaded, mon_loaded = rss_kib(d.p.pid), rss_kib(mon.p.pid)
    batch([f"link del l{i}\n" for i in range(n // 2)], "links-del")
    d.settle()
    R["links"] = dict(n=n, links=want, idle=idle, loaded=loaded, after=rss_kib(d.p.pid),
                      mon_idle=mon_idle, mon_loaded=mon_loaded)
    mon.stop()
    d.stop()


def overflow(R):
    """The same burst against a 4 KiB buffer and a 4 MiB one: routes
    spread over the ten links, with every x link set up then down and up
    again inside the burst. The daemon's routes and link states must end as
    the kernel's."""
    n = n_of(100_000)
    lines = list(v4_routes(n))
    for i in range(4):
        lines[i * n // 5: i * n // 5] = [f"link set x{i} up\n", f"link set y{i} up\n",
                                         f"link set x{i} down\n", f"link set x{i} up\n"]
    out = {}
    for name, buf in (("small", 4096), ("large", 4 << 20)):
        d = Daemon(f"overflow-{name}", system=(f"  netlink_receive_buffer: {buf}\n"
                                               f"  netlink_receive_buffer_max: {4 << 20}\n"))
        d.settle()
        base = d.status()["routes"]
        c0 = cpu_s(d.p.pid)
        batch(lines, f"overflow-{name}-add")
        count_routes(d, base + n)
        d.settle()
        s = d.status()
        cpu = cpu_s(d.p.pid) - c0
        kernel = {l["ifname"]: l["operstate"] for l in
                  json.loads(subprocess.run(["ip", "-n", NS, "-j", "link"], check=True,
                                            capture_output=True, text=True).stdout)}
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
            c.connect(d.sock)
            c.sendall(b'{"command":"interfaces"}\n')
            buf_ = b""
            while not buf_.endswith(b"\n"):
                buf_ += c.recv(1 << 20)
        mine = {i["name"]: i["operstate"] for i in json.loads(buf_)["ok"]["interfaces"]}
        wrong = sorted(k for k in kernel if mine.get(k) != kernel[k])
        k = s["counters"]
        out[name] = dict(cpu=cpu, overruns=k["netlink_overruns"],
                         started=k["resyncs_started"], completed=k["resyncs_completed"],
                         buffer=k.get("netlink_receive_buffer", 0), wrong=wrong,
                         links=len(kernel))
        batch(list(v4_routes(n, "del")), f"overflow-{name}-del")
        count_routes(d, base)
        d.stop()
    R["overflow"] = out


def mib(kib):
    return f"{kib / 1024:.1f} MiB"


def verdict(ok):
    return "met" if ok else "NOT met"


def report(R):
    T, N, H, L, O = R["table"], R["none"], R["hook"], R["links"], R["overflow"]
    routes = T["n4"] + T["n6"]
    per = (T["loaded"] - T["idle"]) * 1024 / routes
    rows = [
        (f"{T['n4']:,} IPv4 + {T['n6']:,} IPv6 routes: RSS",
         f"{mib(T['loaded'])} (peak {mib(T['peak'])}); {per:.1f} bytes a route above idle; "
         f"ip monitor {mib(T['mon_loaded'])}; goal at most 64 MiB: "
         f"{verdict(T['loaded'] <= 64 * 1024)}"),
        ("  the same: daemon CPU",
         f"{T['cpu']:.2f} s; ip monitor {T['mon_cpu']:.2f} s "
         f"({T['cpu'] / max(T['mon_cpu'], 0.01):.2f}x), goal at most 1.0x: "
         f"{verdict(T['cpu'] <= T['mon_cpu'])}; {T['overruns']} overruns"),
        ("  after deletion: RSS",
         f"{mib(T['after'])}; idle {mib(T['idle'])} ({T['after'] / T['idle']:.2f}x), "
         f"goal at most 1.2x: {verdict(T['after'] <= 1.2 * T['idle'])}"),
        ("the same with `monitoring.routes: none`: RSS",
         f"{mib(N['loaded'])} loaded, {mib(N['after'])} after; idle {mib(N['idle'])} "
         f"({N['loaded'] / N['idle']:.2f}x), goal at most 1.1x: "
         f"{verdict(N['loaded'] <= 1.1 * N['idle'])}; {N['routes']} routes held; "
         f"CPU {N['cpu']:.2f} s"),
        (f"{H['n']:,} routes with a route hook, deleted: RSS",
         f"{mib(H['after'])} after every hook ran ({H['runs']:,} runs, {H['coalesced']:,} "
         f"coalesced, {H['secs']:.0f} s); loaded {mib(H['loaded'])}, peak {mib(H['peak'])}; "
         f"idle {mib(H['idle'])} ({H['after'] / H['idle']:.2f}x), goal at most 1.2x: "
         f"{verdict(H['after'] <= 1.2 * H['idle'])}"),
        (f"{L['n']:,} links: RSS",
         f"{mib(L['loaded'])}; ip monitor {mib(L['mon_loaded'])} "
         f"({L['loaded'] / L['mon_loaded']:.2f}x), goal at most 1.3x: "
         f"{verdict(L['loaded'] <= 1.3 * L['mon_loaded'])}"),
        ("  after deletion: RSS",
         f"{mib(L['after'])}; idle {mib(L['idle'])} ({L['after'] / L['idle']:.2f}x), "
         f"goal at most 1.2x: {verdict(L['after'] <= 1.2 * L['idle'])}"),
        ("burst against a 4 KiB buffer",
         f"{O['small']['overruns']} overruns, {O['small']['started']} resyncs started, "
         f"{O['small']['completed']} completed, buffer now {O['small']['buffer']:,} bytes; "
         f"links wrong: {O['small']['wrong'] or 'none'} of {O['small']['links']}; goal at most 20 "
         f"resyncs: {verdict(O['small']['started'] <= 20 and not O['small']['wrong'])}"),
        ("  its CPU against no overflow",
         f"{O['small']['cpu']:.2f} s against {O['large']['cpu']:.2f} s "
         f"({O['small']['cpu'] / max(O['large']['cpu'], 0.01):.2f}x; "
         f"{O['large']['overruns']} overruns there), goal at most 2x: "
         f"{verdict(O['small']['cpu'] <= 2 * O['large']['cpu'])}"),
    ]
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    machine = (f"{os.cpu_count()} CPUs ({cpu}), "
               f"{os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / 2**30:.1f} GiB, "
               f"Linux {platform.release()}, scale {SCALE}")
    text = ["| figure | result |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows]
    md = f"Machine: {machine}.\n\n" + "\n".join(text) + "\n"
    with open(os.path.join(OUT, "scale.md"), "w") as f:
        f.write(md)
    with open(os.path.join(OUT, "scale.json"), "w") as f:
        json.dump(R, f, indent=1)
    print(md)


def main():
    if os.geteuid() != 0:
        raise SystemExit("bench/scale.py must run as root (it makes a network namespace)")
    if not os.path.exists(BIN):
        raise SystemExit("no release build: run `make bench-scale`")
    R = {}
    setup()
    try:
        phases = os.environ.get("PHASES", "table,none,hook,links,overflow").split(",")
        for f in (table, none, hook, links, overflow):
            if f.__name__ not in phases:
                continue
            t = time.time()
            f(R)
            print(f"{f.__name__}: {time.time() - t:.0f} s {R.get(f.__name__)}", flush=True)
    finally:
        for p in STARTED:
            if p.poll() is None:
                p.kill()
                p.wait()
        subprocess.run(["ip", "netns", "del", NS])
    if len(R) == 5:
        report(R)


if __name__ == "__main__":
    main()
