//! Active health checks of AJP nodes: `health.kind: cping` (CPing, expect CPong) and
//! `health.kind: http` sent as an AJP request (`GET health.path` with the node's secret,
//! judged on the status of its Send Headers). Each on a fresh connection, within
//! `health.timeout` (the caller's).

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::ajp::{self, Packet};
use crate::config::{AjpConfig, HealthConfig, NodeAddr};
use crate::core::health::status_ok;
use crate::proxy::upstream::open_tcp;

/// Why an AJP probe failed (the health checker's `ProbeError` says it to the operator).
#[derive(Debug)]
pub enum ProbeError {
    Connect(String),
    Protocol(String),
    Status(u16),
}

/// CPing on a new connection; good when CPong comes back.
pub async fn cping(addr: &NodeAddr) -> Result<(), ProbeError> {
    let mut s = open_tcp(addr)
        .await
        .map_err(|e| ProbeError::Connect(e.to_string()))?;
    let io = |e: std::io::Error| ProbeError::Protocol(format!("CPing: {e}"));
    s.write_all(&ajp::CPING_PACKET).await.map_err(io)?;
    let mut pong = [0u8; 5];
    s.read_exact(&mut pong).await.map_err(io)?;
    if pong == ajp::CPONG_PACKET {
        Ok(())
    } else {
        Err(ProbeError::Protocol(
            "CPing answered with something other than CPong".into(),
        ))
    }
}

/// `GET cfg.path` as an AJP Forward Request; good when the status is one `expect_status`
/// accepts.
pub async fn get(
    addr: &NodeAddr,
    host: &str,
    cfg: &HealthConfig,
    ajp_cfg: &AjpConfig,
) -> Result<(), ProbeError> {
    let mut s = open_tcp(addr)
        .await
        .map_err(|e| ProbeError::Connect(e.to_string()))?;
    let headers: [(&[u8], &[u8]); 2] = [
        (b"Host", host.as_bytes()),
        (b"User-Agent", b"stickyroute-health-check"),
    ];
    let (path, query) = match cfg.path.split_once('?') {
        Some((p, q)) => (p, Some(q.as_bytes())),
        None => (cfg.path.as_str(), None),
    };
    let req = ajp::ForwardRequest {
        method: b"GET",
        protocol: b"HTTP/1.1",
        uri: path.as_bytes(),
        query,
        remote_addr: b"127.0.0.1",
        remote_host: b"127.0.0.1",
        remote_port: None,
        server_name: host.rsplit_once(':').map_or(host, |(h, _)| h).as_bytes(),
        server_port: 80,
        is_ssl: false,
        headers: &headers,
        secret: ajp_cfg.secret.as_deref().map(str::as_bytes),
        tls: None,
    };
    let mut out = Vec::new();
    ajp::write_forward_request(&req, ajp_cfg.packet_size, &mut out)
        .map_err(|e| ProbeError::Protocol(e.to_string()))?;
    let io = |e: std::io::Error| ProbeError::Protocol(format!("AJP: {e}"));
    s.write_all(&out).await.map_err(io)?;
    let mut inb = Vec::with_capacity(4096);
    loop {
        match ajp::parse_packet(&inb, ajp_cfg.packet_size) {
            Err(e) => return Err(ProbeError::Protocol(e.to_string())),
            Ok(Some((Packet::SendHeaders(h), _))) => {
                let status = http::StatusCode::from_u16(h.status)
                    .map_err(|_| ProbeError::Protocol("invalid status".into()))?;
                return if status_ok(status, &cfg.expect_status) {
                    Ok(())
                } else {
                    Err(ProbeError::Status(h.status))
                };
            }
            Ok(Some((Packet::GetBodyChunk(_), used))) => {
                // The request has no body: the empty chunk says so.
                inb.drain(..used);
                s.write_all(&[0x12, 0x34, 0x00, 0x00]).await.map_err(io)?;
            }
            Ok(Some((_, used))) => {
                inb.drain(..used);
            }
            Ok(None) => {
                if s.read_buf(&mut inb).await.map_err(io)? == 0 {
                    return Err(ProbeError::Protocol(
                        "the node closed before answering".into(),
                    ));
                }
            }
        }
    }
}
