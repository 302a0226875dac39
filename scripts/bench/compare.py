#!/usr/bin/env python3
"""stickyroute against HAProxy (nbthread 1) and nginx (1 worker): CPU per request, saturation,
added latency and idle-connection memory, in cleartext and over TLS.

Run it through ../compare.sh (it raises the fd limit and finds the binary).  Self-contained:
the configs are in configs/ beside this file, rendered with the ports of this run into a
scratch directory.  The method is the one of the project's shared benchmark harness:

  backends   one nginx, 1 worker, three server blocks jvm1..jvm3 (100-byte body, Tomcat-like
             Set-Cookie for requests without JSESSIONID)
             plus /big, a 65536-byte static file per node (sendfile)
  proxies    each on 127.0.0.1:PROXY, routing the ".jvmN" suffix of JSESSIONID, and on
             127.0.0.1:TLS with a self-signed ECDSA P-256 certificate made for the run (openssl,
             in a temp dir removed at the end), ALPN h2 and http/1.1
  workloads  sticky (Cookie: JSESSIONID=0123456789ABCDEF.jvm2) and new (no cookie)

  cpu   CPU µs per proxied request: h2load --h1 -c 48 -t 1 -n N (keep-alive, as fast as it
        goes); utime+stime(+cutime+cstime) of the proxy's process tree from /proc before and
        after, divided by N (all 2xx).  Sticky and new.
  sat   saturation throughput as a ratio of direct-to-backend throughput in the same run:
        wrk -t1 -c64 for S seconds to jvm2 directly and through the proxy, alternating
        (D P, P D, ...); each adjacent pair gives one ratio; the median of the pairs.  Sticky.
  lat   added p50 at a fixed rate: oha -q 2000 -c 16 -z Ts --latency-correction to jvm2
        directly, then through the proxy; added = proxy p50 - direct p50.  Skipped, loudly,
        when oha is not installed.
  rss   RSS per idle keep-alive client connection: the proxy fresh, warmed with 2000
        requests, then 1000 and 5000 connections that each sent one sticky request and stay
        idle; 1.5 s later VmRSS summed over the proxy's processes; all must still be open.
        KiB/conn = (RSS at the last level - RSS fresh) / last level.

The TLS and large-body phases reproduce the team's extra benchmark (shared/bench/extra/extra.sh
and its tls-idle-rss.py). Each load phase gives the proxy's CPU µs per request the way cpu does
(all 2xx, over the expected ALPN protocol, sticky cookie), each h2load under a 120 s timeout:

  tls_h1       h2load --h1 -n 100000 -c 32 -t 1 https://127.0.0.1:TLS/ : HTTP/1.1 keep-alive
               over TLS 1.3 (the TLS record cost, no handshakes)
  tls_full     a full TLS handshake per request: 5000 requests as batches of
               h2load --h1 -n 16 -c 16 (fresh clients, one request each, nothing to resume);
               CPU per handshake + request
  tls_resumed  a resumed handshake per request: h2load --h1 -n 5000 -c 16 -H 'Connection: close';
               the proxy closes after each response, h2load reconnects with the session ticket of
               that client's previous connection (PSK + ECDHE, no certificate signature)
  tls_h2       h2load -n 100000 -c 32 -m 10 -t 1 (ALPN h2, 10 streams per connection)
  big          h2load --h1 -n 30000 -c 32 -t 1 http://127.0.0.1:PROXY/big : 64 KiB response
               bodies in cleartext (every body checked to be 65536 bytes)
  tls_rss      RSS per idle TLS keep-alive connection: the proxy fresh, warmed with 2000 TLS
               requests, then 2000 TLS connections that each sent one sticky request and stay
               idle; 2 s later KiB/conn = (RSS - RSS before) / 2000; all must still be open and
               the first 50 must still answer.

A measurement of these load phases during which other processes used more than --noise-limit
cores is repeated, at most --retries times; the first quiet one is kept, else the least noisy
(listed under the table). Before the load phases each proxy gets warm-up requests (cleartext,
and TLS h1, TLS h2 and /big for the TLS and large-body phases); the order of these phases
rotates from round to round, like the proxies'.
Rounds rotate the order of the proxies; every figure printed is the median over rounds.
Everything is on loopback and bounded: each tool has a timeout, and the whole run stops at
--max-minutes.  Processes are signalled only by the PIDs this script started.
"""

import argparse
import datetime as dt
import json
import os
import re
import resource
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import extra_tools
from extra_tools import LOAD_PHASES, PHASE_TITLES

HERE = os.path.dirname(os.path.abspath(__file__))
CONF = os.path.join(HERE, "configs")
CLK_TCK = os.sysconf("SC_CLK_TCK")
HOST = "127.0.0.1"
STICKY = "JSESSIONID=0123456789ABCDEF.jvm2"
ROUTES = ("jvm1", "jvm2", "jvm3")
BASE_PHASES = ("cpu", "sat", "lat", "rss")
ALL_PHASES = BASE_PHASES + LOAD_PHASES + ("tls_rss",)


