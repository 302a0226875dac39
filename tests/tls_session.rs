//! `proxy::tls_session::TlsSession` against a tokio-rustls client over real TCP on 127.0.0.1:
//! handshake and ALPN, echo of many sizes both ways, buffers given back while idle, close
//! (close_notify, abrupt, garbage), backpressure, resumption, key updates, and the heap an
//! idle session holds.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{HandshakeKind, ProtocolVersion, SupportedProtocolVersion};
use stickyroute::proxy::tls_session::{pooled_buffers, TlsSession};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tokio_rustls::client::TlsStream as ClientTls;

// dhat counts the heap only while a profiler runs, which the heap test does in a process of
// its own; other tests allocate through it unmeasured.
#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

// ---------------------------------------------------------------------------------------------
// Certificates and configs.

static TLS12: &[&SupportedProtocolVersion] = &[&rustls::version::TLS12];
static TLS13: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];

struct Pki {
    cert: rcgen::CertifiedKey,
}

impl Pki {
    fn new() -> Self {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        Pki { cert }
    }

    fn server(&self, versions: &[&'static SupportedProtocolVersion]) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key =
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.cert.key_pair.serialize_der()));
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![self.cert.cert.der().clone()], key)
            .unwrap();
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(cfg)
    }

    fn client(
        &self,
        versions: &[&'static SupportedProtocolVersion],
        alpn: &[u8],
    ) -> tokio_rustls::TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert.cert.der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = vec![alpn.to_vec()];
        tokio_rustls::TlsConnector::from(Arc::new(cfg))
    }
}

async fn bind() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

async fn connect(
    connector: &tokio_rustls::TlsConnector,
    listener: &TcpListener,
) -> ClientTls<TcpStream> {
    let tcp = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await.unwrap()
}

