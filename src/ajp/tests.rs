//! Byte-exact packets from the protocol reference and Tomcat, round trips, and every way a
//! container's packet is refused.

use super::*;

const PS: usize = DEFAULT_PACKET_SIZE;

/// `len` as the two bytes of an AJP integer, then the string and its NUL.
fn s(text: &str) -> Vec<u8> {
    let mut v = (text.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(text.as_bytes());
    v.push(0);
    v
}

fn packet(magic: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut v = magic.to_vec();
    v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    v.extend_from_slice(payload);
    v
}

fn plain_request<'a>(headers: &'a [(&'a [u8], &'a [u8])]) -> ForwardRequest<'a> {
    ForwardRequest {
        method: b"GET",
        protocol: b"HTTP/1.1",
        uri: b"/",
        query: None,
        remote_addr: b"127.0.0.1",
        remote_host: b"127.0.0.1",
        remote_port: None,
        server_name: b"localhost",
        server_port: 80,
        is_ssl: false,
        headers,
        secret: None,
        tls: None,
    }
}

#[test]
fn fixed_packets_from_the_reference() {
    // CPing and CPong, the empty body chunk, Tomcat's default Get Body Chunk (8192 - 6) and
    // its two End Response packets.
    assert_eq!(CPING_PACKET, [0x12, 0x34, 0x00, 0x01, 0x0A]);
    assert_eq!(CPONG_PACKET, [0x41, 0x42, 0x00, 0x01, 0x09]);
    let mut out = Vec::new();
    write_body_chunk(b"", PS, &mut out).unwrap();
    assert_eq!(out, [0x12, 0x34, 0x00, 0x00]);
    out.clear();
    write_body_chunk(b"abc", PS, &mut out).unwrap();
    assert_eq!(out, [0x12, 0x34, 0x00, 0x05, 0x00, 0x03, b'a', b'b', b'c']);

    let parsed: &[(&[u8], Packet<'_>)] = &[
        (&[0x41, 0x42, 0x00, 0x01, 0x09], Packet::CPong),
        (
            &[0x41, 0x42, 0x00, 0x03, 0x06, 0x1F, 0xFA],
            Packet::GetBodyChunk(8186),
        ),
        (
            &[0x41, 0x42, 0x00, 0x02, 0x05, 0x01],
            Packet::EndResponse { reuse: true },
        ),
        (
            &[0x41, 0x42, 0x00, 0x02, 0x05, 0x00],
            Packet::EndResponse { reuse: false },
        ),
        // Tomcat's flush: an empty chunk with its NUL.
        (
            &[0x41, 0x42, 0x00, 0x04, 0x03, 0x00, 0x00, 0x00],
            Packet::SendBodyChunk(b""),
        ),
        (
            &[0x41, 0x42, 0x00, 0x06, 0x03, 0x00, 0x02, b'o', b'k', 0x00],
            Packet::SendBodyChunk(b"ok"),
        ),
        // Without the trailing NUL.
        (
            &[0x41, 0x42, 0x00, 0x05, 0x03, 0x00, 0x02, b'o', b'k'],
            Packet::SendBodyChunk(b"ok"),
        ),
    ];
    for (wire, want) in parsed {
        assert_eq!(
            parse_packet(wire, PS),
            Ok(Some((want.clone(), wire.len()))),
            "{wire:x?}"
        );
    }
    out.clear();
    write_get_body_chunk(8186, &mut out);
    write_end_response(true, &mut out);
    assert_eq!(
        out,
        [0x41, 0x42, 0x00, 0x03, 0x06, 0x1F, 0xFA, 0x41, 0x42, 0x00, 0x02, 0x05, 0x01]
    );
}

#[test]
fn forward_request_byte_exact() {
    let headers: [(&[u8], &[u8]); 2] = [(b"Host", b"localhost"), (b"X-Trace", b"1")];
    let mut out = Vec::new();
    write_forward_request(&plain_request(&headers), PS, &mut out).unwrap();
    let mut payload = vec![0x02, 0x02];
    for field in ["HTTP/1.1", "/", "127.0.0.1", "127.0.0.1", "localhost"] {
        payload.extend(s(field));
    }
    payload.extend([0x00, 0x50, 0x00, 0x00, 0x02]);
    payload.extend([0xA0, 0x0B]);
    payload.extend(s("localhost"));
    payload.extend(s("X-Trace"));
    payload.extend(s("1"));
    payload.push(0xFF);
    assert_eq!(out, packet(&[0x12, 0x34], &payload));
}

#[test]
fn forward_request_attributes_byte_exact() {
    let headers: [(&[u8], &[u8]); 0] = [];
    let req = ForwardRequest {
        method: b"PATCH",
        query: Some(b"a=1"),
        remote_port: Some(50123),
        is_ssl: true,
        secret: Some(b"s3cret"),
        tls: Some(TlsAttributes {
            cipher: Some(b"TLS_AES_128_GCM_SHA256"),
            session_id: Some(b"ab12"),
            key_size: Some(128),
            protocol: Some(b"TLSv1.3"),
            client_cert: Some(b"PEM"),
        }),
        ..plain_request(&headers)
    };
    let mut out = Vec::new();
    write_forward_request(&req, PS, &mut out).unwrap();
    let mut payload = vec![0x02, 0xFF];
    for field in ["HTTP/1.1", "/", "127.0.0.1", "127.0.0.1", "localhost"] {
        payload.extend(s(field));
    }
    payload.extend([0x00, 0x50, 0x01, 0x00, 0x00]);
    payload.push(0x05);
    payload.extend(s("a=1"));
    payload.push(0x07);
    payload.extend(s("PEM"));
    payload.push(0x08);
    payload.extend(s("TLS_AES_128_GCM_SHA256"));
    payload.push(0x09);
    payload.extend(s("ab12"));
    payload.extend([0x0B, 0x00, 0x80]);
    payload.push(0x0A);
    payload.extend(s("AJP_SSL_PROTOCOL"));
    payload.extend(s("TLSv1.3"));
    payload.push(0x0A);
    payload.extend(s("AJP_REMOTE_PORT"));
    payload.extend(s("50123"));
    payload.push(0x0C);
    payload.extend(s("s3cret"));
    payload.push(0x0D);
    payload.extend(s("PATCH"));
    payload.push(0xFF);
    assert_eq!(out, packet(&[0x12, 0x34], &payload));
}

#[test]
fn forward_request_round_trips() {
    let headers: [(&[u8], &[u8]); 4] = [
        (b"Host", b"shop.example"),
        (b"Cookie", b"JSESSIONID=A.jvm1"),
        (b"Content-Length", b"3"),
        (b"X-Forwarded-Proto", b"https"),
    ];
    let req = ForwardRequest {
        method: b"POST",
        uri: b"/app/cart",
        query: Some(b"x=1&y=2"),
        remote_port: Some(4000),
        secret: Some(b"k"),
        is_ssl: true,
        ..plain_request(&headers)
    };
    let mut out = Vec::new();
    write_forward_request(&req, PS, &mut out).unwrap();
    write_body_chunk(b"abc", PS, &mut out).unwrap();
    let (first, used) = parse_to_container(&out, PS, false).unwrap().unwrap();
    let ToContainer::ForwardRequest(got) = first else {
        panic!("not a forward request: {first:?}");
    };
    assert_eq!(got.method, "POST");
    assert_eq!(got.uri, b"/app/cart");
    assert_eq!(got.query.as_deref(), Some(&b"x=1&y=2"[..]));
    assert_eq!(got.header("host"), Some(&b"shop.example"[..]));
    assert_eq!(got.header("cookie"), Some(&b"JSESSIONID=A.jvm1"[..]));
    assert_eq!(got.header("x-forwarded-proto"), Some(&b"https"[..]));
    assert_eq!(got.attribute("AJP_REMOTE_PORT"), Some(&b"4000"[..]));
    assert_eq!(got.secret.as_deref(), Some(&b"k"[..]));
    assert!(got.is_ssl);
    let rest = &out[used..];
    assert_eq!(
        parse_to_container(rest, PS, true).unwrap(),
        Some((ToContainer::Body(b"abc"), rest.len()))
    );
}

#[test]
fn request_too_large_for_the_packet() {
    let big = vec![b'v'; 9000];
    let headers: [(&[u8], &[u8]); 1] = [(b"X-Big", &big)];
    let mut out = vec![7];
    assert_eq!(
        write_forward_request(&plain_request(&headers), PS, &mut out),
        Err(Error::TooLarge)
    );
    assert_eq!(out, [7], "nothing appended");
    write_forward_request(&plain_request(&headers), MAX_PACKET_SIZE, &mut out).unwrap();
    assert_eq!(max_body_chunk(PS), 8186);
    assert_eq!(max_body_chunk(MAX_PACKET_SIZE), 65530);
    let chunk = vec![0; 8187];
    assert_eq!(write_body_chunk(&chunk, PS, &mut out), Err(Error::TooLarge));
    let mut out = Vec::new();
    write_body_chunk(&chunk[..8186], PS, &mut out).unwrap();
    assert_eq!(out.len(), PS);
    let bad_method = ForwardRequest {
        method: b"GE T",
        ..plain_request(&headers)
    };
    assert_eq!(
        write_forward_request(&bad_method, MAX_PACKET_SIZE, &mut out),
        Err(Error::Method)
    );
}

#[test]
fn send_headers_byte_exact() {
    let mut payload = vec![0x04, 0x00, 0xC8];
    payload.extend(s("OK"));
    payload.extend([0x00, 0x03, 0xA0, 0x01]);
    payload.extend(s("text/html"));
    payload.extend([0xA0, 0x07]);
    payload.extend(s("JSESSIONID=A.jvm1; Path=/"));
    payload.extend(s("X-App"));
    payload.extend(s("v"));
    let wire = packet(b"AB", &payload);
    let want = SendHeaders {
        status: 200,
        message: b"OK",
        headers: vec![
            (b"Content-Type", b"text/html"),
            (b"Set-Cookie", b"JSESSIONID=A.jvm1; Path=/"),
            (b"X-App", b"v"),
        ],
    };
    assert_eq!(
        parse_packet(&wire, PS),
        Ok(Some((Packet::SendHeaders(want.clone()), wire.len())))
    );
    let mut out = Vec::new();
    write_send_headers(200, b"OK", &want.headers, PS, &mut out).unwrap();
    assert_eq!(out, wire);
}

#[test]
fn incremental_parse_needs_the_whole_packet() {
    let mut wire = Vec::new();
    write_send_headers(302, b"302", &[(b"Location", b"/x")], PS, &mut wire).unwrap();
    write_send_body_chunk(b"body", PS, &mut wire).unwrap();
    write_end_response(false, &mut wire);
    let mut input = &wire[..];
    let mut packets = 0;
    while !input.is_empty() {
        // Every strict prefix of the next packet asks for more.
        let (_, used) = parse_packet(input, PS).unwrap().unwrap();
        for cut in 0..used {
            assert_eq!(parse_packet(&input[..cut], PS), Ok(None), "cut {cut}");
        }
        input = &input[used..];
        packets += 1;
    }
    assert_eq!(packets, 3);
}

#[test]
fn malformed_framing_is_refused() {
    let table: Vec<(&str, Vec<u8>, Error)> = vec![
        (
            "wrong first magic byte",
            b"XB\x00\x01\x09".to_vec(),
            Error::Magic,
        ),
        ("wrong second magic byte", b"AX".to_vec(), Error::Magic),
        (
            "request magic",
            vec![0x12, 0x34, 0x00, 0x01, 0x0A],
            Error::Magic,
        ),
        (
            "HTTP instead of AJP",
            b"HTTP/1.1 200 OK\r\n".to_vec(),
            Error::Magic,
        ),
        ("zero length", vec![0x41, 0x42, 0x00, 0x00], Error::Length),
        (
            "length past the packet size",
            vec![0x41, 0x42, 0x1F, 0xFD],
            Error::Length,
        ),
        (
            "largest length",
            vec![0x41, 0x42, 0xFF, 0xFF],
            Error::Length,
        ),
        (
            "forward request type",
            packet(b"AB", &[0x02]),
            Error::UnknownType,
        ),
        ("cping type", packet(b"AB", &[0x0A]), Error::UnknownType),
        ("type 0", packet(b"AB", &[0x00]), Error::UnknownType),
        ("type 0xFF", packet(b"AB", &[0xFF]), Error::UnknownType),
        (
            "short get body chunk",
            packet(b"AB", &[0x06, 0x01]),
            Error::Truncated,
        ),
        (
            "end response without flag",
            packet(b"AB", &[0x05]),
            Error::Truncated,
        ),
        (
            "chunk longer than its packet",
            packet(b"AB", &[0x03, 0x00, 0x09, b'a']),
            Error::Truncated,
        ),
        (
            "chunk with trailing bytes",
            packet(b"AB", &[0x03, 0x00, 0x01, b'a', 0, 0]),
            Error::Length,
        ),
    ];
    for (what, wire, err) in table {
        assert_eq!(parse_packet(&wire, PS), Err(err), "{what}");
    }
}

#[test]
fn malformed_send_headers_are_refused() {
    let headers = |extra: &[u8]| {
        let mut p = vec![0x04, 0x00, 0xC8];
        p.extend(s("OK"));
        p.extend(extra);
        packet(b"AB", &p)
    };
    let mut bad_value = vec![0x00, 0x01];
    bad_value.extend(s("X-A"));
    bad_value.extend(s("a\r\nSet-Cookie: x=1"));
    let mut bad_name = vec![0x00, 0x01];
    bad_name.extend(s("X A"));
    bad_name.extend(s("v"));
    let mut null_name = vec![0x00, 0x01, 0xFF, 0xFF];
    null_name.extend(s("v"));
    let mut bad_status = vec![0x04, 0x00, 0x63];
    bad_status.extend(s("x"));
    bad_status.extend([0x00, 0x00]);
    let mut bad_message = vec![0x04, 0x00, 0xC8];
    bad_message.extend(s("O\nK"));
    bad_message.extend([0x00, 0x00]);
    let table: Vec<(&str, Vec<u8>, Error)> = vec![
        ("headers without count", headers(&[]), Error::Truncated),
        (
            "header count lies",
            headers(&[0x00, 0x09]),
            Error::Truncated,
        ),
        (
            "header value splits the head",
            headers(&bad_value),
            Error::HeaderValue,
        ),
        (
            "header name not a token",
            headers(&bad_name),
            Error::HeaderName,
        ),
        ("null header name", headers(&null_name), Error::HeaderName),
        (
            "unknown header code",
            headers(&[0x00, 0x01, 0xA0, 0x0C, 0x00, 0x00, 0x00]),
            Error::HeaderName,
        ),
        (
            "header code 0xA000",
            headers(&[0x00, 0x01, 0xA0, 0x00, 0x00, 0x00, 0x00]),
            Error::HeaderName,
        ),
        (
            "status below 100",
            packet(b"AB", &bad_status),
            Error::Status,
        ),
        (
            "message with LF",
            packet(b"AB", &bad_message),
            Error::HeaderValue,
        ),
        (
            "unterminated message",
            packet(
                b"AB",
                &[0x04, 0x00, 0xC8, 0x00, 0x01, b'O', b'K', 0x00, 0x00],
            ),
            Error::StringTerminator,
        ),
    ];
    for (what, wire, err) in table {
        assert_eq!(parse_packet(&wire, PS), Err(err), "{what}");
    }
}

#[test]
fn larger_packet_sizes() {
    let data = vec![b'x'; 20000];
    let mut wire = Vec::new();
    write_send_body_chunk(&data, 65536, &mut wire).unwrap();
    assert_eq!(parse_packet(&wire, PS), Err(Error::Length), "past 8192");
    assert_eq!(
        parse_packet(&wire, 65536),
        Ok(Some((Packet::SendBodyChunk(&data), wire.len())))
    );
    assert_eq!(
        write_send_body_chunk(&data, PS, &mut Vec::new()),
        Err(Error::TooLarge)
    );
}

#[test]
fn container_side_refuses_garbage() {
    type Case<'a> = (&'a [u8], bool, Result<Option<usize>, Error>);
    let table: &[Case<'_>] = &[
        (&[0x12, 0x34, 0x00, 0x00], true, Ok(Some(4))),
        (&[0x12, 0x34, 0x00, 0x00], false, Err(Error::Truncated)),
        (&[0x12, 0x34, 0x00, 0x01, 0x0A], false, Ok(Some(5))),
        (
            &[0x12, 0x34, 0x00, 0x01, 0x07],
            false,
            Err(Error::UnknownType),
        ),
        (&[0x41, 0x42], false, Err(Error::Magic)),
        (&[0x12, 0x34, 0x00], false, Ok(None)),
        (
            &[0x12, 0x34, 0x00, 0x02, 0x02, 0x00],
            false,
            Err(Error::Method),
        ),
        (
            &[0x12, 0x34, 0x00, 0x02, 0x00, 0x09],
            true,
            Err(Error::Truncated),
        ),
    ];
    for &(wire, body, ref want) in table {
        let got = parse_to_container(wire, PS, body).map(|o| o.map(|(_, used)| used));
        assert_eq!(&got, want, "{wire:x?}");
    }
}
