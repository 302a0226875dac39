//! What an AJP node learns of the client beyond its request: [`ClientTls`], the TLS
//! attributes of a client that came over TLS (cipher, key size, protocol, certificate chain),
//! read once from its [`TlsSession`] and formatted for AJP.

use crate::ajp;
use crate::proxy::tls_session::TlsSession;

/// A TLS client's attributes, formatted for AJP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTls {
    /// The cipher suite's IANA name.
    pub cipher: String,
    pub key_size: Option<u16>,
    /// `TLSv1.3`, `TLSv1.2`.
    pub protocol: &'static str,
    /// The client's verified certificate chain, PEM.
    pub cert_pem: Option<String>,
}

impl ClientTls {
    /// The attributes of a session whose handshake is done; `None` before.
    pub fn of(session: &TlsSession) -> Option<ClientTls> {
        let c = session.connection();
        let suite = c.negotiated_cipher_suite()?;
        // IANA names: rustls spells TLS 1.3 suites `TLS13_…`.
        let cipher = suite
            .suite()
            .as_str()
            .unwrap_or("unknown")
            .replacen("TLS13_", "TLS_", 1);
        let key_size = if cipher.contains("AES_128") {
            Some(128)
        } else if cipher.contains("AES_256") || cipher.contains("CHACHA20") {
            Some(256)
        } else {
            None
        };
        let protocol = match c.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
            _ => "TLS",
        };
        let cert_pem = c
            .peer_certificates()
            .filter(|chain| !chain.is_empty())
            .map(|chain| pem(chain.iter().map(|c| c.as_ref())));
        Some(ClientTls {
            cipher,
            key_size,
            protocol,
            cert_pem,
        })
    }

    /// The attributes as the codec writes them.
    pub fn attributes(&self) -> ajp::TlsAttributes<'_> {
        ajp::TlsAttributes {
            cipher: Some(self.cipher.as_bytes()),
            // rustls exposes no session id.
            session_id: None,
            key_size: self.key_size,
            protocol: Some(self.protocol.as_bytes()),
            client_cert: self.cert_pem.as_deref().map(str::as_bytes),
        }
    }
}

/// DER certificates as one PEM text, 64 columns as RFC 7468 writes them.
fn pem<'a>(chain: impl Iterator<Item = &'a [u8]>) -> String {
    use base64::Engine;
    let mut out = String::new();
    for der in chain {
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        let mut rest = b64.as_str();
        while !rest.is_empty() {
            let (line, tail) = rest.split_at(rest.len().min(64));
            out.push_str(line);
            out.push('\n');
            rest = tail;
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::pem;

    #[test]
    fn pem_lines() {
        let der = vec![0u8; 60]; // 80 base64 characters: one full line and one of 16
        let text = pem([der.as_slice(), &[1, 2, 3][..]].into_iter());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "-----BEGIN CERTIFICATE-----");
        assert_eq!(lines[1].len(), 64);
        assert_eq!(lines[2].len(), 16);
        assert_eq!(lines[3], "-----END CERTIFICATE-----");
        assert_eq!(
            &lines[4..],
            [
                "-----BEGIN CERTIFICATE-----",
                "AQID",
                "-----END CERTIFICATE-----"
            ]
        );
    }
}