/// A client and the server session it connected to, both handshaken.
async fn pair(
    pki: &Pki,
    versions: &[&'static SupportedProtocolVersion],
    alpn: &[u8],
) -> (ClientTls<TcpStream>, TlsSession) {
    let listener = bind().await;
    let config = pki.server(versions);
    let server = async {
        let (tcp, _) = listener.accept().await.unwrap();
        TlsSession::accept(tcp, config).await.unwrap()
    };
    let connector = pki.client(versions, alpn);
    let client = connect(&connector, &listener);
    let (client, server) = tokio::join!(client, server);
    (client, server)
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Echoes with reads into a `buffer_size` buffer, `write_all` and `flush`, until EOF.
async fn echo_loop(session: &mut TlsSession, buffer_size: usize) -> io::Result<()> {
    let mut buf = vec![0u8; buffer_size];
    loop {
        let n = session.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        session.write_all(&buf[..n]).await?;
        session.flush().await?;
    }
}

/// Sends `data` from the client while reading its echo; returns the echo.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(client: S, data: &[u8]) -> (Vec<u8>, S) {
    let (mut reader, mut writer) = tokio::io::split(client);
    let write = async {
        writer.write_all(data).await.unwrap();
        writer.flush().await.unwrap();
    };
    let read = async {
        let mut echoed = vec![0u8; data.len()];
        reader.read_exact(&mut echoed).await.unwrap();
        echoed
    };
    let ((), echoed) = tokio::join!(write, read);
    (echoed, reader.unsplit(writer))
}

const SIZES: &[usize] = &[0, 1, 16 * 1024, 16 * 1024 + 1, 1024 * 1024];

async fn echo_sizes(versions: &[&'static SupportedProtocolVersion], server_buffer: usize) {
    let pki = Pki::new();
    let (mut client, mut server) = pair(&pki, versions, b"http/1.1").await;
    let server = tokio::spawn(async move {
        echo_loop(&mut server, server_buffer).await.unwrap();
        server.shutdown().await.unwrap();
        server.holds_buffers()
    });
    for (i, &size) in SIZES.iter().enumerate() {
        let data = pattern(size, i as u8);
        let (echoed, returned) = exchange(client, &data).await;
        client = returned;
        assert!(echoed == data, "echo of {size} bytes differs");
    }
    client.shutdown().await.unwrap();
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
    let holds = timeout(Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap();
    assert!(!holds, "a closed session holds no buffer");
}

#[tokio::test]
async fn echoes_every_size_over_tls13_with_small_and_large_reads() {
    echo_sizes(TLS13, 1000).await;
    echo_sizes(TLS13, 64 * 1024).await;
}

#[tokio::test]
async fn echoes_every_size_over_tls12() {
    echo_sizes(TLS12, 8 * 1024).await;
}

#[tokio::test]
async fn echoes_through_tokio_io_copy_on_split_halves() {
    let pki = Pki::new();
    let (client, server) = pair(&pki, TLS13, b"http/1.1").await;
    let server = tokio::spawn(async move {
        let (mut reader, mut writer) = tokio::io::split(server);
        let copied = tokio::io::copy(&mut reader, &mut writer).await.unwrap();
        writer.shutdown().await.unwrap();
        copied
    });
    let data = pattern(1024 * 1024 + 7, 3);
    let (echoed, mut client) = exchange(client, &data).await;
    assert!(echoed == data);
    client.shutdown().await.unwrap();
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
    assert_eq!(server.await.unwrap(), data.len() as u64);
}

#[tokio::test]
async fn reports_the_alpn_protocol_the_client_chose() {
    let pki = Pki::new();
    for versions in [TLS12, TLS13] {
        for alpn in [&b"h2"[..], b"http/1.1"] {
            let (client, server) = pair(&pki, versions, alpn).await;
            assert_eq!(server.alpn_protocol(), Some(alpn));
            assert_eq!(client.get_ref().1.alpn_protocol(), Some(alpn));
            let expected = if versions == TLS12 {
                ProtocolVersion::TLSv1_2
            } else {
                ProtocolVersion::TLSv1_3
            };
            assert_eq!(server.connection().protocol_version(), Some(expected));
            assert_eq!(
                server.tcp().peer_addr().unwrap(),
                client.get_ref().0.local_addr().unwrap()
            );
        }
    }
}

#[tokio::test]
async fn reads_two_messages_sent_in_one_flush() {
    let pki = Pki::new();
    let (mut client, mut server) = pair(&pki, TLS13, b"http/1.1").await;
    // Two records queued in the client's rustls connection, written by one flush.
    use std::io::Write;
    client.get_mut().1.writer().write_all(b"first").unwrap();
    client.get_mut().1.writer().write_all(b"second").unwrap();
    client.flush().await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 5];
    while got.len() < 11 {
        let n = timeout(Duration::from_secs(10), server.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
        if got.len() < 11 {
            // The rest is already here: ready without waiting for the socket.
            let ready = poll_fn(|cx| Poll::Ready(server.poll_read_ready(cx))).await;
            assert!(
                matches!(ready, Poll::Ready(Ok(()))),
                "the rest of the bytes are buffered (read {got:?})"
            );
        }
    }
    assert_eq!(got, b"firstsecond");
    assert!(!server.holds_buffers());
    // A larger read takes both records at once.
    client.get_mut().1.writer().write_all(b"third").unwrap();
    client.get_mut().1.writer().write_all(b"fourth").unwrap();
    client.flush().await.unwrap();
    let mut buf = [0u8; 100];
    let n = timeout(Duration::from_secs(10), server.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..n], b"thirdfourth");
}

async fn gives_buffers_back_while_idle(versions: &[&'static SupportedProtocolVersion]) {
    let pki = Pki::new();
    let (mut client, mut server) = pair(&pki, versions, b"http/1.1").await;
    assert!(!server.holds_buffers(), "idle after the handshake");
    for round in 0..3u8 {
        let request = pattern(300, round);
        client.write_all(&request).await.unwrap();
        client.flush().await.unwrap();
        poll_fn(|cx| server.poll_read_ready(cx)).await.unwrap();
        let mut buf = [0u8; 300];
        server.read_exact(&mut buf).await.unwrap();
        assert!(buf[..] == request[..]);
        assert!(!server.holds_buffers(), "nothing left to read");
        server.write_all(&pattern(20_000, round)).await.unwrap();
        assert!(
            server.holds_buffers(),
            "the response's last record is not sent yet"
        );
        server.flush().await.unwrap();
        assert!(!server.holds_buffers(), "idle once flushed");
        let mut response = vec![0u8; 20_000];
        client.read_exact(&mut response).await.unwrap();
        assert!(response == pattern(20_000, round));
        // Idle wait: the buffers are in this thread's pool.
        assert!(pooled_buffers() >= 2);
        let wait = timeout(
            Duration::from_millis(50),
            poll_fn(|cx| server.poll_read_ready(cx)),
        )
        .await;
        assert!(wait.is_err(), "nothing to read while the client is quiet");
        assert!(!server.holds_buffers());
    }
}

#[tokio::test]
async fn gives_buffers_back_while_idle_over_tls13() {
    gives_buffers_back_while_idle(TLS13).await;
}

#[tokio::test]
async fn gives_buffers_back_while_idle_over_tls12() {
    gives_buffers_back_while_idle(TLS12).await;
}

#[tokio::test]
async fn close_notify_from_the_client_is_eof() {
    let pki = Pki::new();
    for versions in [TLS12, TLS13] {
        let (mut client, mut server) = pair(&pki, versions, b"http/1.1").await;
        client.write_all(b"last words").await.unwrap();
        client.shutdown().await.unwrap();
        let mut got = Vec::new();
        timeout(Duration::from_secs(10), server.read_to_end(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, b"last words");
        // Still writable after the peer's close_notify, then closed by ours.
        server.write_all(b"bye").await.unwrap();
        server.shutdown().await.unwrap();
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"bye");
        assert!(
            server.write_all(b"more").await.is_err(),
            "no writes after close_notify"
        );
    }
}

#[tokio::test]
async fn abrupt_close_is_eof_or_error_without_hang() {
    let pki = Pki::new();
    // Between records.
    let (client, mut server) = pair(&pki, TLS13, b"http/1.1").await;
    drop(client);
    let mut buf = [0u8; 100];
    let result = timeout(Duration::from_secs(10), server.read(&mut buf))
        .await
        .unwrap();
    assert!(matches!(result, Ok(0)) || result.is_err());
    assert!(!server.holds_buffers());
    // In the middle of a record.
    let (mut client, mut server) = pair(&pki, TLS13, b"http/1.1").await;
    client
        .get_mut()
        .0
        .write_all(&[0x17, 0x03, 0x03, 0x01, 0x00, 1, 2, 3])
        .await
        .unwrap();
    drop(client);
    let result = timeout(Duration::from_secs(10), server.read(&mut buf))
        .await
        .unwrap();
    // A reset when the client's socket closes with bytes (session tickets) unread.
    let kind = result.unwrap_err().kind();
    assert!(
        matches!(
            kind,
            io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
        ),
        "{kind:?}"
    );
}

#[tokio::test]
async fn bad_input_is_an_error() {
    let pki = Pki::new();
    // Not TLS at all.
    let listener = bind().await;
    let config = pki.server(TLS13);
    let mut raw = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    raw.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (tcp, _) = listener.accept().await.unwrap();
    let result = timeout(Duration::from_secs(10), TlsSession::accept(tcp, config))
        .await
        .unwrap();
    assert!(result.is_err());
    // A record that does not decrypt.
    let (mut client, mut server) = pair(&pki, TLS13, b"http/1.1").await;
    let mut forged = vec![0x17, 0x03, 0x03, 0x00, 0x20];
    forged.extend_from_slice(&[0x55; 0x20]);
    client.get_mut().0.write_all(&forged).await.unwrap();
    let mut buf = [0u8; 100];
    let result = timeout(Duration::from_secs(10), server.read(&mut buf))
        .await
        .unwrap();
    assert_eq!(result.unwrap_err().kind(), io::ErrorKind::InvalidData);
    assert!(
        server.read(&mut buf).await.is_err(),
        "a failed session stays failed"
    );
    // The handshake ends with the client gone.
    let gone = bind().await;
    let raw = TcpStream::connect(gone.local_addr().unwrap())
        .await
        .unwrap();
    drop(raw);
    let (tcp, _) = gone.accept().await.unwrap();
    let result = timeout(
        Duration::from_secs(10),
        TlsSession::accept(tcp, pki.server(TLS12)),
    )
    .await
    .unwrap();
    assert!(result.is_err());
}

/// Byte `i` of the stream the backpressure test writes.
fn stream_byte(i: usize) -> u8 {
    (i % 251) as u8
}

#[tokio::test]
async fn writes_stop_when_the_client_stops_reading() {
    let pki = Pki::new();
    let (mut client, mut server) = pair(&pki, TLS13, b"http/1.1").await;
    let window: Vec<u8> = (0..64 * 1024 + 251).map(stream_byte).collect();
    let mut accepted = 0usize;
    let mut pending = false;
    for _ in 0..20_000 {
        let offset = accepted % 251;
        let data = &window[offset..offset + 64 * 1024];
        let poll = poll_fn(|cx| Poll::Ready(Pin::new(&mut server).poll_write(cx, data))).await;
        match poll {
            Poll::Ready(n) => accepted += n.unwrap(),
            Poll::Pending => {
                pending = true;
                break;
            }
        }
    }
    // Without backpressure the loop would take 20,000 writes of up to 16 KiB (300 MiB).
    assert!(
        pending,
        "writes return Pending once the socket and the buffer are full"
    );
    assert!(server.holds_buffers());
    // Every accepted byte arrives once the client reads again.
    let reader = tokio::spawn(async move {
        let mut got = vec![0u8; accepted];
        client.read_exact(&mut got).await.unwrap();
        got
    });
    server.flush().await.unwrap();
    assert!(!server.holds_buffers());
    let got = timeout(Duration::from_secs(30), reader)
        .await
        .unwrap()
        .unwrap();
    let first_wrong = got
        .iter()
        .enumerate()
        .position(|(i, b)| *b != stream_byte(i));
    assert_eq!(first_wrong, None, "of {accepted} bytes");
}

#[tokio::test]
async fn a_second_connection_resumes() {
    let pki = Pki::new();
    for versions in [TLS12, TLS13] {
        let listener = bind().await;
        let config = pki.server(versions);
        let connector = pki.client(versions, b"http/1.1");
        for attempt in 0..2 {
            let server = async {
                let (tcp, _) = listener.accept().await.unwrap();
                let mut session = TlsSession::accept(tcp, config.clone()).await.unwrap();
                echo_loop(&mut session, 4096).await.unwrap();
                session.shutdown().await.unwrap();
            };
            let client = async {
                let client = connect(&connector, &listener).await;
                // Reading the echo processes the session tickets sent after the handshake.
                let (echoed, mut client) = exchange(client, b"ping").await;
                assert_eq!(echoed, b"ping");
                client.shutdown().await.unwrap();
                client.get_ref().1.handshake_kind()
            };
            let (kind, ()) = tokio::join!(client, server);
            let expected = if attempt == 0 {
                HandshakeKind::Full
            } else {
                HandshakeKind::Resumed
            };
            assert_eq!(kind, Some(expected), "attempt {attempt} over {versions:?}");
        }
    }
}

#[tokio::test]
async fn follows_the_clients_key_updates() {
    let pki = Pki::new();
    let (client, mut server) = pair(&pki, TLS13, b"http/1.1").await;
    let server = tokio::spawn(async move { echo_loop(&mut server, 4096).await });
    let mut client = client;
    for round in 0..3u8 {
        client.get_mut().1.refresh_traffic_keys().unwrap();
        let data = pattern(40_000, round);
        let (echoed, returned) = exchange(client, &data).await;
        client = returned;
        assert!(echoed == data);
    }
    client.shutdown().await.unwrap();
    timeout(Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

/// Request sizes before the idle heap is measured: small ones and one of several records.
const IDLE_HEAP_REQUESTS: [usize; 3] = [500, 40_000, 500];

/// Heap the server side of one connection keeps while idle after a request (what dropping it
/// frees): the boxed session and rustls's state, and no buffer.
async fn idle_heap(versions: &[&'static SupportedProtocolVersion]) -> u64 {
    let pki = Pki::new();
    let listener = bind().await;
    let config = pki.server(versions);
    let connector = pki.client(versions, b"http/1.1");
    let (client, server) = pair_on(&listener, &connector, &config).await;
    let (mut client, mut server) = (client, Box::new(server));
    for (round, size) in IDLE_HEAP_REQUESTS.into_iter().enumerate() {
        let request = pattern(size, round as u8);
        client.write_all(&request).await.unwrap();
        client.flush().await.unwrap();
        let mut buf = vec![0u8; size];
        server.read_exact(&mut buf).await.unwrap();
        server
            .write_all(&pattern(5_000, round as u8))
            .await
            .unwrap();
        server.flush().await.unwrap();
        let mut response = vec![0u8; 5_000];
        client.read_exact(&mut response).await.unwrap();
    }
    assert!(!server.holds_buffers());
    let before = dhat::HeapStats::get().curr_bytes;
    drop(server);
    let after = dhat::HeapStats::get().curr_bytes;
    (before - after) as u64
}

async fn pair_on(
    listener: &TcpListener,
    connector: &tokio_rustls::TlsConnector,
    config: &Arc<rustls::ServerConfig>,
) -> (ClientTls<TcpStream>, TlsSession) {
    let server = async {
        let (tcp, _) = listener.accept().await.unwrap();
        TlsSession::accept(tcp, config.clone()).await.unwrap()
    };
    tokio::join!(connect(connector, listener), server)
}

/// What [`idle_heap`] measures, for tokio-rustls's server stream over the buffered
/// `rustls::ServerConnection`: the comparison.
async fn idle_heap_tokio_rustls(versions: &[&'static SupportedProtocolVersion]) -> u64 {
    let pki = Pki::new();
    let listener = bind().await;
    let acceptor = tokio_rustls::TlsAcceptor::from(pki.server(versions));
    let connector = pki.client(versions, b"http/1.1");
    let server = async {
        let (tcp, _) = listener.accept().await.unwrap();
        Box::new(acceptor.accept(tcp).await.unwrap())
    };
    let (mut client, mut server) = tokio::join!(connect(&connector, &listener), server);
    for (round, size) in IDLE_HEAP_REQUESTS.into_iter().enumerate() {
        client.write_all(&pattern(size, round as u8)).await.unwrap();
        client.flush().await.unwrap();
        let mut buf = vec![0u8; size];
        server.read_exact(&mut buf).await.unwrap();
        server
            .write_all(&pattern(5_000, round as u8))
            .await
            .unwrap();
        server.flush().await.unwrap();
        let mut response = vec![0u8; 5_000];
        client.read_exact(&mut response).await.unwrap();
    }
    let before = dhat::HeapStats::get().curr_bytes;
    drop(server);
    let after = dhat::HeapStats::get().curr_bytes;
    (before - after) as u64
}

/// Runs [`idle_heap_in_own_process`] in a child process, where no other test allocates.
#[test]
fn an_idle_session_holds_little_heap() {
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "idle_heap_in_own_process",
            "--ignored",
            "--nocapture",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
#[ignore = "run in a process of its own by an_idle_session_holds_little_heap"]
fn idle_heap_in_own_process() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        for versions in [TLS12, TLS13] {
            let heap = idle_heap(versions).await;
            let buffered = idle_heap_tokio_rustls(versions).await;
            println!(
                "{versions:?}: an idle session holds {heap} B of heap (Box<TlsSession> of {} B \
                 included); tokio-rustls's server stream {buffered} B",
                std::mem::size_of::<TlsSession>()
            );
            assert!(heap < 8 * 1024, "idle heap {heap} B over {versions:?}");
            assert!(heap < buffered, "less than tokio-rustls's {buffered} B");
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_session_reads_and_writes_from_two_tasks() {
    const LEN: usize = 4 * 1024 * 1024;
    let pki = Pki::new();
    let (client, server) = pair(&pki, TLS13, b"http/1.1").await;
    let (mut server_reader, mut server_writer) = tokio::io::split(server);
    let upload = tokio::spawn(async move {
        let mut got = Vec::new();
        server_reader.read_to_end(&mut got).await.unwrap();
        (got, server_reader)
    });
    let download = tokio::spawn(async move {
        server_writer.write_all(&pattern(LEN, 1)).await.unwrap();
        server_writer.flush().await.unwrap();
        server_writer
    });
    let (mut client_reader, mut client_writer) = tokio::io::split(client);
    let client_upload = tokio::spawn(async move {
        client_writer.write_all(&pattern(LEN, 2)).await.unwrap();
        client_writer.shutdown().await.unwrap();
        client_writer
    });
    // The server's writer blocks on a full socket while its reader goes on.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut downloaded = vec![0u8; LEN];
    timeout(
        Duration::from_secs(30),
        client_reader.read_exact(&mut downloaded),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(downloaded == pattern(LEN, 1));
    let (uploaded, server_reader) = timeout(Duration::from_secs(30), upload)
        .await
        .unwrap()
        .unwrap();
    assert!(uploaded == pattern(LEN, 2));
    let server_writer = timeout(Duration::from_secs(30), download)
        .await
        .unwrap()
        .unwrap();
    let _client_writer = client_upload.await.unwrap();
    let server = server_reader.unsplit(server_writer);
    assert!(!server.holds_buffers());
}

const WARM_UP_REQUESTS: usize = 20;
const MEASURED_REQUESTS: usize = 200;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// Runs [`request_allocations_in_own_process`] as the server in a child process and drives it
/// as the client from here, so that dhat counts the server's allocations alone.
#[test]
fn allocations_per_request_after_warm_up() {
    use std::io::BufRead;
    let pki = Pki::new();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "request_allocations_in_own_process",
            "--ignored",
            "--nocapture",
        ])
        .env("TLS_SESSION_TEST_CERT", hex(pki.cert.cert.der()))
        .env(
            "TLS_SESSION_TEST_KEY",
            hex(&pki.cert.key_pair.serialize_der()),
        )
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let port: u16 = loop {
        let line = lines.next().expect("the child reports its port").unwrap();
        if let Some(port) = line.strip_prefix("listening on ") {
            break port.parse().unwrap();
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        for versions in [TLS12, TLS13] {
            let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
            let name = ServerName::try_from("localhost").unwrap();
            let mut client = pki
                .client(versions, b"http/1.1")
                .connect(name, tcp)
                .await
                .unwrap();
            for round in 0..WARM_UP_REQUESTS + MEASURED_REQUESTS {
                client.write_all(&pattern(500, round as u8)).await.unwrap();
                client.flush().await.unwrap();
                let mut response = vec![0u8; 5_000];
                client.read_exact(&mut response).await.unwrap();
            }
            client.shutdown().await.unwrap();
        }
    });
    let report: Vec<String> = lines.map(Result::unwrap).collect();
    let status = child.wait().unwrap();
    println!("{}", report.join("\n"));
    assert!(status.success() && report.iter().any(|l| l.contains("1 passed")));
}

#[test]
#[ignore = "run in a process of its own by allocations_per_request_after_warm_up"]
fn request_allocations_in_own_process() {
    let cert = unhex(&std::env::var("TLS_SESSION_TEST_CERT").unwrap());
    let key = unhex(&std::env::var("TLS_SESSION_TEST_KEY").unwrap());
    let _profiler = dhat::Profiler::builder().testing().build();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let listener = bind().await;
        println!("listening on {}", listener.local_addr().unwrap().port());
        for versions in [TLS12, TLS13] {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ServerConfig::builder_with_provider(provider)
                .with_protocol_versions(versions)
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(
                    vec![cert.clone().into()],
                    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.clone())),
                )
                .unwrap();
            let (tcp, _) = listener.accept().await.unwrap();
            let mut session = TlsSession::accept(tcp, Arc::new(config)).await.unwrap();
            let mut request = [0u8; 500];
            let response = pattern(5_000, 0);
            let mut before = None;
            for round in 0..WARM_UP_REQUESTS + MEASURED_REQUESTS {
                if round == WARM_UP_REQUESTS {
                    before = Some(dhat::HeapStats::get());
                }
                session.read_exact(&mut request).await.unwrap();
                session.write_all(&response).await.unwrap();
                session.flush().await.unwrap();
            }
            let (before, after) = (before.unwrap(), dhat::HeapStats::get());
            let blocks =
                (after.total_blocks - before.total_blocks) as f64 / MEASURED_REQUESTS as f64;
            let bytes = (after.total_bytes - before.total_bytes) as f64 / MEASURED_REQUESTS as f64;
            println!(
                "{versions:?}: {blocks} allocations, {bytes} B allocated per request \
                 (one 500 B record in, one 5,000 B record out)"
            );
            // rustls 0.23 allocates the plaintext of each record read and the ciphertext of
            // each record written; nothing else of the session's may.
            assert!(blocks <= 2.0, "{blocks} allocations per request");
            let mut rest = Vec::new();
            session.read_to_end(&mut rest).await.unwrap();
        }
    });
}

#[tokio::test]
async fn a_request_sent_with_the_clients_finished_is_read() {
    let pki = Pki::new();
    for versions in [TLS12, TLS13] {
        let listener = bind().await;
        let config = pki.server(versions);
        let connector = pki.client(versions, b"http/1.1");
        let request = pattern(3_000, 5);
        let client = async {
            let tcp = TcpStream::connect(listener.local_addr().unwrap())
                .await
                .unwrap();
            let name = ServerName::try_from("localhost").unwrap();
            // Queued before the handshake: rustls sends it in the same write as the client's
            // Finished, so the server decrypts it during its handshake.
            connector
                .connect_with(name, tcp, |conn| {
                    std::io::Write::write_all(&mut conn.writer(), &request).unwrap();
                })
                .await
                .unwrap()
        };
        let server = async {
            let (tcp, _) = listener.accept().await.unwrap();
            TlsSession::accept(tcp, config).await.unwrap()
        };
        let (_client, mut server) = tokio::join!(client, server);
        if versions == TLS13 {
            // A TLS 1.2 client waits for the server's Finished before sending data.
            assert!(server.holds_buffers(), "the request is buffered");
        }
        let mut got = vec![0u8; request.len()];
        timeout(Duration::from_secs(10), server.read_exact(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert!(got == request);
        assert!(!server.holds_buffers());
    }
}

/// Forwards `from` to `to` a few bytes at a time, so that records and handshake messages
/// arrive split at every offset.
async fn trickle(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
) {
    let mut buf = [0u8; 4096];
    let mut step = 1;
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for piece in buf[..n].chunks(step) {
            if to.write_all(piece).await.is_err() {
                return;
            }
            tokio::task::yield_now().await;
        }
        step = step % 7 + 1;
    }
    let _ = to.shutdown().await;
}

#[tokio::test]
async fn records_split_at_every_offset_and_tiny_reads() {
    let pki = Pki::new();
    for versions in [TLS12, TLS13] {
        let listener = bind().await;
        let relay = bind().await;
        let relay_addr = relay.local_addr().unwrap();
        let server_addr = listener.local_addr().unwrap();
        let config = pki.server(versions);
        let relay_task = tokio::spawn(async move {
            let (client_side, _) = relay.accept().await.unwrap();
            let server_side = TcpStream::connect(server_addr).await.unwrap();
            server_side.set_nodelay(true).unwrap();
            let (client_read, client_write) = client_side.into_split();
            let (server_read, server_write) = server_side.into_split();
            let up = tokio::spawn(trickle(client_read, server_write));
            let down = tokio::spawn(trickle(server_read, client_write));
            let _ = tokio::join!(up, down);
        });
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut session = TlsSession::accept(tcp, config).await.unwrap();
            echo_loop(&mut session, 7).await.unwrap();
            session.shutdown().await.unwrap();
        });
        let tcp = TcpStream::connect(relay_addr).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let connector = pki.client(versions, b"http/1.1");
        let client = timeout(Duration::from_secs(30), connector.connect(name, tcp))
            .await
            .unwrap()
            .unwrap();
        let data = pattern(40_000, 4);
        let (echoed, mut client) = timeout(Duration::from_secs(60), exchange(client, &data))
            .await
            .unwrap();
        assert!(echoed == data, "over {versions:?}");
        client.shutdown().await.unwrap();
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
        timeout(Duration::from_secs(10), server)
            .await
            .unwrap()
            .unwrap();
        relay_task.await.unwrap();
    }
}

#[tokio::test]
async fn a_refused_handshake_sends_its_alert() {
    let pki = Pki::new();
    for versions in [TLS12, TLS13] {
        let listener = bind().await;
        let config = pki.server(versions);
        let connector = pki.client(versions, b"spdy/1");
        let server = async {
            let (tcp, _) = listener.accept().await.unwrap();
            TlsSession::accept(tcp, config).await.map(|_| ())
        };
        let client = async {
            let tcp = TcpStream::connect(listener.local_addr().unwrap())
                .await
                .unwrap();
            let name = ServerName::try_from("localhost").unwrap();
            connector.connect(name, tcp).await.map(|_| ())
        };
        let (client, server) = timeout(Duration::from_secs(10), async {
            tokio::join!(client, server)
        })
        .await
        .unwrap();
        assert_eq!(server.unwrap_err().kind(), io::ErrorKind::InvalidData);
        let client_error = client.unwrap_err().to_string();
        assert!(
            client_error.contains("NoApplicationProtocol"),
            "{client_error}"
        );
    }
}

/// Copies `from` to `to`, flipping the byte at offset `flip` of the stream.
async fn copy_flipping(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    flip: usize,
) {
    let mut buf = [0u8; 4096];
    let mut offset = 0;
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 {
            break;
        }
        if (offset..offset + n).contains(&flip) {
            buf[flip - offset] ^= 0x5a;
        }
        offset += n;
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
}

#[tokio::test]
async fn a_corrupted_byte_anywhere_is_an_error_never_a_panic() {
    let pki = Pki::new();
    for versions in [TLS12, TLS13] {
        for flip in (0..1_600).step_by(53) {
            let listener = bind().await;
            let relay = bind().await;
            let relay_addr = relay.local_addr().unwrap();
            let server_addr = listener.local_addr().unwrap();
            let relay_task = tokio::spawn(async move {
                let (client_side, _) = relay.accept().await.unwrap();
                let server_side = TcpStream::connect(server_addr).await.unwrap();
                let (client_read, mut client_write) = client_side.into_split();
                let (mut server_read, server_write) = server_side.into_split();
                tokio::select! {
                    () = copy_flipping(client_read, server_write, flip) => {}
                    _ = tokio::io::copy(&mut server_read, &mut client_write) => {}
                }
            });
            let config = pki.server(versions);
            let server = tokio::spawn(async move {
                let (tcp, _) = listener.accept().await.unwrap();
                let mut session = TlsSession::accept(tcp, config).await?;
                echo_loop(&mut session, 4096).await
            });
            let connector = pki.client(versions, b"http/1.1");
            let client = async {
                let tcp = TcpStream::connect(relay_addr).await.unwrap();
                let name = ServerName::try_from("localhost").unwrap();
                let mut client = connector.connect(name, tcp).await?;
                client.write_all(&pattern(1_000, 1)).await?;
                client.flush().await?;
                let mut echoed = vec![0u8; 1_000];
                client.read_exact(&mut echoed).await?;
                client.shutdown().await
            };
            let outcome = timeout(Duration::from_secs(10), async {
                let client = client.await;
                // The client is done: the relay closes both sockets.
                relay_task.abort();
                let server = server.await;
                (client, server)
            })
            .await;
            let (_client, server) = outcome.unwrap_or_else(|_| panic!("hang, flip at {flip}"));
            // A panic in the session would surface as a join error.
            let _ = server.unwrap_or_else(|e| panic!("flip at {flip} over {versions:?}: {e}"));
        }
    }
}

#[tokio::test]
async fn a_vectored_write_takes_every_slice_that_fits() {
    let pki = Pki::new();
    let (mut client, mut server) = pair(&pki, TLS13, b"http/1.1").await;
    let head = b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n".to_vec();
    let body = pattern(5_000, 8);
    let slices = [
        io::IoSlice::new(&head),
        io::IoSlice::new(&[]),
        io::IoSlice::new(&body),
    ];
    assert!(server.is_write_vectored());
    let n = server.write_vectored(&slices).await.unwrap();
    assert_eq!(n, head.len() + body.len());
    // Larger than a record: taken up to the end of the first record of the second slice.
    let big = pattern(40_000, 9);
    let slices = [io::IoSlice::new(&head), io::IoSlice::new(&big)];
    let m = server.write_vectored(&slices).await.unwrap();
    assert_eq!(m, head.len() + 16 * 1024);
    server.write_all(&big[16 * 1024..]).await.unwrap();
    server.flush().await.unwrap();
    let mut got = vec![0u8; n + head.len() + big.len()];
    client.read_exact(&mut got).await.unwrap();
    let expected = [&head[..], &body, &head, &big].concat();
    assert!(got == expected);
}
