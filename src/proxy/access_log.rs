//! The access log, off the request path: one line per request appended to a buffer of the
//! thread that served it, written out by a writer thread every [`FLUSH_EVERY`] (or sooner when
//! a buffer fills). A request pays for formatting its line into memory (hand-written, no
//! `fmt` machinery) and one uncontended lock; the `write(2)` happens elsewhere, a batch at a
//! time. A thread's lines go into chunks of [`FLUSH_AT`] bytes: a full chunk is set aside and
//! a new one started (the writer gives emptied ones back), so a writer that falls behind
//! never makes a request copy the lines already pending, as growing one buffer would.
//!
//! When the writer cannot keep up, a line that would grow a buffer past [`MAX_PENDING`] is
//! dropped and counted ([`dropped`], `stickyroute_access_log_dropped_total`): a slow disk must
//! not slow the proxy nor grow its memory without bound.
//!
//! Without [`install`] (a library user, the tests) [`Line::write`] returns false and the
//! caller logs through `tracing` as before. The lines look like the `tracing` ones (text, or
//! JSON with `--log-format json`), target `stickyroute::access`, and honour `RUST_LOG` (a
//! filter that turns the target off turns these lines off).

use std::cell::RefCell;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::state::metrics::ACCESS_LOG_DROPPED_LINES;

/// How often the writer thread writes what was logged.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// A thread's pending lines beyond which new lines are dropped.
pub const MAX_PENDING: usize = 4 << 20;
/// A chunk this full is set aside for the writer, which is woken without waiting for the
/// timer.
const FLUSH_AT: usize = 64 << 10;
/// A chunk's room beyond [`FLUSH_AT`]: the longest usual line still fits without growing it.
const CHUNK_ROOM: usize = 16 << 10;

/// One thread's lines not written yet.
#[derive(Default)]
struct Pending {
    /// Full chunks, oldest first.
    full: Vec<Vec<u8>>,
    /// The chunk being filled.
    current: Vec<u8>,
    /// Emptied chunks the writer gave back, for the next ones.
    spare: Vec<Vec<u8>>,
    /// Bytes in `full` and `current`.
    len: usize,
}

impl Pending {
    /// The chunk to append a line to, a new one when the current is full.
    fn chunk(&mut self) -> &mut Vec<u8> {
        if self.current.len() >= FLUSH_AT || self.current.capacity() == 0 {
            let next = self
                .spare
                .pop()
                .unwrap_or_else(|| Vec::with_capacity(FLUSH_AT + CHUNK_ROOM));
            let done = std::mem::replace(&mut self.current, next);
            if !done.is_empty() {
                self.full.push(done);
            }
        }
        &mut self.current
    }

    /// Every pending chunk, oldest first, for the writer.
    fn take(&mut self) -> Vec<Vec<u8>> {
        let mut chunks = std::mem::take(&mut self.full);
        if !self.current.is_empty() {
            let spare = self.spare.pop().unwrap_or_default();
            chunks.push(std::mem::replace(&mut self.current, spare));
        }
        self.len = 0;
        chunks
    }

    /// Chunks the writer emptied: two are kept for the next lines, the rest freed.
    fn give_back(&mut self, chunks: Vec<Vec<u8>>) {
        for mut c in chunks {
            if self.spare.len() < 2 && c.capacity() >= FLUSH_AT {
                c.clear();
                self.spare.push(c);
            }
        }
    }
}

type Shared = Arc<Mutex<Pending>>;

/// The line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

struct Sink {
    format: Format,
    /// Whether the `tracing` filter lets `stickyroute::access` lines through, read once at
    /// [`install`] (after the subscriber is set): the filter comes from `RUST_LOG` at start
    /// and never changes, and asking it costs every request a dispatcher lookup.
    on: bool,
    buffers: Mutex<Vec<Shared>>,
    wake: std::sync::Condvar,
    wake_lock: Mutex<bool>,
}

static SINK: OnceLock<Sink> = OnceLock::new();

thread_local! {
    static LOCAL: RefCell<Option<Shared>> = const { RefCell::new(None) };
}

