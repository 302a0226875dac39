//! Heap allocations per proxied request on the native HTTP/1.1 path, counted by dhat as this
//! test binary's global allocator (issue 13: no allocation of ours on a sticky hit).
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

#[test]
fn a_sticky_hit_allocates_nothing() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
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