def log(*a):
    print("[%s]" % dt.datetime.now().strftime("%H:%M:%S"), *a, flush=True)


# --------------------------------------------------------------------------- /proc

def stat(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
    except OSError:
        return None
    r = s[s.rfind(")") + 2:].split()
    return {"ppid": int(r[1]), "ticks": sum(int(x) for x in r[11:15]), "start": int(r[19]),
            "sys": int(r[12]) + int(r[14])}


def tree(root):
    """root and its live descendants."""
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = stat(int(d))
            if st:
                kids.setdefault(st["ppid"], []).append(int(d))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        if stat(p):
            out.append(p)
            todo.extend(kids.get(p, []))
    return out


def ticks(pids, field="ticks"):
    """CPU ticks of pids; field "sys" is the kernel-mode part: system calls and the softirq work
    they run (on loopback a send runs the receiver's TCP input too)."""
    return sum((stat(p) or {field: 0})[field] for p in pids)


def tcp_out_segs():
    """Segments the machine's TCP sent so far (/proc/net/snmp), for segments per request."""
    with open("/proc/net/snmp") as f:
        rows = [line.split() for line in f if line.startswith("Tcp:")]
    return int(rows[1][rows[0].index("OutSegs")])


def rss_kb(pids):
    total = 0
    for p in pids:
        try:
            with open("/proc/%d/status" % p) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def children_ticks():
    """CPU of the load generators this script ran and waited for, in ticks."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (r.ru_utime + r.ru_stime) * CLK_TCK


def busy_ticks():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return v[0] + v[1] + v[2] + v[5] + v[6] + v[7]


# --------------------------------------------------------------------------- processes

class Proc:
    """A process tree we started, stopped by its PIDs only."""

    def __init__(self, name, argv, logpath, env=None):
        self.name = name
        self.logf = open(logpath, "ab")
        self.logpath = logpath
        self.p = subprocess.Popen(argv, stdout=self.logf, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        self.seen = {}

    def pids(self):
        ps = tree(self.p.pid)
        for p in ps:
            st = stat(p)
            if st:
                self.seen.setdefault(p, st["start"])
        return ps

    def alive(self):
        return self.p.poll() is None

    def stop(self):
        self.pids()
        if self.alive():
            os.kill(self.p.pid, signal.SIGTERM)
        deadline = time.time() + 15
        while time.time() < deadline and self.leftovers():
            self.p.poll()
            time.sleep(0.1)
        for p in self.leftovers():
            log("  %s: pid %d survived SIGTERM, SIGKILL" % (self.name, p))
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self.logf.close()

    def leftovers(self):
        return [p for p, s in self.seen.items() if (stat(p) or {}).get("start") == s]


def port_open(port):
    try:
        with socket.create_connection((HOST, port), timeout=0.3):
            return True
    except OSError:
        return False


def http_get(port, cookie=None, sock=None, timeout=5.0, path="/"):
    """One keep-alive GET on sock (plain or TLS; a new plain connection when None):
    (status, headers, body, sock)."""
    if sock is None:
        sock = socket.create_connection((HOST, port), timeout=timeout)
    req = "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % (path, port)
    if cookie:
        req += "Cookie: %s\r\n" % cookie
    sock.sendall((req + "\r\n").encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        c = sock.recv(65536)
        if not c:
            raise ConnectionError("closed before the head")
        buf += c
    head, body = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    hd = {}
    for line in lines[1:]:
        k, v = line.split(":", 1)
        hd.setdefault(k.strip().lower(), []).append(v.strip())
    n = int(hd.get("content-length", ["0"])[0])
    while len(body) < n:
        c = sock.recv(65536)
        if not c:
            raise ConnectionError("closed in the body")
        body += c
    return int(lines[0].split()[1]), hd, body.decode("latin-1"), sock


def node_of(body):
    m = re.search(r"node=(jvm\d)", body)
    return m.group(1) if m else None


class OutOfTime(Exception):
    """--max-minutes reached: the run stops and reports what it measured."""


def run_tool(argv, timeout):
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        return p.stdout + p.stderr
    except subprocess.TimeoutExpired as e:
        return "TIMEOUT %s" % (e.stdout or "")


# --------------------------------------------------------------------------- load generators

def h2load(port, n, conns, cookie):
    a = ["h2load", "--h1", "-n", str(n), "-c", str(conns), "-t", "1"]
    if cookie:
        a += ["-H", "Cookie: " + cookie]
    return a + ["http://%s:%d/" % (HOST, port)]


def h2load_2xx(out):
    m = re.search(r"status codes: (\d+) 2xx", out)
    return int(m.group(1)) if m else 0


def wrk(port, secs, conns, cookie):
    a = ["wrk", "-t1", "-c", str(conns), "-d", "%ds" % secs, "--timeout", "5s"]
    if cookie:
        a += ["-H", "Cookie: " + cookie]
    return a + ["http://%s:%d/" % (HOST, port)]


def wrk_rps(out):
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return (float(m.group(1)) if m else None), (int(bad.group(1)) if bad else 0)


def oha(binary, port, rate, secs, conns, cookie):
    return [binary, "--no-tui", "--output-format", "json", "-z", "%ds" % secs, "-c", str(conns),
            "-q", str(rate), "--latency-correction", "-H", "Cookie: " + cookie,
            "http://%s:%d/" % (HOST, port)]


def oha_p50_us(out):
    try:
        j = json.loads(out[out.index("{"):])
        return j["latencyPercentiles"]["p50"] * 1e6
    except (ValueError, KeyError, TypeError):
        return None


# --------------------------------------------------------------------------- the run

class Compare:
    def __init__(self, a):
        self.a = a
        self.work = tempfile.mkdtemp(prefix="stickyroute-compare-")
        # Traversable by a backend nginx worker that runs as another user (nobody under root),
        # which serves the /big files below it.
        os.chmod(self.work, 0o711)
        base = a.port_base
        self.ports = {"jvm1": base + 1, "jvm2": base + 2, "jvm3": base + 3, "proxy": base + 10,
                      "tls": base + 11}
        self.direct = self.ports["jvm2"]
        self.proxy_port = self.ports["proxy"]
        self.tls_port = self.ports["tls"]
        self.certdir = tempfile.mkdtemp(prefix="stickyroute-compare-cert-")
        self.cert = None     # (cert.pem, key.pem, combined.pem), made at the start of run()
        self.round = 0
        self.backend = None
        self.proxy = None
        self.deadline = time.time() + a.max_minutes * 60
        self.results = {}    # proxy -> metric -> [per-round values]
        self.errors = 0
        self.noisy = []      # TLS/big measurements kept although other processes were busy

    def render(self, name):
        src = open(os.path.join(CONF, name)).read()
        for k, v in (("@JVM1@", "jvm1"), ("@JVM2@", "jvm2"), ("@JVM3@", "jvm3"), ("@PROXY@", "proxy"),
                     ("@TLS@", "tls")):
            src = src.replace(k, str(self.ports[v]))
        for k, v in zip(("@TLS_CERT@", "@TLS_KEY@", "@TLS_PEM@"), self.cert):
            src = src.replace(k, v)
        path = os.path.join(self.work, name)
        with open(path, "w") as f:
            f.write(src)
        return path

    def scratch(self, name):
        d = os.path.join(self.work, name)
        for sub in ("logs", "tmp"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        return d

    def entries(self):
        e = {
            "haproxy-t1": ["haproxy", "-db", "-f", self.render("haproxy-t1.cfg")],
            "nginx-w1": ["nginx", "-p", self.scratch("nginx-w1") + "/", "-c",
                         self.render("nginx-w1.conf"), "-g", "daemon off;"],
            # Default flags, access log on (stdout, to this entry's log file).
            "stickyroute": [self.a.bin, "serve", "-c", self.render("stickyroute.yaml")],
        }
        return [(k, e[k]) for k in self.a.only]

    def check_time(self):
        if time.time() > self.deadline:
            raise OutOfTime("--max-minutes %s reached" % self.a.max_minutes)

    def tool(self, argv, timeout):
        """run_tool, cut short at the --max-minutes deadline."""
        self.check_time()
        return run_tool(argv, max(1.0, min(timeout, self.deadline - time.time())))

    def wait_answering(self, port, proc, timeout=20):
        end = time.time() + timeout
        while time.time() < end:
            if not proc.alive():
                raise RuntimeError("%s exited at start-up; see %s" % (proc.name, proc.logpath))
            try:
                if http_get(port, STICKY, timeout=1)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("%s not answering on %d; see %s" % (proc.name, port, proc.logpath))

    def start_backends(self):
        for p in self.ports.values():
            if port_open(p):
                sys.exit("port %d is in use; choose another --port-base (nothing was started)" % p)
        d = self.scratch("backend")
        extra_tools.write_big_files(os.path.join(d, "html"), ROUTES)
        self.backend = Proc("backend", ["nginx", "-p", d + "/", "-c", self.render("backend-nginx.conf"),
                                        "-g", "daemon off;"], os.path.join(d, "stdout.log"))
        for r in ROUTES:
            self.wait_answering(self.ports[r], self.backend)
            st, _, body, s = http_get(self.ports[r], STICKY, path="/big")
            s.close()
            if st != 200 or body.encode("latin-1") != extra_tools.big_body(r):
                raise RuntimeError("backend %s: /big -> %s, %d bytes" % (r, st, len(body)))

    def start_proxy(self, name, argv):
        if port_open(self.proxy_port):
            raise RuntimeError("port %d busy before %s" % (self.proxy_port, name))
        self.proxy = Proc(name, argv, os.path.join(self.scratch(name), "stdout.log"))
        self.wait_answering(self.proxy_port, self.proxy)
        end = time.time() + 10
        while not port_open(self.tls_port):
            if time.time() > end:
                raise RuntimeError("%s not listening on TLS port %d" % (name, self.tls_port))
            time.sleep(0.1)
        time.sleep(0.3)

    def stop_proxy(self):
        if self.proxy:
            self.proxy.stop()
            self.proxy = None
        end = time.time() + 10
        while (port_open(self.proxy_port) or port_open(self.tls_port)) and time.time() < end:
            time.sleep(0.1)

    def check_routing(self):
        problems = []
        for r in ROUTES:
            st, _, body, s = http_get(self.proxy_port, "JSESSIONID=0123456789ABCDEF.%s" % r)
            s.close()
            if st != 200 or node_of(body) != r:
                problems.append(".%s -> %s %s" % (r, st, node_of(body)))
        st, hd, body, s = http_get(self.proxy_port)
        s.close()
        if st != 200 or "set-cookie" not in hd:
            problems.append("no cookie -> %s without Set-Cookie" % st)
        if "big" in self.a.phases:
            st, _, body, s = http_get(self.proxy_port, STICKY, path="/big")
            s.close()
            if st != 200 or body.encode("latin-1") != extra_tools.big_body("jvm2"):
                problems.append("/big .jvm2 -> %s, %d bytes, %s" % (st, len(body), node_of(body)))
        if set(self.a.phases) & {"tls_h1", "tls_full", "tls_resumed", "tls_h2", "tls_rss"}:
            problems += self.check_tls()
        return problems

    def check_tls(self):
        """Sticky routing over TLS 1.3, and a second connection resuming the first one's session
        (what tls_resumed measures)."""
        ctx, session, problems = extra_tools.client_context(), None, []
        for attempt in ("TLS", "resumed TLS"):
            s = extra_tools.tls_connect(ctx, self.tls_port, session=session)
            with s:
                st, _, body, _ = http_get(self.tls_port, STICKY, sock=s)
                if st != 200 or node_of(body) != "jvm2" or s.version() != "TLSv1.3":
                    problems.append("%s .jvm2 -> %s %s over %s" % (attempt, st, node_of(body), s.version()))
                if session is not None and not s.session_reused:
                    problems.append("the proxy did not resume the TLS session")
                session = s.session
        return problems

    def add(self, name, metric, value):
        if value is not None:
            self.results.setdefault(name, {}).setdefault(metric, []).append(value)

    # ---- phases
    def cpu(self, name):
        for wl, cookie in (("sticky", STICKY), ("new", None)):
            self.check_time()
            pids, bpids = self.proxy.pids(), self.backend.pids()
            def snapshot():
                return (busy_ticks(), ticks(pids), ticks(bpids), children_ticks(), time.time(),
                        ticks(pids, "sys"), tcp_out_segs())
            c0 = snapshot()
            out = self.tool(h2load(self.proxy_port, self.a.cpu_requests, self.a.cpu_conns, cookie), 600)
            c1 = snapshot()
            ok = h2load_2xx(out)
            us = (c1[1] - c0[1]) / CLK_TCK * 1e6 / self.a.cpu_requests
            kernel_us = (c1[5] - c0[5]) / CLK_TCK * 1e6 / self.a.cpu_requests
            segs = (c1[6] - c0[6]) / self.a.cpu_requests
            # Noise: CPU of everything but the proxy, the backends and h2load, in cores.
            wall = c1[4] - c0[4]
            ours = sum(c1[i] - c0[i] for i in (1, 2, 3))
            other = max(0.0, (c1[0] - c0[0]) - ours) / CLK_TCK / max(wall, 1e-3)
            flag = "" if ok == self.a.cpu_requests else "  WARNING only %d/%d 2xx" % (ok, self.a.cpu_requests)
            log("  cpu %-6s %6.1f us/req, kernel %.1f, %.2f TCP segments/req  (%.2f s, other processes %.2f cores)%s"
                % (wl, us, kernel_us, segs, wall, other, flag))
            if not flag:
                self.add(name, "cpu_" + wl, us)
                self.add(name, "kernel_" + wl, kernel_us)
                self.add(name, "segs_" + wl, segs)

    def sat(self, name):
        ratios = []
        for i in range(self.a.sat_pairs):
            self.check_time()
            order = [("direct", self.direct), ("proxy", self.proxy_port)]
            if i % 2:
                order.reverse()
            rps = {}
            for target, port in order:
                out = self.tool(wrk(port, self.a.sat_seconds, self.a.sat_conns, STICKY), self.a.sat_seconds + 30)
                r, bad = wrk_rps(out)
                if bad or not r:
                    log("  WARNING sat %s: %s non-2xx, rps %s" % (target, bad, r))
                    r = None
                rps[target] = r
            if rps.get("direct") and rps.get("proxy"):
                ratios.append(rps["proxy"] / rps["direct"])
                log("  sat pair %d: direct %.0f req/s, proxy %.0f req/s, ratio %.3f"
                    % (i + 1, rps["direct"], rps["proxy"], ratios[-1]))
        if ratios:
            self.add(name, "sat_sticky", statistics.median(ratios))

    def lat(self, name):
        if not self.a.oha:
            return
        self.check_time()
        p50 = {}
        for target, port in (("direct", self.direct), ("proxy", self.proxy_port)):
            out = self.tool(oha(self.a.oha, port, self.a.rate, self.a.lat_seconds, self.a.lat_conns, STICKY),
                            self.a.lat_seconds + 30)
            p50[target] = oha_p50_us(out)
        if p50["direct"] is None or p50["proxy"] is None:
            log("  WARNING lat: could not read oha's output")
            return
        added = p50["proxy"] - p50["direct"]
        log("  lat @%d/s: direct p50 %.0f us, proxy p50 %.0f us, added %+.0f us"
            % (self.a.rate, p50["direct"], p50["proxy"], added))
        self.add(name, "added_p50", added)

    def rss(self, name, argv):
        self.check_time()
        self.start_proxy(name, argv)
        socks = []
        try:
            self.tool(h2load(self.proxy_port, 2000, 8, STICKY), 60)
            time.sleep(0.5)
            base = rss_kb(self.proxy.pids())
            line = "  rss fresh %.1f MiB" % (base / 1024)
            per = None
            for level in self.a.idle:
                while len(socks) < level:
                    s = socket.create_connection((HOST, self.proxy_port), timeout=10)
                    st, _, _, s = http_get(self.proxy_port, STICKY, sock=s, timeout=10)
                    socks.append(s)
                time.sleep(1.5)
                now = rss_kb(self.proxy.pids())
                alive = open_count(socks)
                per = (now - base) / level
                line += " | %d idle: %.1f MiB, %.2f KiB/conn, %d open" % (level, now / 1024, per, alive)
                if alive != level:
                    line += " (WARNING: the proxy closed idle connections)"
                    per = None
                    break
            log(line)
            self.add(name, "kib_per_conn", per)
        finally:
            self.stop_proxy()
            for s in socks:
                s.close()

    def run(self):
        try:
            self.cert = extra_tools.make_cert(self.certdir)
            self.start_backends()
            self.rounds()
        except OutOfTime as e:
            log("STOPPED: %s; the figures below are those measured so far" % e)
        finally:
            self.stop_proxy()
            if self.backend:
                self.backend.stop()
            shutil.rmtree(self.certdir, ignore_errors=True)
            if self.a.keep or self.errors:
                log("logs and rendered configs kept in %s" % self.work)
            else:
                shutil.rmtree(self.work, ignore_errors=True)
        self.report()

    def rounds(self):
        entries = self.entries()
        for r in range(self.a.rounds):
            self.round = r
            log("=== round %d/%d" % (r + 1, self.a.rounds))
            k = r % len(entries)
            for name, argv in entries[k:] + entries[:k]:
                self.check_time()
                log("[%s]" % name)
                try:
                    self.entry(name, argv)
                except (RuntimeError, OSError) as e:
                    self.errors += 1
                    log("  ERROR %s: %s" % (name, e))
                    self.stop_proxy()

    def entry(self, name, argv):
        """One proxy's phases in one round: the load phases on one start, each RSS phase on a
        fresh one."""
        base = [p for p in ("cpu", "sat", "lat") if p in self.a.phases]
        k = self.round % len(LOAD_PHASES)
        extra = [p for p in LOAD_PHASES[k:] + LOAD_PHASES[:k] if p in self.a.phases]
        if base or extra:
            self.start_proxy(name, argv)
            try:
                problems = self.check_routing()
                if problems:
                    log("  ROUTING PROBLEMS (measured anyway): %s" % problems)
                if base:
                    self.tool(h2load(self.proxy_port, self.a.warmup, self.a.cpu_conns, STICKY), 120)
                for phase in base:
                    getattr(self, phase)(name)
                if extra:
                    self.extra_load(name, extra)
            finally:
                self.stop_proxy()
        if "rss" in self.a.phases:
            self.rss(name, argv)
        if "tls_rss" in self.a.phases:
            self.tls_rss(name, argv)

    # ---- TLS and large-body phases (the commands: extra_tools.phase_cmds)
    def measure(self, cmds, total):
        """Run cmds one after the other: the proxy's CPU µs per request over all of them
        (utime+stime+cutime+cstime of its process tree, /proc), the CPU other processes used
        meanwhile (cores), the wall time and the tools' outputs."""
        pids, bpids = self.proxy.pids(), self.backend.pids()

        def snapshot():
            return busy_ticks(), ticks(pids), ticks(bpids), children_ticks(), time.time()
        c0 = snapshot()
        outs = [self.tool(c, extra_tools.LOAD_TIMEOUT) for c in cmds]
        time.sleep(0.2)          # the proxy finishes closing connections inside the window
        c1 = snapshot()
        wall = c1[4] - c0[4]
        ours = sum(c1[i] - c0[i] for i in (1, 2, 3))
        other = max(0.0, (c1[0] - c0[0]) - ours) / CLK_TCK / max(wall, 1e-3)
        return (c1[1] - c0[1]) / CLK_TCK * 1e6 / total, other, wall, outs

    def extra_load(self, name, phases):
        for c in extra_tools.warmup_cmds(self.a, self.tls_port, self.proxy_port, STICKY):
            self.tool(c, extra_tools.LOAD_TIMEOUT)
        for phase in phases:
            kept = None          # (other cores, us/req) of the least noisy valid attempt
            for attempt in range(self.a.retries + 1):
                us, other = self.extra_attempt(phase)
                if us is not None and (kept is None or other < kept[0]):
                    kept = (other, us)
                if kept is None or kept[0] <= self.a.noise_limit:
                    break
                log("    other processes used %.2f cores (> --noise-limit %.2f)%s" % (
                    other, self.a.noise_limit, ": repeating" if attempt < self.a.retries else ""))
            if kept is not None:
                self.add(name, phase, kept[1])
                if kept[0] > self.a.noise_limit:
                    self.noisy.append("%s %s round %d (%.2f cores)" % (name, phase, self.round + 1, kept[0]))

    def extra_attempt(self, phase):
        """One measurement of a load phase: (us/req or None when not every request succeeded,
        other processes' cores)."""
        self.check_time()
        cmds, total = extra_tools.phase_cmds(phase, self.a, self.tls_port, self.proxy_port, STICKY)
        us, other, wall, outs = self.measure(cmds, total)
        parsed = [extra_tools.parse_h2load(o) for o in outs]
        problems = extra_tools.load_problems(phase, total, parsed)
        log("  %-11s %7.1f us/req  (%d req in %.2f s, %s %s; other processes %.2f cores)%s" % (
            phase, us, total, wall, parsed[0]["tls"] or "cleartext", parsed[0]["proto"], other,
            "  WARNING %s: not counted" % "; ".join(problems) if problems else ""))
        if problems:
            log("    last output: %s" % outs[-1].strip()[-400:].replace("\n", " | "))
            return None, other
        return us, other

    def tls_rss(self, name, argv):
        """RSS per idle TLS keep-alive connection (the yardstick's tls-idle-rss.py, on a fresh,
        warmed proxy)."""
        self.check_time()
        self.start_proxy(name, argv)
        conns = []
        try:
            self.tool(extra_tools.h2load_cmd("https://%s:%d/" % (HOST, self.tls_port), 2000, 8, STICKY), 60)
            time.sleep(0.5)
            base = rss_kb(self.proxy.pids())
            ctx = extra_tools.client_context()
            for i in range(self.a.tls_idle):
                if i % 250 == 0:
                    self.check_time()
                conns.append(extra_tools.tls_connect(ctx, self.tls_port))
                http_get(self.tls_port, STICKY, sock=conns[-1], timeout=10)
            time.sleep(2)
            now = rss_kb(self.proxy.pids())
            still_open = open_count(conns, select.POLLRDHUP)
            answering = sum(http_get(self.tls_port, STICKY, sock=s, timeout=10)[0] == 200 for s in conns[:50])
            per = (now - base) / len(conns)
            good = still_open == len(conns) and answering == min(50, len(conns))
            log("  tls_rss fresh %.1f MiB | %d idle TLS: %.1f MiB, %.2f KiB/conn, %d open, %d/%d answer%s" % (
                base / 1024, len(conns), now / 1024, per, still_open, answering, min(50, len(conns)),
                "" if good else " (WARNING: connections lost, not counted)"))
            if good:
                self.add(name, "tls_rss", per)
        finally:
            self.stop_proxy()
            for s in conns:
                s.close()

    BASE_METRICS = [("cpu_sticky", "CPU us/req sticky", "%.1f"), ("cpu_new", "CPU us/req new", "%.1f"),
                    ("sat_sticky", "sat ratio sticky", "%.3f"), ("added_p50", "added p50 us", "%.0f"),
                    ("kib_per_conn", "KiB/idle conn", "%.2f"), ("kernel_sticky", "kernel us/req sticky", "%.1f"),
                    ("segs_sticky", "TCP segments/req sticky", "%.2f")]
    EXTRA_METRICS = [(p, PHASE_TITLES[p], "%.0f" if p in ("tls_full", "tls_resumed") else "%.1f")
                     for p in ALL_PHASES[4:]]

    def report(self):
        med = {p: {m: statistics.median(v) for m, v in ms.items() if v} for p, ms in self.results.items()}
        print()
        print("medians of %d round(s)" % self.a.rounds)
        if set(BASE_PHASES) & set(self.a.phases):
            print("%s\n" % self.describe())
            self.table(med, self.BASE_METRICS)
            self.goals(med)
        if set(ALL_PHASES[4:]) & set(self.a.phases):
            print("\nTLS 1.3 (ECDSA P-256) and 64 KiB bodies, proxy CPU us per request; %s\n" % self.describe_extra())
            metrics = [m for m in self.EXTRA_METRICS if m[0] in self.a.phases]
            self.table(med, metrics)
            ref, sr = med.get("haproxy-t1", {}), med.get("stickyroute", {})
            if ref and sr:
                cells = ["%.2f" % (sr[m] / ref[m]) if m in sr and ref.get(m) else "-" for m, _, _ in metrics]
                print("| stickyroute / haproxy-t1 | %s |" % " | ".join(cells))
            if self.noisy:
                print("\nkept although other processes used more than --noise-limit %.2f cores after %d "
                      "retries: %s" % (self.a.noise_limit, self.a.retries, "; ".join(self.noisy)))
        if self.a.json:
            with open(self.a.json, "w") as f:
                json.dump({"args": vars(self.a), "rounds": self.results, "medians": med}, f, indent=1)
        if not self.a.oha and "lat" in self.a.phases:
            print("\nNOTE: oha not found: the added-latency phase was SKIPPED (cargo install oha --locked)")

    def table(self, med, metrics):
        print("| config | " + " | ".join(m[1] for m in metrics) + " |")
        print("|---" * (len(metrics) + 1) + "|")
        for p in self.a.only:
            cells = [(fmt % med[p][m]) if m in med.get(p, {}) else "-" for m, _, fmt in metrics]
            print("| %s | %s |" % (p, " | ".join(cells)))

    def goals(self, med):
        ref = med.get("haproxy-t1", {})
        sr = med.get("stickyroute", {})
        if not (ref and sr):
            return
        print()
        print("stickyroute / haproxy-t1 (goal):")
        for m, label, goal in (("cpu_sticky", "CPU sticky", "<= 0.80"), ("cpu_new", "CPU new", "<= 0.80"),
                               ("sat_sticky", "sat ratio sticky", ">= 1.10"),
                               ("added_p50", "added p50", "<= 1.00")):
            if m in ref and m in sr and ref[m]:
                print("  %-17s %6.2f   (%s)" % (label, sr[m] / ref[m], goal))
        if ref.get("cpu_sticky") and "kernel_sticky" in ref and "kernel_sticky" in sr:
            # The kernel's part (system calls, TCP on both ends of each loopback send) is the
            # same for every proxy that makes the same socket calls; a proxy with no user time
            # at all would still cost this much.
            print("  %-17s %6.2f   (stickyroute's kernel time alone, / haproxy-t1's total; haproxy-t1's own: %.2f)" % (
                "kernel floor", sr["kernel_sticky"] / ref["cpu_sticky"], ref["kernel_sticky"] / ref["cpu_sticky"]))
        if "kib_per_conn" in sr:
            print("  %-17s %6.2f KiB (<= 2 KiB; haproxy-t1 %s)" % (
                "idle connection", sr["kib_per_conn"],
                "%.2f KiB" % ref["kib_per_conn"] if "kib_per_conn" in ref else "-"))

    def describe(self):
        a = self.a
        return ("cpu: h2load -c %d -n %d; sat: wrk -c %d, %d pair(s) of %d s; lat: oha -q %d -c %d -z %ds; "
                "rss: idle %s" % (a.cpu_conns, a.cpu_requests, a.sat_conns, a.sat_pairs, a.sat_seconds,
                                  a.rate, a.lat_conns, a.lat_seconds, ",".join(map(str, a.idle))))

    def describe_extra(self):
        a = self.a
        return ("tls_h1: -c %d -n %d; tls_full: %d in batches of %d; tls_resumed: -c %d -n %d; "
                "tls_h2: -c %d -m %d -n %d; big: -c %d -n %d; tls_rss: %d idle" % (
                    a.tls_conns, a.tls_requests, a.hs_requests, a.hs_batch, a.resume_conns,
                    a.resume_requests, a.h2_conns, a.h2_streams, a.h2_requests, a.big_conns,
                    a.big_requests, a.tls_idle))


def open_count(socks, events=select.POLLIN | select.POLLRDHUP):
    """How many of socks the peer has not closed (for TLS sockets, events=POLLRDHUP: a session
    ticket may still sit unread)."""
    po = select.poll()
    for s in socks:
        po.register(s.fileno(), events)
    return len(socks) - len(po.poll(0))


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True, help="the stickyroute release binary")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--phases", default=",".join(ALL_PHASES), help="subset of " + ",".join(ALL_PHASES))
    ap.add_argument("--only", default="haproxy-t1,nginx-w1,stickyroute", help="proxies, comma-separated")
    ap.add_argument("--quick", action="store_true",
                    help="a smoke run of a minute or two: 1 round, small counts (figures not comparable)")
    ap.add_argument("--cpu-requests", type=int, default=200000)
    ap.add_argument("--cpu-conns", type=int, default=48)
    ap.add_argument("--warmup", type=int, default=20000)
    ap.add_argument("--sat-seconds", type=int, default=3)
    ap.add_argument("--sat-pairs", type=int, default=3)
    ap.add_argument("--sat-conns", type=int, default=64)
    ap.add_argument("--rate", type=int, default=2000)
    ap.add_argument("--lat-seconds", type=int, default=10)
    ap.add_argument("--lat-conns", type=int, default=16)
    ap.add_argument("--idle", default="1000,5000", help="idle connection levels")
    ap.add_argument("--tls-requests", type=int, default=100000, help="tls_h1 requests")
    ap.add_argument("--tls-conns", type=int, default=32, help="tls_h1 connections")
    ap.add_argument("--hs-requests", type=int, default=5000, help="tls_full requests (= handshakes)")
    ap.add_argument("--hs-batch", type=int, default=16, help="tls_full: fresh clients per h2load run")
    ap.add_argument("--resume-requests", type=int, default=5000, help="tls_resumed requests (= handshakes)")
    ap.add_argument("--resume-conns", type=int, default=16, help="tls_resumed concurrent clients")
    ap.add_argument("--h2-requests", type=int, default=100000, help="tls_h2 requests")
    ap.add_argument("--h2-conns", type=int, default=32, help="tls_h2 connections")
    ap.add_argument("--h2-streams", type=int, default=10, help="tls_h2 streams per connection (-m)")
    ap.add_argument("--big-requests", type=int, default=30000, help="big requests")
    ap.add_argument("--big-conns", type=int, default=32, help="big connections")
    ap.add_argument("--tls-idle", type=int, default=2000, help="tls_rss idle TLS connections")
    ap.add_argument("--extra-warmup", type=int, default=5000,
                    help="TLS h1 and h2 warm-up requests before the TLS and large-body phases")
    ap.add_argument("--noise-limit", type=float, default=0.3,
                    help="TLS and large-body phases: a measurement during which other processes used more "
                         "cores than this is repeated")
    ap.add_argument("--retries", type=int, default=2,
                    help="repeats of a noisy measurement; the least noisy one is kept (and listed)")
    ap.add_argument("--port-base", type=int, default=29080,
                    help="backends on BASE+1..3, the proxy on BASE+10 and its TLS listener on BASE+11 (loopback)")
    ap.add_argument("--max-minutes", type=float, default=60, help="hard bound of the whole run")
    ap.add_argument("--json", help="also write the per-round figures and medians here")
    ap.add_argument("--keep", action="store_true",
                    help="keep the scratch directory (logs, rendered configs); kept anyway after an error")
    return ap.parse_args()