/// Starts the writer thread; lines go to standard output. Call once, before serving.
pub fn install(format: Format) {
    let sink = Sink {
        format,
        on: tracing::enabled!(target: "stickyroute::access", tracing::Level::INFO),
        buffers: Mutex::new(Vec::new()),
        wake: std::sync::Condvar::new(),
        wake_lock: Mutex::new(false),
    };
    if SINK.set(sink).is_err() {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("access-log".into())
        .spawn(|| loop {
            let Some(sink) = SINK.get() else { return };
            {
                // A wake-up asked for while the last flush ran is not lost: the flag is
                // looked at before waiting.
                let woken = sink.wake_lock.lock().unwrap_or_else(|e| e.into_inner());
                let (mut woken, _) = sink
                    .wake
                    .wait_timeout_while(woken, FLUSH_EVERY, |w| !*w)
                    .unwrap_or_else(|e| e.into_inner());
                *woken = false;
            }
            flush();
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the access log writer; access lines are not written");
    }
}

/// Lines dropped because the writer fell behind.
pub fn dropped() -> u64 {
    ACCESS_LOG_DROPPED_LINES.load(Ordering::Relaxed)
}

/// Writes every pending line now (the writer thread's tick, and shutdown).
pub fn flush() {
    let Some(sink) = SINK.get() else { return };
    let buffers: Vec<Shared> = sink
        .buffers
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let mut out = std::io::stdout().lock();
    for b in buffers {
        let chunks = {
            let mut p = b.lock().unwrap_or_else(|e| e.into_inner());
            if p.len == 0 {
                continue;
            }
            p.take()
        };
        for c in &chunks {
            let _ = out.write_all(c);
        }
        b.lock()
            .unwrap_or_else(|e| e.into_inner())
            .give_back(chunks);
    }
    let _ = out.flush();
}

/// One request as the access log records it.
pub struct Line<'a> {
    pub client: SocketAddr,
    pub method: &'a str,
    /// Without `;` parameters: session ids are never logged.
    pub path: &'a str,
    pub status: u16,
    pub pool: &'a str,
    pub node: &'a str,
    pub outcome: &'a str,
    pub upstream_us: u64,
    pub total_us: u64,
}

impl Line<'_> {
    /// Logs the line: into this thread's buffer when the access log is installed, else
    /// through `tracing` (target `stickyroute::access`).
    pub fn log(&self) {
        if !self.write() {
            tracing::info!(
                target: "stickyroute::access",
                client = %self.client,
                method = self.method,
                path = self.path,
                status = self.status,
                pool = self.pool,
                node = self.node,
                outcome = self.outcome,
                upstream_us = self.upstream_us,
                total_us = self.total_us,
            );
        }
    }

    /// Appends the line to this thread's buffer. False when no access log is installed.
    pub fn write(&self) -> bool {
        let Some(sink) = SINK.get() else {
            return false;
        };
        if !sink.on {
            return true;
        }
        let full = LOCAL.with(|l| {
            let mut l = l.borrow_mut();
            let buf = l.get_or_insert_with(|| {
                let b = Shared::default();
                sink.buffers
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(b.clone());
                b
            });
            let mut p = buf.lock().unwrap_or_else(|e| e.into_inner());
            if p.len > MAX_PENDING {
                ACCESS_LOG_DROPPED_LINES.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            let chunk = p.chunk();
            let before = chunk.len();
            match sink.format {
                Format::Text => self.text(chunk),
                Format::Json => self.json(chunk),
            }
            let (added, filled) = (chunk.len() - before, chunk.len() >= FLUSH_AT);
            p.len += added;
            filled
        });
        if full {
            // One wake-up per flush: a full buffer stays full until the writer runs, and
            // every line until then would otherwise wake it again (a system call each).
            let mut woken = sink.wake_lock.lock().unwrap_or_else(|e| e.into_inner());
            if !*woken {
                *woken = true;
                sink.wake.notify_one();
            }
        }
        true
    }

    fn text(&self, b: &mut Vec<u8>) {
        push_timestamp(b);
        b.extend_from_slice(b"  INFO stickyroute::access: client=");
        push_addr(b, self.client);
        b.extend_from_slice(b" method=");
        b.extend_from_slice(self.method.as_bytes());
        b.extend_from_slice(b" path=");
        push_clean(b, self.path);
        b.extend_from_slice(b" status=");
        push_u64(b, u64::from(self.status));
        b.extend_from_slice(b" pool=");
        b.extend_from_slice(self.pool.as_bytes());
        b.extend_from_slice(b" node=");
        b.extend_from_slice(self.node.as_bytes());
        b.extend_from_slice(b" outcome=");
        b.extend_from_slice(self.outcome.as_bytes());
        b.extend_from_slice(b" upstream_us=");
        push_u64(b, self.upstream_us);
        b.extend_from_slice(b" total_us=");
        push_u64(b, self.total_us);
        b.push(b'\n');
    }

    fn json(&self, b: &mut Vec<u8>) {
        b.extend_from_slice(b"{\"timestamp\":\"");
        push_timestamp(b);
        b.extend_from_slice(
            b"\",\"level\":\"INFO\",\"target\":\"stickyroute::access\",\"client\":\"",
        );
        push_addr(b, self.client);
        b.extend_from_slice(b"\",\"method\":\"");
        push_clean(b, self.method);
        b.extend_from_slice(b"\",\"path\":\"");
        push_clean(b, self.path);
        b.extend_from_slice(b"\",\"status\":");
        push_u64(b, u64::from(self.status));
        b.extend_from_slice(b",\"pool\":\"");
        push_clean(b, self.pool);
        b.extend_from_slice(b"\",\"node\":\"");
        push_clean(b, self.node);
        b.extend_from_slice(b"\",\"outcome\":\"");
        b.extend_from_slice(self.outcome.as_bytes());
        b.extend_from_slice(b"\",\"upstream_us\":");
        push_u64(b, self.upstream_us);
        b.extend_from_slice(b",\"total_us\":");
        push_u64(b, self.total_us);
        b.extend_from_slice(b"}\n");
    }
}

/// Appends `s` with bytes that could break a line or a JSON string (controls, `"`, `\`)
/// replaced by `_`: a log line is one line whatever the client sent.
fn push_clean(b: &mut Vec<u8>, s: &str) {
    if s.bytes()
        .all(|c| c > 0x1f && c != b'"' && c != b'\\' && c != 0x7f)
    {
        b.extend_from_slice(s.as_bytes());
        return;
    }
    b.extend(s.bytes().map(|c| {
        if c <= 0x1f || c == b'"' || c == b'\\' || c == 0x7f {
            b'_'
        } else {
            c
        }
    }));
}

/// `SocketAddr`'s `Display` form; IPv4 without the `fmt` machinery (it was a tenth of a
/// request's instructions).
fn push_addr(b: &mut Vec<u8>, a: SocketAddr) {
    match a {
        SocketAddr::V4(v4) => {
            crate::h1::values::push_ip(b, std::net::IpAddr::V4(*v4.ip()));
            b.push(b':');
            push_u64(b, u64::from(v4.port()));
        }
        SocketAddr::V6(_) => {
            let _ = write!(b, "{a}");
        }
    }
}

fn push_u64(b: &mut Vec<u8>, n: u64) {
    b.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// `2026-12-01T22:12:10.123456Z` (UTC, microseconds), as `tracing`'s text format writes it.
fn push_timestamp(b: &mut Vec<u8>) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let mut out = [0u8; 27];
    // `YYYY-MM-DDTHH:MM:SS` changes once a second: formatted once per second and thread.
    let date = STAMP.with(|c| {
        let (secs, text) = c.get();
        if secs == now.as_secs() {
            return text;
        }
        let text = date_time(now.as_secs());
        c.set((now.as_secs(), text));
        text
    });
    out[..19].copy_from_slice(&date);
    out[19] = b'.';
    let mut us = now.subsec_micros();
    for d in out[20..26].iter_mut().rev() {
        *d = b'0' + (us % 10) as u8;
        us /= 10;
    }
    out[26] = b'Z';
    b.extend_from_slice(&out);
}

thread_local! {
    static STAMP: std::cell::Cell<(u64, [u8; 19])> = const { std::cell::Cell::new((u64::MAX, [0; 19])) };
}

/// `YYYY-MM-DDTHH:MM:SS` of a Unix time (years past 9999 are written as 9999).
fn date_time(secs: u64) -> [u8; 19] {
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let t = secs % 86_400;
    let mut o = *b"0000-00-00T00:00:00";
    let y = (y.clamp(0, 9999)) as u64;
    let put = |o: &mut [u8; 19], at: usize, n: u64| {
        o[at] = b'0' + (n / 10) as u8;
        o[at + 1] = b'0' + (n % 10) as u8;
    };
    put(&mut o, 0, y / 100);
    put(&mut o, 2, y % 100);
    put(&mut o, 5, m as u64);
    put(&mut o, 8, d as u64);
    put(&mut o, 11, t / 3600);
    put(&mut o, 14, t / 60 % 60);
    put(&mut o, 17, t % 60);
    o
}

/// Year, month, day of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines appended past several chunks come out whole and in order; no chunk grows past
    /// the room it was made with; emptied chunks are reused, two at most kept.
    #[test]
    fn pending_lines_in_chunks() {
        let mut p = Pending::default();
        let mut want = Vec::new();
        for i in 0..3000 {
            let line = format!("line {i} {}\n", "x".repeat(i % 97));
            let c = p.chunk();
            c.extend_from_slice(line.as_bytes());
            p.len += line.len();
            want.extend_from_slice(line.as_bytes());
        }
        assert_eq!(p.len, want.len());
        let chunks = p.take();
        assert!(chunks.len() > 2, "{} chunks", chunks.len());
        assert!(chunks
            .iter()
            .all(|c| c.capacity() == FLUSH_AT + CHUNK_ROOM && c.len() < FLUSH_AT + 200));
        assert_eq!(chunks.concat(), want);
        assert_eq!((p.len, p.take().len()), (0, 0));

        p.give_back(chunks);
        assert_eq!(p.spare.len(), 2);
        p.chunk().extend_from_slice(b"next\n");
        p.len += 5;
        assert_eq!(p.take().concat(), b"next\n");
    }

    #[test]
    fn civil_dates() {
        let cases = [
            (0, (1970, 1, 1)),
            (59, (1970, 3, 1)),
            (11_016, (2000, 2, 29)),
            (20_788, (2026, 12, 1)),
            (-1, (1969, 12, 31)),
        ];
        for (days, want) in cases {
            assert_eq!(civil_from_days(days), want, "{days}");
        }
    }

    fn line() -> Line<'static> {
        Line {
            client: "127.0.0.1:5000".parse().unwrap(),
            method: "GET",
            path: "/a\"b\nc",
            status: 200,
            pool: "app",
            node: "jvm2",
            outcome: "hit",
            upstream_us: 120,
            total_us: 140,
        }
    }

    #[test]
    fn text_line_shape() {
        let mut b = Vec::new();
        line().text(&mut b);
        let s = String::from_utf8(b).unwrap();
        assert!(s.ends_with(" INFO stickyroute::access: client=127.0.0.1:5000 method=GET path=/a_b_c status=200 pool=app node=jvm2 outcome=hit upstream_us=120 total_us=140\n"), "{s}");
        assert_eq!(s.matches('\n').count(), 1, "{s}");
        assert_eq!(&s[4..5], "-");
        assert_eq!(&s[26..27], "Z", "{s}");
    }

    #[test]
    fn date_times() {
        let cases: [(u64, &str); 4] = [
            (0, "1970-01-01T00:00:00"),
            (951_782_400, "2000-02-29T00:00:00"),
            (1_796_083_199, "2026-11-30T23:59:59"),
            (1_796_083_200 + 3_723, "2026-12-01T01:02:03"),
        ];
        for (secs, want) in cases {
            assert_eq!(
                std::str::from_utf8(&date_time(secs)).unwrap(),
                want,
                "{secs}"
            );
        }
    }

    #[test]
    fn addresses_as_display_writes_them() {
        for a in [
            "127.0.0.1:5000",
            "10.200.0.255:65535",
            "0.0.0.0:0",
            "[::1]:8080",
            "[fe80::1]:1",
        ] {
            let addr: SocketAddr = a.parse().unwrap();
            let mut b = Vec::new();
            push_addr(&mut b, addr);
            assert_eq!(String::from_utf8(b).unwrap(), addr.to_string());
        }
    }

    #[test]
    fn json_line_parses() {
        let mut b = Vec::new();
        line().json(&mut b);
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["target"], "stickyroute::access");
        assert_eq!(v["status"], 200);
        assert_eq!(v["path"], "/a_b_c");
        assert_eq!(v["total_us"], 140);
        assert!(v["timestamp"].as_str().unwrap().ends_with('Z'));
    }
}
