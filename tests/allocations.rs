//! Heap allocations per proxied request on the native HTTP/1.1 path, cleartext and TLS,
//! counted by dhat as this test binary's global allocator: a sticky hit allocates nothing.
//!
//! Everything here runs in one process, so the client and the node are written not to
//! allocate per request either: a raw TCP client sending the same bytes, and a raw TCP node
//! answering a fixed response. What is left is the balancer's own request path.

use std::time::Duration;

use stickyroute::config::Config;
use stickyroute::control::Running;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// One dhat profiler at a time: the tests take turns.
static PROFILER: std::sync::Mutex<()> = std::sync::Mutex::new(());

const RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nContent-Type: text/plain\r\n\r\nnode=jvm2 ok";

/// A node that answers every request of every connection with [`RESPONSE`].
async fn raw_node() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                let mut have = 0;
                loop {
                    match s.read(&mut buf[have..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => have += n,
                    }
                    // One request per head (no bodies in this test).
                    while let Some(end) = find_head_end(&buf[..have]) {
                        if s.write_all(RESPONSE).await.is_err() {
                            return;
                        }
                        buf.copy_within(end..have, 0);
                        have -= end;
                    }
                }
            });
        }
    });
    addr
}

fn find_head_end(b: &[u8]) -> Option<usize> {
    b.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// Sends `n` requests on one keep-alive connection and reads each whole response.
async fn requests(client: &mut TcpStream, req: &[u8], buf: &mut [u8], n: usize) {
    for _ in 0..n {
        client.write_all(req).await.unwrap();
        let mut have = 0;
        loop {
            let r = tokio::time::timeout(Duration::from_secs(5), client.read(&mut buf[have..]))
                .await
                .expect("response timed out")
                .unwrap();
            assert!(r > 0, "balancer closed the connection");
            have += r;
            if let Some(end) = find_head_end(&buf[..have]) {
                if have >= end + 12 {
                    assert!(buf.starts_with(b"HTTP/1.1 200"), "not a 200");
                    break;
                }
            }
        }
    }
}

/// Runs `test` on a current-thread runtime while dhat counts, one test at a time.
fn counted(test: impl std::future::Future<Output = ()>) {
    let _turn = PROFILER.lock().unwrap_or_else(|e| e.into_inner());
    let _profiler = dhat::Profiler::builder().testing().build();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(test);
}

#[test]
fn a_sticky_hit_allocates_nothing() {
    counted(async {
        let node = raw_node().await;
        let yaml = format!(
            "listeners: [{{ bind: \"127.0.0.1:0\" }}]\npools:\n  - name: app\n    nodes:\n      - {{ route: jvm2, address: \"{node}\" }}\n"
        );
        let lb = Running::start(Config::from_yaml(&yaml, "alloc.yaml").unwrap())
            .await
            .unwrap();
        let mut client = TcpStream::connect(lb.addr()).await.unwrap();
        let req = b"GET /cart HTTP/1.1\r\nHost: app.test\r\nCookie: theme=dark; JSESSIONID=0123456789ABCDEF.jvm2\r\n\r\n";
        let mut buf = vec![0u8; 16 * 1024];
        // Warm up: pools, buffers, the registry entry, lazily built state.
        requests(&mut client, req, &mut buf, 200).await;
        let before = dhat::HeapStats::get();
        const N: usize = 1000;
        requests(&mut client, req, &mut buf, N).await;
        let after = dhat::HeapStats::get();
        let blocks = after.total_blocks - before.total_blocks;
        println!("{blocks} heap allocations over {N} sticky requests");
        assert_eq!(
            blocks, 0,
            "the request path allocated {blocks} times over {N} sticky requests"
        );

        // Idle keep-alive connections: what each holds on the heap once its request is done.
        let before = dhat::HeapStats::get();
        const IDLE: usize = 200;
        let mut idle = Vec::with_capacity(IDLE);
        for _ in 0..IDLE {
            let mut c = TcpStream::connect(lb.addr()).await.unwrap();
            requests(&mut c, req, &mut buf, 1).await;
            idle.push(c);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let after = dhat::HeapStats::get();
        let per_conn = (after.curr_bytes - before.curr_bytes) / IDLE;
        // Both ends are in this process: the client's socket registration counts too.
        println!("{per_conn} heap bytes per idle keep-alive connection (both ends)");
        assert!(
            per_conn < 2048,
            "an idle keep-alive connection holds {per_conn} heap bytes"
        );
        drop(idle);
        lb.stop().await;
    });
}

/// The TLS client of [`a_sticky_hit_over_tls_allocates_nothing`], in a child process so that
/// its allocations are not counted: `go N` sends N sticky requests on its keep-alive
/// connection, `idle M` opens M more connections with one request each and keeps them open;
/// each answers `done`.
const TLS_CLIENT: &str = r#"
import socket, ssl, sys
host, port = sys.argv[1], int(sys.argv[2])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.set_alpn_protocols(["http/1.1"])
req = b"GET /cart HTTP/1.1\r\nHost: app.test\r\nCookie: theme=dark; JSESSIONID=0123456789ABCDEF.jvm2\r\n\r\n"
def connect():
    s = socket.create_connection((host, port), timeout=5)
    return ctx.wrap_socket(s, server_hostname="localhost")
def request(s):
    s.sendall(req)
    buf = b""
    while True:
        d = s.recv(65536)
        if not d:
            sys.exit("the balancer closed the connection")
        buf += d
        i = buf.find(b"\r\n\r\n")
        if i >= 0 and len(buf) >= i + 4 + 12:
            break
    if not buf.startswith(b"HTTP/1.1 200"):
        sys.exit("not a 200: %r" % buf[:80])
main = connect()
idle = []
for line in sys.stdin:
    cmd, n = line.split()
    for _ in range(int(n)):
        if cmd == "go":
            request(main)
        else:
            c = connect()
            request(c)
            idle.append(c)
    print("done", flush=True)
"#;

#[test]
fn a_sticky_hit_over_tls_allocates_nothing() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    if std::process::Command::new("python3")
        .arg("-c")
        .arg("import ssl")
        .status()
        .map_or(true, |s| !s.success())
    {
        assert!(
            std::env::var_os("STICKYROUTE_REQUIRE_SERVICES").is_none(),
            "python3 with ssl is required for the TLS allocation test"
        );
        eprintln!("SKIPPED: python3 with ssl not found (the TLS client of this test)");
        return;
    }
    counted(async {
        let node = raw_node().await;
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (crt, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::write(&crt, cert.cert.pem()).unwrap();
        std::fs::write(&key, cert.key_pair.serialize_pem()).unwrap();
        let yaml = format!(
            "listeners: [{{ bind: \"127.0.0.1:0\", tls: {{ cert: \"{}\", key: \"{}\" }} }}]\npools:\n  - name: app\n    nodes:\n      - {{ route: jvm2, address: \"{node}\" }}\n",
            crt.display(),
            key.display()
        );
        let lb = Running::start(Config::from_yaml(&yaml, "alloc.yaml").unwrap())
            .await
            .unwrap();
        let addr = lb.addr();
        let mut child = tokio::process::Command::new("python3")
            .arg("-c")
            .arg(TLS_CLIENT)
            .arg(addr.ip().to_string())
            .arg(addr.port().to_string())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        // Reused, so that reading the client's answer allocates nothing in the counted window.
        let mut line = String::with_capacity(64);
        let mut command = async |cmd: &str| {
            stdin.write_all(cmd.as_bytes()).await.unwrap();
            line.clear();
            tokio::time::timeout(Duration::from_secs(60), out.read_line(&mut line))
                .await
                .expect("the TLS client did not answer in time")
                .unwrap();
            assert_eq!(line, "done\n", "the TLS client failed");
        };
        // Warm up: pools, buffers, the registry entry, lazily built state.
        command("go 200\n").await;
        const N: usize = 1000;
        let go = format!("go {N}\n");
        let before = dhat::HeapStats::get();
        command(&go).await;
        let after = dhat::HeapStats::get();
        let blocks = after.total_blocks - before.total_blocks;
        println!("{blocks} heap allocations over {N} sticky requests over TLS");
        // rustls 0.23 decrypts each incoming record into a `Vec` of its own and encrypts each
        // outgoing record into one before the bytes reach the session's pooled buffers
        // (`proxy::tls_session`): one record each way per request here. Everything of ours
        // allocates nothing, as on cleartext.
        assert!(
            blocks <= 2 * N as u64,
            "the TLS request path allocated {blocks} times over {N} sticky requests \
             (rustls's own share is 2 per request)"
        );

        // Idle TLS keep-alive connections: what each holds on the heap (the client is in
        // another process: this is the balancer's share alone).
        const IDLE: usize = 200;
        let idle = format!("idle {IDLE}\n");
        let before = dhat::HeapStats::get();
        command(&idle).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let after = dhat::HeapStats::get();
        let per_conn = (after.curr_bytes - before.curr_bytes) / IDLE;
        println!("{per_conn} heap bytes per idle TLS keep-alive connection");
        assert!(
            per_conn < 8 * 1024,
            "an idle TLS keep-alive connection holds {per_conn} heap bytes"
        );
        drop(stdin);
        let _ = child.wait().await;
        lb.stop().await;
    });
}