def main():
    a = parse_args()
    if a.quick:
        a.rounds, a.cpu_requests, a.warmup = 1, 10000, 2000
        a.sat_seconds, a.sat_pairs, a.lat_seconds, a.idle = 1, 1, 2, "200,500"
        a.tls_requests, a.hs_requests, a.resume_requests = 5000, 160, 500
        a.h2_requests, a.big_requests, a.tls_idle, a.extra_warmup = 10000, 2000, 200, 1000
        a.retries = 0
        a.max_minutes = min(a.max_minutes, 3)
    a.phases = [p for p in a.phases.split(",") if p]
    a.only = [p for p in a.only.split(",") if p]
    a.idle = [int(x) for x in str(a.idle).split(",")]
    bad = set(a.phases) - set(ALL_PHASES)
    if bad or set(a.only) - {"haproxy-t1", "nginx-w1", "stickyroute"}:
        sys.exit("unknown phase or proxy: %s %s" % (bad, a.only))
    a.oha = shutil.which("oha") or next(
        (p for p in [os.path.expanduser("~/.cargo/bin/oha")] if os.access(p, os.X_OK)), None)
    if "lat" in a.phases and not a.oha:
        log("WARNING: oha not found (PATH, ~/.cargo/bin): the added-latency phase will be SKIPPED")
    Compare(a).run()


if __name__ == "__main__":
    main()
