//! AJP's four data types on the wire: byte, boolean, integer (two bytes, big endian) and
//! string (two-byte length, the bytes, a NUL; length `0xFFFF` and no bytes for a null
//! string). A [`Reader`] walks one packet's payload; the `put_*` functions append;
//! [`start_packet`] / [`finish_packet`] frame a packet and [`split_packet`] unframes one.

use super::codes::HEADER_LEN;
use super::error::Error;

/// The length that marks a null string.
pub const NULL_STRING: u16 = 0xFFFF;

/// A cursor over one packet's payload. Every read past the end is [`Error::Truncated`].
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// The bytes not read yet.
    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    pub fn byte(&mut self) -> Result<u8, Error> {
        let b = *self.buf.get(self.pos).ok_or(Error::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    pub fn boolean(&mut self) -> Result<bool, Error> {
        Ok(self.byte()? != 0)
    }

    pub fn int(&mut self) -> Result<u16, Error> {
        let v = self.peek_int()?;
        self.pos += 2;
        Ok(v)
    }

    pub fn peek_int(&self) -> Result<u16, Error> {
        match self.buf.get(self.pos..self.pos + 2) {
            Some(&[hi, lo]) => Ok(u16::from_be_bytes([hi, lo])),
            _ => Err(Error::Truncated),
        }
    }

    /// `n` raw bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], Error> {
        let end = self.pos.checked_add(n).ok_or(Error::Truncated)?;
        let b = self.buf.get(self.pos..end).ok_or(Error::Truncated)?;
        self.pos = end;
        Ok(b)
    }

    /// A string; `None` for the null string.
    pub fn string(&mut self) -> Result<Option<&'a [u8]>, Error> {
        let len = self.int()?;
        if len == NULL_STRING {
            return Ok(None);
        }
        let s = self.bytes(usize::from(len))?;
        if self.byte()? != 0 {
            return Err(Error::StringTerminator);
        }
        Ok(Some(s))
    }
}

pub fn put_int(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// A string; [`Error::TooLarge`] if its length does not fit the two-byte length (the
/// packet-size check catches it first in practice).
pub fn put_string(out: &mut Vec<u8>, s: &[u8]) -> Result<(), Error> {
    let len = u16::try_from(s.len()).map_err(|_| Error::TooLarge)?;
    if len == NULL_STRING {
        return Err(Error::TooLarge);
    }
    put_int(out, len);
    out.extend_from_slice(s);
    out.push(0);
    Ok(())
}

pub fn put_null_string(out: &mut Vec<u8>) {
    put_int(out, NULL_STRING);
}

/// Starts a packet with `magic`; [`finish_packet`] fills in its length.
pub fn start_packet(out: &mut Vec<u8>, magic: [u8; 2]) -> usize {
    let start = out.len();
    out.extend_from_slice(&magic);
    out.extend_from_slice(&[0, 0]);
    start
}

/// Writes the length of the packet begun at `start`; when the packet is longer than
/// `packet_size` it is removed again and the result is [`Error::TooLarge`].
pub fn finish_packet(out: &mut Vec<u8>, start: usize, packet_size: usize) -> Result<(), Error> {
    let total = out.len() - start;
    let payload = total - HEADER_LEN;
    match u16::try_from(payload) {
        Ok(len) if total <= packet_size => {
            out[start + 2..start + 4].copy_from_slice(&len.to_be_bytes());
            Ok(())
        }
        _ => {
            out.truncate(start);
            Err(Error::TooLarge)
        }
    }
}

/// Checks a packet's header and splits off its payload, once all of it is in `buf`.
pub fn split_packet(
    buf: &[u8],
    magic: [u8; 2],
    packet_size: usize,
    allow_empty: bool,
) -> Result<Option<(&[u8], usize)>, Error> {
    // A wrong magic is known from the first byte that differs.
    for (i, &m) in magic.iter().enumerate() {
        match buf.get(i) {
            Some(&b) if b != m => return Err(Error::Magic),
            None => return Ok(None),
            Some(_) => {}
        }
    }
    let Some(&[hi, lo]) = buf.get(2..4) else {
        return Ok(None);
    };
    let len = usize::from(u16::from_be_bytes([hi, lo]));
    if (len == 0 && !allow_empty) || len + HEADER_LEN > packet_size {
        return Err(Error::Length);
    }
    let end = HEADER_LEN + len;
    match buf.get(HEADER_LEN..end) {
        Some(payload) => Ok(Some((payload, end))),
        None => Ok(None),
    }
}

/// RFC 9110 token characters.
pub fn is_token(s: &[u8]) -> bool {
    !s.is_empty()
        && s.iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_round_trip() {
        let table: &[(Option<&[u8]>, &[u8])] = &[
            (Some(b""), &[0x00, 0x00, 0x00]),
            (Some(b"GET"), &[0x00, 0x03, b'G', b'E', b'T', 0x00]),
            (None, &[0xFF, 0xFF]),
        ];
        for &(s, wire) in table {
            let mut out = Vec::new();
            match s {
                Some(s) => put_string(&mut out, s).unwrap(),
                None => put_null_string(&mut out),
            }
            assert_eq!(out, wire);
            let mut r = Reader::new(wire);
            assert_eq!(r.string().unwrap(), s);
            assert!(r.rest().is_empty());
        }
    }

    #[test]
    fn bad_strings() {
        let table: &[(&[u8], Error)] = &[
            (&[0x00], Error::Truncated),
            (&[0x00, 0x03, b'G', b'E'], Error::Truncated),
            (&[0x00, 0x03, b'G', b'E', b'T'], Error::Truncated),
            (
                &[0x00, 0x03, b'G', b'E', b'T', b'X'],
                Error::StringTerminator,
            ),
            (&[0xFF, 0xFE], Error::Truncated),
        ];
        for &(wire, err) in table {
            assert_eq!(Reader::new(wire).string(), Err(err), "{wire:?}");
        }
    }

    #[test]
    fn packet_length_is_checked() {
        let mut out = vec![9];
        let start = start_packet(&mut out, [0x12, 0x34]);
        out.extend_from_slice(&[1, 2, 3]);
        finish_packet(&mut out, start, 8192).unwrap();
        assert_eq!(out, [9, 0x12, 0x34, 0x00, 0x03, 1, 2, 3]);
        let start = start_packet(&mut out, [0x12, 0x34]);
        out.extend_from_slice(&[0; 8189]);
        assert_eq!(finish_packet(&mut out, start, 8192), Err(Error::TooLarge));
        assert_eq!(out.len(), 8, "the refused packet is removed");
    }
}
