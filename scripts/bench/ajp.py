#!/usr/bin/env python3
"""stickyroute against Apache httpd's mod_proxy_ajp, both in front of the same real Tomcat 10.1
AJP/1.3 connector: CPU µs per proxied request of each proxy and of Tomcat, and requests/s.

Run it through ajp.sh (it finds the binary).  Self-contained: Tomcat's CATALINA_BASE, the httpd
config and the stickyroute config are written into a scratch directory with this run's ports.

  tomcat      Debian's tomcat10 (CATALINA_HOME=/usr/share/tomcat10, or STICKYROUTE_CATALINA_HOME),
              jvmRoute jvm1, only an AJP/1.3 connector on 127.0.0.1 with a secret, packetSize
              8192, no access log; it serves a static 100-byte page /bench.txt
  stickyroute serve -c (defaults: one thread per core, access log on), a pool with
              protocol: ajp, the connector's secret, one node route jvm1
  httpd       apache2 -DFOREGROUND with its own config (LoadModule, not a2enmod): event MPM,
              2 children x 64 threads, mod_proxy + mod_proxy_balancer + mod_proxy_ajp,
              BalancerMember ajp://... route=jvm1 secret=..., stickysession=JSESSIONID,
              no access log
  load        h2load --h1 -n N -c C -t 1 (keep-alive) with Cookie: JSESSIONID=<32 hex>.jvm1

  cpu   utime+stime(+cutime+cstime) of the proxy's process tree (httpd: the parent and all its
        children) and of Tomcat's JVM from /proc before and after N requests, divided by N; all
        must be 2xx with the page's body.  req/s as h2load reports it.  Beside them, the
        machine's softirq time and TCP segments sent per request (/proc/stat, /proc/net/snmp):
        loopback TCP input run in softirq context is in neither process's CPU time.

Both proxies run side by side for the whole run; each round measures both, in an order that
rotates from round to round, after a warm-up of both (JIT of Tomcat and of the proxy paths).
Every figure printed is the median over rounds.  Everything is on loopback and bounded: each
h2load has a timeout, the whole run stops at --max-minutes.  Processes are signalled only by
the PIDs this script started.
"""

import argparse
import datetime as dt
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from compare import (CLK_TCK, HOST, Proc, busy_ticks, children_ticks, log, port_open, run_tool,
                     tcp_out_segs, ticks)

SECRET = "stickyroute-bench-ajp-secret"
ROUTE = "jvm1"
COOKIE = "JSESSIONID=0123456789ABCDEF0123456789ABCDEF.%s" % ROUTE
PAGE = "/bench.txt"
# 100 bytes, like the shared bench's backends.
BODY = ("node=%s " % ROUTE + "x" * 89 + "\n").encode()
APACHE_MODULES = "/usr/lib/apache2/modules"
PROXIES = ("stickyroute", "httpd")
METRICS = ("proxy", "tomcat", "rps", "softirq", "segs")

SERVER_XML = """<?xml version="1.0" encoding="UTF-8"?>
<Server port="-1" shutdown="SHUTDOWN">
  <Service name="Catalina">
    <Connector protocol="AJP/1.3" address="127.0.0.1" port="{ajp}" secret="{secret}"
               secretRequired="true" packetSize="8192" maxThreads="64"/>
    <Engine name="Catalina" defaultHost="localhost" jvmRoute="{route}">
      <Host name="localhost" appBase="webapps" unpackWARs="false" autoDeploy="false"/>
    </Engine>
  </Service>
</Server>
"""

HTTPD_CONF = """# mod_proxy_ajp in front of one Tomcat AJP connector, for scripts/bench/ajp.py.
ServerRoot "{work}/httpd"
ServerName localhost
Listen 127.0.0.1:{port}
PidFile "{work}/httpd/httpd.pid"
DefaultRuntimeDir "{work}/httpd"
ErrorLog "{work}/httpd/logs/error.log"
LogLevel warn
{user}
LoadModule mpm_event_module        {mods}/mod_mpm_event.so
LoadModule authz_core_module       {mods}/mod_authz_core.so
LoadModule proxy_module            {mods}/mod_proxy.so
LoadModule proxy_ajp_module        {mods}/mod_proxy_ajp.so
LoadModule proxy_balancer_module   {mods}/mod_proxy_balancer.so
LoadModule slotmem_shm_module      {mods}/mod_slotmem_shm.so
LoadModule lbmethod_byrequests_module {mods}/mod_lbmethod_byrequests.so

# Fixed pool, as in the shared bench's apache-event.conf: no spawning during a measurement.
ServerLimit              2
StartServers             2
ThreadsPerChild          64
ThreadLimit              64
MaxRequestWorkers        128
MinSpareThreads          1
MaxSpareThreads          128
AsyncRequestWorkerFactor 64
MaxConnectionsPerChild   0

KeepAlive On
KeepAliveTimeout 300
MaxKeepAliveRequests 0
Timeout 30

<Proxy "balancer://tomcat">
    BalancerMember "ajp://127.0.0.1:{ajp}" route={route} secret={secret} connectiontimeout=2 retry=10
    ProxySet lbmethod=byrequests stickysession=JSESSIONID|jsessionid
</Proxy>
<Location "/">
    Require all granted
</Location>
ProxyPass "/" "balancer://tomcat/"
"""

