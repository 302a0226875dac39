"""Helpers for compare.py's TLS and large-body phases (tls_h1, tls_full, tls_resumed, tls_h2,
big, tls_rss): the run's certificate, the 64 KiB backend files, the h2load commands of each
phase and the reading of h2load's output, and a TLS keep-alive client for idle connections.

Pure functions and small I/O wrappers only; compare.py owns the processes and the accounting.
"""

import os
import re
import socket
import ssl
import subprocess

HOST = "127.0.0.1"
BIG_SIZE = 65536
LOAD_TIMEOUT = 120          # seconds, each h2load command of these phases (as the yardstick)

PHASE_TITLES = {
    "tls_h1": "TLS h1 keep-alive us/req",
    "tls_full": "full handshake us/req",
    "tls_resumed": "resumed handshake us/req",
    "tls_h2": "TLS h2 (-m 10) us/req",
    "big": "64 KiB bodies us/req",
    "tls_rss": "KiB/idle TLS conn",
}
LOAD_PHASES = ("tls_h1", "tls_full", "tls_resumed", "tls_h2", "big")
# The application protocol h2load must report for each load phase.
EXPECTED_PROTO = {"tls_h1": "http/1.1", "tls_full": "http/1.1", "tls_resumed": "http/1.1",
                  "tls_h2": "h2", "big": "http/1.1"}


def make_cert(directory):
    """A self-signed ECDSA P-256 certificate for localhost/127.0.0.1 in directory:
    (cert.pem, key.pem, combined.pem with both, for HAProxy's `crt`)."""
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    cmd = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
           "-nodes", "-keyout", key, "-out", cert, "-days", "7", "-subj", "/CN=localhost",
           "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if p.returncode != 0:
        raise RuntimeError("openssl could not make the certificate: %s" % p.stderr.strip())
    combined = os.path.join(directory, "combined.pem")
    with open(combined, "w") as f, open(cert) as c, open(key) as k:
        f.write(c.read() + k.read())
    for path in (key, combined):
        os.chmod(path, 0o600)
    return cert, key, combined


def big_body(node):
    """The 65536-byte body backend `node` serves on /big; it starts with "node=<node> "."""
    head = ("node=%s big body from sticky-bench backend %s " % (node, node)).encode()
    return head + b"." * (BIG_SIZE - len(head) - 1) + b"\n"


def write_big_files(html_dir, nodes):
    os.makedirs(html_dir, exist_ok=True)
    for node in nodes:
        with open(os.path.join(html_dir, "big-%s.bin" % node), "wb") as f:
            f.write(big_body(node))


def h2load_cmd(url, n, conns, cookie, h1=True, streams=None, headers=()):
    argv = ["h2load"] + (["--h1"] if h1 else []) + ["-n", str(n), "-c", str(conns), "-t", "1"]
    if streams:
        argv += ["-m", str(streams)]
    for h in (["Cookie: " + cookie] if cookie else []) + list(headers):
        argv += ["-H", h]
    return argv + [url]


def phase_cmds(phase, a, tls_port, plain_port, cookie):
    """The h2load commands of one load phase and the requests they make in all."""
    tls = "https://%s:%d/" % (HOST, tls_port)
    if phase == "tls_h1":
        return [h2load_cmd(tls, a.tls_requests, a.tls_conns, cookie)], a.tls_requests
    if phase == "tls_full":
        # Fresh h2load processes, one request per connection: nothing to resume, every request
        # costs a full handshake.
        sizes = [a.hs_batch] * (a.hs_requests // a.hs_batch)
        if a.hs_requests % a.hs_batch:
            sizes.append(a.hs_requests % a.hs_batch)
        return [h2load_cmd(tls, b, b, cookie) for b in sizes], a.hs_requests
    if phase == "tls_resumed":
        # The proxy closes after each response; h2load reconnects and offers the session ticket
        # it got on that client's previous connection.
        return [h2load_cmd(tls, a.resume_requests, a.resume_conns, cookie,
                           headers=["Connection: close"])], a.resume_requests
    if phase == "tls_h2":
        return [h2load_cmd(tls, a.h2_requests, a.h2_conns, cookie, h1=False,
                           streams=a.h2_streams)], a.h2_requests
    if phase == "big":
        url = "http://%s:%d/big" % (HOST, plain_port)
        return [h2load_cmd(url, a.big_requests, a.big_conns, cookie)], a.big_requests
    raise ValueError(phase)


def warmup_cmds(a, tls_port, plain_port, cookie):
    """TLS h1, TLS h2 and 64 KiB requests before the first of these phases (as the yardstick)."""
    n = a.extra_warmup
    tls = "https://%s:%d/" % (HOST, tls_port)
    return [h2load_cmd(tls, n, 32, cookie), h2load_cmd(tls, n, 32, cookie, h1=False, streams=10),
            h2load_cmd("http://%s:%d/big" % (HOST, plain_port), max(1, n // 2), 32, cookie)]


def parse_h2load(out):
    """2xx responses, body bytes, application protocol and TLS version from h2load's output."""
    r = {"ok": 0, "data": 0, "proto": None, "tls": None}
    m = re.search(r"status codes: (\d+) 2xx", out)
    if m:
        r["ok"] = int(m.group(1))
    m = re.search(r"traffic: \S+ \((\d+)\) total, \S+ \((\d+)\) headers .*?, \S+ \((\d+)\) data", out)
    if m:
        r["data"] = int(m.group(3))
    m = re.search(r"Application protocol: (\S+)", out)
    if m:
        r["proto"] = m.group(1)
    m = re.search(r"TLS Protocol: (\S+)", out)
    if m:
        r["tls"] = m.group(1)
    return r


def load_problems(phase, total, parsed):
    """What is wrong with a load phase's h2load results (empty when every request was 2xx over
    the expected protocol and, for big, every body was 65536 bytes)."""
    ok = sum(p["ok"] for p in parsed)
    protos = sorted({p["proto"] or "none" for p in parsed})
    problems = []
    if ok != total:
        problems.append("only %d/%d 2xx" % (ok, total))
    if protos != [EXPECTED_PROTO[phase]]:
        problems.append("application protocol %s, expected %s" % (protos, EXPECTED_PROTO[phase]))
    if phase == "big" and ok and sum(p["data"] for p in parsed) != ok * BIG_SIZE:
        problems.append("body bytes %d != %d x %d" % (sum(p["data"] for p in parsed), ok, BIG_SIZE))
    return problems


def client_context():
    """TLS client that accepts the run's self-signed certificate and offers only http/1.1."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def tls_connect(ctx, port, timeout=10.0, session=None):
    """A TLS connection to the proxy; session: one to resume (ssl.SSLSession)."""
    raw = socket.create_connection((HOST, port), timeout=timeout)
    try:
        return ctx.wrap_socket(raw, server_hostname="localhost", session=session)
    except (OSError, ssl.SSLError):
        raw.close()
        raise
