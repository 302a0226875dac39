//! Field values the proxy appends, formatted without `format!` or any allocation of their
//! own: they are appended to a caller's reusable buffer.
//!
//! Typical use, with one scratch `Vec` per connection whose capacity survives requests:
//!
//! ```
//! use std::net::IpAddr;
//! use stickyroute::h1::{push_forwarded_for, push_ip};
//!
//! let client: IpAddr = "192.0.2.7".parse().unwrap();
//! let mut scratch = Vec::with_capacity(256);
//! push_forwarded_for(&mut scratch, Some(b"10.0.0.1"), client);
//! let xff_end = scratch.len();
//! push_ip(&mut scratch, "::ffff:10.1.2.3".parse().unwrap());
//! assert_eq!(&scratch[..xff_end], b"10.0.0.1, 192.0.2.7");
//! assert_eq!(&scratch[xff_end..], b"10.1.2.3");
//! ```
//!
//! The `Forwarded` value has one writer for both request paths,
//! `core::forwarding::push_forwarded`.

use std::io::Write as _;
use std::net::IpAddr;

/// Appends `ip` in its usual text form. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, as a
/// dual-stack listener reports IPv4 clients) is written as the IPv4 address.
pub fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            // Every request writes its client's address (X-Forwarded-For, the access log), and
            // the requests a thread serves in a row mostly come from one client (a keep-alive
            // connection): the last address written on this thread is kept in its text form.
            let key = u32::from(v4);
            let (text, len) = LAST_V4.with(|c| {
                let (k, text, len) = c.get();
                if k == Some(key) {
                    return (text, len);
                }
                let (text, len) = v4_text(v4.octets());
                c.set((Some(key), text, len));
                (text, len)
            });
            out.extend_from_slice(&text[..usize::from(len)]);
        }
        IpAddr::V6(v6) => {
            // std's formatting (RFC 5952) writes straight into the Vec: no temporary.
            let _ = write!(out, "{v6}");
        }
    }
}

thread_local! {
    /// The IPv4 address [`push_ip`] wrote last on this thread, and its text.
    static LAST_V4: std::cell::Cell<(Option<u32>, [u8; 15], u8)> =
        const { std::cell::Cell::new((None, [0; 15], 0)) };
}

/// The dotted-decimal text of an IPv4 address and its length, written into a stack buffer
/// (a copy per octet cost more than the digits).
fn v4_text(octets: [u8; 4]) -> ([u8; 15], u8) {
    let mut text = [0u8; 15];
    let mut len = 0;
    for (k, octet) in octets.into_iter().enumerate() {
        if k > 0 {
            text[len] = b'.';
            len += 1;
        }
        if octet >= 100 {
            text[len] = b'0' + octet / 100;
            len += 1;
        }
        if octet >= 10 {
            text[len] = b'0' + octet / 10 % 10;
            len += 1;
        }
        text[len] = b'0' + octet % 10;
        len += 1;
    }
    (text, len as u8)
}

/// Appends an `X-Forwarded-For` value: the previous value (from the client's field), `", "`
/// and `ip`; or `ip` alone. Returns where `ip`'s text starts in `out`.
pub fn push_forwarded_for(out: &mut Vec<u8>, prev: Option<&[u8]>, ip: IpAddr) -> usize {
    if let Some(p) = prev.filter(|p| !p.is_empty()) {
        out.extend_from_slice(p);
        out.extend_from_slice(b", ");
    }
    let at = out.len();
    push_ip(out, ip);
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ips() {
        let cases = [
            ("0.0.0.0", "0.0.0.0"),
            ("192.0.2.7", "192.0.2.7"),
            ("255.255.255.255", "255.255.255.255"),
            ("10.20.3.40", "10.20.3.40"),
            ("::1", "::1"),
            ("2001:db8::1", "2001:db8::1"),
            (
                "2001:0db8:0000:0000:0001:0000:0000:0001",
                "2001:db8::1:0:0:1",
            ),
            ("::ffff:192.0.2.7", "192.0.2.7"),
            ("fe80::1:2", "fe80::1:2"),
        ];
        for (i, want) in cases {
            let mut out = b"x".to_vec();
            push_ip(&mut out, ip(i));
            assert_eq!(&out[1..], want.as_bytes(), "{i}");
        }
    }

    /// The thread's last address is written from its kept text: an address written twice
    /// in a row, then another, then the first again, each as `Display` writes it.
    #[test]
    fn repeated_and_alternating_ipv4_addresses() {
        let seq = [
            "10.0.0.1",
            "10.0.0.1",
            "192.0.2.255",
            "10.0.0.1",
            "1.2.3.4",
            "1.2.3.4",
        ];
        for s in seq {
            let a: std::net::Ipv4Addr = s.parse().unwrap();
            for ip in [IpAddr::V4(a), IpAddr::V6(a.to_ipv6_mapped())] {
                let mut out = b"x".to_vec();
                push_ip(&mut out, ip);
                assert_eq!(&out[1..], s.as_bytes());
            }
        }
    }

    /// Every octet value in every position, against std's `Display`.
    #[test]
    fn ipv4_digits_match_display() {
        for at in 0..4 {
            for v in 0..=255u8 {
                let mut octets = [1, 20, 100, 255];
                octets[at] = v;
                let a = std::net::Ipv4Addr::from(octets);
                let mut out = Vec::new();
                push_ip(&mut out, IpAddr::V4(a));
                assert_eq!(out, a.to_string().into_bytes());
            }
        }
    }

    #[test]
    fn forwarded_for() {
        let mut out = Vec::new();
        push_forwarded_for(&mut out, None, ip("192.0.2.7"));
        assert_eq!(out, b"192.0.2.7");
        out.clear();
        let at = push_forwarded_for(&mut out, Some(b"10.0.0.1, 10.0.0.2"), ip("::1"));
        assert_eq!(out, b"10.0.0.1, 10.0.0.2, ::1");
        assert_eq!(&out[at..], b"::1");
        out.clear();
        push_forwarded_for(&mut out, Some(b""), ip("192.0.2.7"));
        assert_eq!(out, b"192.0.2.7");
    }

    #[test]
    fn appending_keeps_capacity() {
        let mut out = Vec::with_capacity(128);
        let p = out.as_ptr();
        for _ in 0..100 {
            out.clear();
            push_forwarded_for(&mut out, Some(b"10.0.0.1"), ip("2001:db8::1"));
            push_ip(&mut out, ip("192.0.2.7"));
        }
        assert_eq!(out.as_ptr(), p);
    }
}