STICKYROUTE_YAML = """# stickyroute in front of one Tomcat AJP connector, for scripts/bench/ajp.py.
listeners:
  - bind: "127.0.0.1:{port}"
session:
  cookies: [JSESSIONID]
  path_param: jsessionid
  separator: "."
pools:
  - name: tomcat
    path_prefix: /
    protocol: ajp
    ajp: {{ secret: {secret} }}
    timeouts: {{ connect: 1s, response: 10s }}
    nodes:
      - {{ route: {route}, address: "127.0.0.1:{ajp}" }}
"""


def get(port, timeout=2.0):
    """One GET of the page with the sticky cookie: (status, body, head); a chunked body decoded."""
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.sendall(("GET %s HTTP/1.1\r\nHost: localhost\r\nCookie: %s\r\nConnection: close\r\n\r\n"
                   % (PAGE, COOKIE)).encode())
        buf = b""
        while True:
            c = s.recv(65536)
            if not c:
                break
            buf += c
    head, _, body = buf.partition(b"\r\n\r\n")
    if re.search(rb"(?im)^transfer-encoding:\s*chunked", head):
        out = b""
        while True:
            size, _, rest = body.partition(b"\r\n")
            n = int(size.split(b";")[0], 16)
            if n == 0:
                break
            out, body = out + rest[:n], rest[n + 2:]
        body = out
    return int(head.split(b" ", 2)[1]), body, head.decode("latin-1")


def softirq_ticks():
    """The machine's softirq time (/proc/stat): loopback TCP input that the kernel ran in softirq
    context is counted there, not in the stime of the process it interrupted."""
    with open("/proc/stat") as f:
        return int(f.readline().split()[7])


def h2load(port, n, conns):
    return ["h2load", "--h1", "-n", str(n), "-c", str(conns), "-t", "1", "-H", "Cookie: " + COOKIE,
            "http://%s:%d%s" % (HOST, port, PAGE)]


def h2load_result(out):
    """(2xx count, req/s) from h2load's summary."""
    ok = re.search(r"status codes: (\d+) 2xx", out)
    rps = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", out)
    return (int(ok.group(1)) if ok else 0), (float(rps.group(1)) if rps else None)


def tomcat_home():
    home = os.environ.get("STICKYROUTE_CATALINA_HOME", "/usr/share/tomcat10")
    if not os.path.isfile(os.path.join(home, "bin/bootstrap.jar")):
        sys.exit("Tomcat 10.1 not found (%s/bin/bootstrap.jar): apt-get install tomcat10, or set "
                 "STICKYROUTE_CATALINA_HOME" % home)
    conf = next((os.path.join(home, d) for d in ("etc", "conf")
                 if os.path.isfile(os.path.join(home, d, "web.xml"))), None)
    if not conf:
        sys.exit("Tomcat's default web.xml not found under %s" % home)
    return home, conf


def version(argv, pattern):
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    m = re.search(pattern, out)
    return m.group(1) if m else "?"


