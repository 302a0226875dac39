//! TLS listeners: rustls with a self-signed certificate, HTTP/1.1 and h2 chosen by ALPN, and
//! `Secure` on the cookies the balancer writes for TLS clients.

mod common;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use stickyroute::store::SessionStore;
use tokio::net::TcpStream;

#[tokio::test]
async fn tls_listener_serves_http1_and_h2_and_marks_cookies_secure() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();

    let store = SessionStore::memory();
    let n1 = node("jvm1", &store).await;
    let dead = dead_addr().await;
    let config = format!(
        "listeners:\n  - bind: \"127.0.0.1:0\"\n    tls: {{ cert: \"{}\", key: \"{}\" }}\npools:\n  - name: app\n    nodes:\n      - {{ route: jvm1, address: \"{}\" }}\n      - {{ route: jvm9, address: \"{dead}\" }}\n",
        cert_path.display(),
        key_path.display(),
        n1.addr
    );
    let lb = balancer(&config).await;
    let name = ServerName::try_from("localhost").unwrap();

    // HTTP/1.1 over TLS; a failover from a dead node writes a Secure cookie.
    let tcp = TcpStream::connect(lb.addr()).await.unwrap();
    let tls = tls_connector(&cert, b"http/1.1")
        .connect(name.clone(), tcp)
        .await
        .unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get("/whoami")
        .header("host", "localhost")
        .header("cookie", "JSESSIONID=T.jvm9")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-node"], "jvm1");
    let set_cookie = resp.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        set_cookie.starts_with("JSESSIONID=T.jvm9.jvm1"),
        "{set_cookie}"
    );
    assert!(set_cookie.contains("Secure"), "{set_cookie}");
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let who: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(who["headers"]["x-forwarded-proto"], "https", "{who}");

    // h2 negotiated by ALPN.
    let tcp = TcpStream::connect(lb.addr()).await.unwrap();
    let tls = tls_connector(&cert, b"h2")
        .connect(name, tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = Request::get("https://localhost/whoami")
        .header("cookie", "JSESSIONID=H.jvm1")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-node"], "jvm1");
    lb.stop().await;
}