class Bench:
    def __init__(self, a):
        self.a = a
        self.work = tempfile.mkdtemp(prefix="stickyroute-ajp-bench-")
        self.ports = {"ajp": a.port_base + 9, "stickyroute": a.port_base + 10, "httpd": a.port_base + 11}
        self.deadline = time.time() + a.max_minutes * 60
        self.procs = {}
        self.results = {p: {k: [] for k in METRICS} for p in PROXIES}

    def write(self, rel, text):
        path = os.path.join(self.work, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        return path

    def start_tomcat(self):
        home, conf = tomcat_home()
        base = os.path.join(self.work, "tomcat")
        for d in ("conf", "logs", "temp", "work", "webapps/ROOT"):
            os.makedirs(os.path.join(base, d), exist_ok=True)
        for f in ("web.xml", "logging.properties"):
            shutil.copy(os.path.join(conf, f), os.path.join(base, "conf", f))
        self.write("tomcat/conf/server.xml",
                   SERVER_XML.format(ajp=self.ports["ajp"], secret=SECRET, route=ROUTE))
        with open(os.path.join(base, "webapps/ROOT", PAGE.lstrip("/")), "wb") as f:
            f.write(BODY)
        java = shutil.which("java") or sys.exit("no java in PATH")
        argv = [java, "-Xms256m", "-Xmx256m", "-XX:+UseSerialGC",
                "-Dcatalina.home=" + home, "-Dcatalina.base=" + base,
                "-Djava.io.tmpdir=" + os.path.join(base, "temp"),
                "-cp", "%s/bin/bootstrap.jar:%s/bin/tomcat-juli.jar" % (home, home),
                "org.apache.catalina.startup.Bootstrap", "start"]
        self.procs["tomcat"] = Proc("tomcat", argv, os.path.join(base, "logs/console.log"))
        self.wait_port(self.ports["ajp"], self.procs["tomcat"], 120)

    def start_proxies(self):
        sr = self.write("stickyroute.yaml", STICKYROUTE_YAML.format(
            port=self.ports["stickyroute"], secret=SECRET, route=ROUTE, ajp=self.ports["ajp"]))
        self.procs["stickyroute"] = Proc("stickyroute", [self.a.bin, "serve", "-c", sr],
                                         os.path.join(self.work, "stickyroute.log"))
        os.makedirs(os.path.join(self.work, "httpd/logs"), exist_ok=True)
        # As root httpd's children must switch to another user; otherwise they stay the caller.
        user = "User www-data\nGroup www-data\n" if os.geteuid() == 0 else ""
        conf = self.write("httpd/httpd.conf", HTTPD_CONF.format(
            work=self.work, port=self.ports["httpd"], mods=APACHE_MODULES, user=user,
            ajp=self.ports["ajp"], route=ROUTE, secret=SECRET))
        self.procs["httpd"] = Proc("httpd", ["apache2", "-f", conf, "-DFOREGROUND"],
                                   os.path.join(self.work, "httpd/logs/stdout.log"))
        for p in PROXIES:
            self.wait_page(p)

    def wait_port(self, port, proc, timeout):
        end = time.time() + timeout
        while time.time() < end:
            if not proc.alive():
                raise RuntimeError("%s exited at start-up; see %s" % (proc.name, proc.logpath))
            if port_open(port):
                return
            time.sleep(0.2)
        raise RuntimeError("%s not listening on %d after %ds; see %s" % (proc.name, port, timeout, proc.logpath))

    def wait_page(self, name):
        """Until the proxy answers 200 with the page's body (Tomcat's first request included)."""
        end, last = time.time() + 60, None
        while time.time() < end:
            if not self.procs[name].alive():
                raise RuntimeError("%s exited at start-up; see %s" % (name, self.procs[name].logpath))
            try:
                last = get(self.ports[name])
                if last[:2] == (200, BODY):
                    log("%s answers %s:\n    %s" % (name, PAGE, last[2].replace("\r\n", "\n    ")))
                    return
            except OSError as e:
                last = e
            time.sleep(0.2)
        raise RuntimeError("%s does not serve %s: %r; see %s" % (name, PAGE, last, self.procs[name].logpath))

    def load(self, name, n):
        """h2load through one proxy: (proxy µs/req, Tomcat µs/req, req/s), or None on errors."""
        if time.time() > self.deadline:
            raise TimeoutError("--max-minutes %s reached" % self.a.max_minutes)
        pids, tpids = self.procs[name].pids(), self.procs["tomcat"].pids()

        def snapshot():
            return (busy_ticks(), ticks(pids), ticks(tpids), children_ticks(), time.time(),
                    softirq_ticks(), tcp_out_segs())
        c0 = snapshot()
        out = run_tool(h2load(self.ports[name], n, self.a.conns), self.a.timeout)
        c1 = snapshot()
        ok, rps = h2load_result(out)
        proxy_us = (c1[1] - c0[1]) / CLK_TCK * 1e6 / n
        tomcat_us = (c1[2] - c0[2]) / CLK_TCK * 1e6 / n
        softirq_us = (c1[5] - c0[5]) / CLK_TCK * 1e6 / n
        segs = (c1[6] - c0[6]) / n
        wall = c1[4] - c0[4]
        other = max(0.0, (c1[0] - c0[0]) - sum(c1[i] - c0[i] for i in (1, 2, 3))) / CLK_TCK / max(wall, 1e-3)
        if ok != n or rps is None:
            log("  %-11s WARNING only %d/%d 2xx (%s)" % (name, ok, n, out.strip().splitlines()[-1:]))
            return None
        log("  %-11s proxy %6.1f us/req, tomcat %6.1f us/req, %7.0f req/s, softirq %5.1f us/req, "
            "%.2f TCP segments/req  (%.1f s, other processes %.2f cores)"
            % (name, proxy_us, tomcat_us, rps, softirq_us, segs, wall, other))
        return proxy_us, tomcat_us, rps, softirq_us, segs

    def run(self):
        ok = False
        try:
            self.start_tomcat()
            self.start_proxies()
            log("warm-up: %d requests through each proxy" % self.a.warmup)
            for p in PROXIES:
                self.load(p, self.a.warmup)
            for r in range(self.a.rounds):
                log("round %d/%d" % (r + 1, self.a.rounds))
                order = PROXIES if r % 2 == 0 else tuple(reversed(PROXIES))
                for p in order:
                    res = self.load(p, self.a.requests)
                    if res:
                        for k, v in zip(METRICS, res):
                            self.results[p][k].append(v)
                    if get(self.ports[p])[:2] != (200, BODY):
                        raise RuntimeError("%s: the page changed after the load" % p)
            ok = True
        finally:
            for name in ("stickyroute", "httpd", "tomcat"):
                if name in self.procs:
                    self.procs[name].stop()
            if ok and not self.a.keep:
                shutil.rmtree(self.work, ignore_errors=True)
            else:
                log("scratch directory (configs, logs) kept: %s" % self.work)
        self.report()

    def report(self):
        def med(xs, fmt):
            return (fmt % statistics.median(xs) + " [" + fmt % min(xs) + "–" + fmt % max(xs) + "]") if xs else "-"
        tomcat = version(["java", "-cp", os.path.join(tomcat_home()[0], "lib/catalina.jar"),
                          "org.apache.catalina.util.ServerInfo"], r"Server version: Apache Tomcat/(\S+)")
        httpd = version(["apache2", "-v"], r"Apache/(\S+)")
        sr = version([self.a.bin, "--version"], r"(\d+\.\d+\.\d+\S*)")
        cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                    if line.startswith("model name")), "?")
        print()
        print("%s, %s, %d × %s; Tomcat %s, Apache httpd %s, stickyroute %s; %d rounds of h2load "
              "--h1 -n %d -c %d, medians [min–max]" % (
                  dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), platform.platform(),
                  os.cpu_count(), cpu, tomcat, httpd, sr, self.a.rounds, self.a.requests, self.a.conns))
        print()
        print("| proxy → Tomcat AJP | proxy CPU µs/req | Tomcat CPU µs/req | req/s "
              "| softirq µs/req (machine) | TCP segments/req |")
        print("|---|---|---|---|---|---|")
        rows = {"stickyroute": "stickyroute, defaults (`protocol: ajp`)",
                "httpd": "Apache httpd, event MPM, mod_proxy_ajp"}
        for p in PROXIES:
            r = self.results[p]
            print("| %s | %s | %s | %s | %s | %s |" % (
                rows[p], med(r["proxy"], "%.1f"), med(r["tomcat"], "%.1f"), med(r["rps"], "%.0f"),
                med(r["softirq"], "%.1f"), med(r["segs"], "%.2f")))
        a, b = self.results["stickyroute"]["proxy"], self.results["httpd"]["proxy"]
        if a and b:
            print("\nstickyroute / httpd, proxy CPU per request: %.2f×"
                  % (statistics.median(a) / statistics.median(b)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True, help="the stickyroute binary")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=100000, help="requests per measurement")
    ap.add_argument("--conns", type=int, default=16, help="h2load connections (keep-alive)")
    ap.add_argument("--warmup", type=int, default=50000, help="requests through each proxy first, not counted")
    ap.add_argument("--timeout", type=int, default=300, help="bound of one h2load run, seconds")
    ap.add_argument("--port-base", type=int, default=29200,
                    help="Tomcat AJP on BASE+9, stickyroute on BASE+10, httpd on BASE+11 (loopback)")
    ap.add_argument("--max-minutes", type=float, default=20, help="hard bound of the whole run")
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 round of 5,000 requests")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory (configs, logs)")
    a = ap.parse_args()
    if a.quick:
        a.rounds, a.requests, a.warmup = 1, 5000, 2000
    for port in (a.port_base + 9, a.port_base + 10, a.port_base + 11):
        if port_open(port):
            sys.exit("port %d is in use; choose another --port-base (nothing was started)" % port)
    Bench(a).run()


if __name__ == "__main__":
    main()
