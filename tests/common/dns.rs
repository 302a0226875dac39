//! A real authoritative DNS server for the discovery tests: Debian's Knot DNS (`knotd`, package
//! `knot`), started by the test as the current user on a free port of 127.0.0.1 (UDP and TCP),
//! serving a forward zone the test names and the reverse zone `127.in-addr.arpa.` (for PTR
//! records of loopback addresses). The test rewrites both zones at runtime.
//!
//! - Everything lives in a temporary directory: the configuration, both zone files, the control
//!   socket, knotd's run and storage directories and its log. Nothing listens on a fixed port.
//! - A change writes the zone files with a bumped SOA serial and runs `knotc zone-reload`
//!   (zones load `whole`, no journal): one control call replaces a zone's every record at once,
//!   and knotd swaps the new zone in atomically. The call returns once a query over UDP shows the
//!   new serial.
//! - SERVFAIL comes from Knot itself: `knotc zone-purge` drops the forward zone from memory and
//!   deletes its file, and Knot answers SERVFAIL for a configured zone it has not loaded (also
//!   after a restart, since the file stays absent until SERVFAIL is turned off).
//! - knotd runs under a small `sh` wrapper that kills it with `kill -9` when its stdin reaches end
//!   of file: the test process holds the other end of that pipe, so no knotd outlives the test,
//!   whether it passes, panics or is killed.
//!
//! hickory-resolver's `Resolver` never sends a PTR query for 127.0.0.0/8 (nor for ::1): it
//! answers `localhost.` itself (RFC 6761). Ask the reverse zone through its name-server layer
//! (`hickory_resolver::name_server::NameServerPool` and `DnsHandle::lookup`), as
//! `tests/dns_server.rs` does.
//!
//! Without `knotd` (looked up on `PATH` and in the `sbin` directories, which a normal user's
//! `PATH` may lack) the server is not started: a `SKIPPED` line goes to stderr and the test
//! passes, unless `STICKYROUTE_REQUIRE_SERVICES=1`, which makes it a failure.
//!
//! Included by `tests/common/mod.rs` and, through `#[path]`, by test binaries that do not use the
//! rest of `common` (`dns_server`): it depends on nothing else in `common` but `wrapped`, which
//! such a binary includes beside it.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use super::wrapped::Wrapped;
use hickory_resolver::proto::op::{Message, Query, ResponseCode};
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use tokio::net::{TcpStream, UdpSocket};
use tokio::process::Command;

/// The reverse zone served beside the forward zone.
pub const REVERSE_ORIGIN: &str = "127.in-addr.arpa.";
/// Bound for knotd to answer after a start, and for a change to become visible.
const READY_LIMIT: Duration = Duration::from_secs(10);
/// How long one probe query waits for its answer.
const PROBE_TIMEOUT: Duration = Duration::from_millis(200);
/// Bound for one `knotc` call.
const KNOTC_LIMIT: Duration = Duration::from_secs(15);
/// Starts tried on fresh ports before giving up (another process may take a port between its
/// choice and knotd's bind).
const START_ATTEMPTS: usize = 3;

/// One resource record of a zone. Owner names and targets without a final `.` are relative to
/// the forward zone's origin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    Srv {
        name: String,
        ttl: u32,
        priority: u16,
        weight: u16,
        port: u16,
        target: String,
    },
    A {
        name: String,
        ttl: u32,
        ip: Ipv4Addr,
    },
    Aaaa {
        name: String,
        ttl: u32,
        ip: Ipv6Addr,
    },
    /// A PTR record of the reverse zone for `ip`, which must be in 127.0.0.0/8.
    Ptr {
        ip: Ipv4Addr,
        ttl: u32,
        target: String,
    },
}

impl Record {
    /// `Record::srv("_http._tcp.tomcat", 5, 0, 10, 8080, "tomcat-0.pool.test.")`.
    pub fn srv(name: &str, ttl: u32, priority: u16, weight: u16, port: u16, target: &str) -> Self {
        Record::Srv {
            name: name.to_string(),
            ttl,
            priority,
            weight,
            port,
            target: target.to_string(),
        }
    }

    pub fn a(name: &str, ttl: u32, ip: Ipv4Addr) -> Self {
        Record::A {
            name: name.to_string(),
            ttl,
            ip,
        }
    }

    pub fn aaaa(name: &str, ttl: u32, ip: Ipv6Addr) -> Self {
        Record::Aaaa {
            name: name.to_string(),
            ttl,
            ip,
        }
    }

    /// The PTR record `x.y.z.127.in-addr.arpa. → target` of `ip` = 127.z.y.x.
    pub fn ptr(ip: Ipv4Addr, ttl: u32, target: &str) -> Self {
        Record::Ptr {
            ip,
            ttl,
            target: target.to_string(),
        }
    }

    fn is_reverse(&self) -> bool {
        matches!(self, Record::Ptr { .. })
    }

    /// The record as a zone file line.
    fn zone_line(&self) -> String {
        match self {
            Record::Srv {
                name,
                ttl,
                priority,
                weight,
                port,
                target,
            } => format!("{name} {ttl} IN SRV {priority} {weight} {port} {target}"),
            Record::A { name, ttl, ip } => format!("{name} {ttl} IN A {ip}"),
            Record::Aaaa { name, ttl, ip } => format!("{name} {ttl} IN AAAA {ip}"),
            Record::Ptr { ip, ttl, target } => {
                let [a, b, c, d] = ip.octets();
                assert_eq!(a, 127, "PTR {ip}: the fixture serves only {REVERSE_ORIGIN}");
                format!("{d}.{c}.{b}.{a}.in-addr.arpa. {ttl} IN PTR {target}")
            }
        }
    }
}

/// What the server serves, kept across restarts.
struct Zones {
    records: Vec<Record>,
    serial: u32,
    servfail: bool,
}

/// A running `knotd` serving two zones on 127.0.0.1; killed and its files removed on drop.
pub struct DnsServer {
    process: Option<Wrapped>,
    addr: SocketAddr,
    origin: String,
    knotd: PathBuf,
    knotc: PathBuf,
    zones: tokio::sync::Mutex<Zones>,
    dir: tempfile::TempDir,
}

impl DnsServer {
    /// Starts knotd on 127.0.0.1:<free port> (UDP and TCP) serving `origin` (e.g. "pool.test.")
    /// and [`REVERSE_ORIGIN`], both empty but for SOA and NS; returns once it answers. `None`
    /// after a `SKIPPED` line when knotd is not installed, unless
    /// `STICKYROUTE_REQUIRE_SERVICES=1`, which panics saying how to install it.
    pub async fn start(origin: &str) -> Option<DnsServer> {
        let (knotd, knotc) = match (find_program("knotd"), find_program("knotc")) {
            (Some(d), Some(c)) => (d, c),
            _ => {
                let what = "need knotd and knotc (Debian package `knot`: apt-get install knot)";
                if std::env::var("STICKYROUTE_REQUIRE_SERVICES").as_deref() == Ok("1") {
                    panic!("the DNS tests {what} (STICKYROUTE_REQUIRE_SERVICES=1)");
                }
                // Straight to the process's stderr: `eprintln!` would be captured by the harness.
                let _ = writeln!(std::io::stderr(), "SKIPPED: the DNS tests {what}");
                return None;
            }
        };
        let mut origin = origin.trim().to_ascii_lowercase();
        if !origin.ends_with('.') {
            origin.push('.');
        }
        let dir = tempfile::Builder::new()
            .prefix("stickyroute-knot-")
            .tempdir()
            .expect("temp dir for knotd");
        let mut server = DnsServer {
            process: None,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            origin,
            knotd,
            knotc,
            zones: tokio::sync::Mutex::new(Zones {
                records: Vec::new(),
                serial: 1,
                servfail: false,
            }),
            dir,
        };
        for attempt in 1..=START_ATTEMPTS {
            server.addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
            server.write_config();
            if server.launch().await {
                return Some(server);
            }
            if attempt == START_ATTEMPTS {
                panic!(
                    "knotd did not start on {} after {START_ATTEMPTS} attempts; log:\n{}",
                    server.addr,
                    server.log_tail()
                );
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// The server's address (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The forward zone's origin, lower case with a final `.`.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Replaces every record of the forward and the reverse zone but SOA and NS with `records`
    /// (PTR records go to the reverse zone, the others to the forward zone), bumps the serial and
    /// returns once the server answers with it. While SERVFAIL is on, the forward zone keeps
    /// answering SERVFAIL and serves these records when it is turned off; while the server is
    /// stopped, the records are served from [`DnsServer::start_again`].
    pub async fn set_records(&self, records: &[Record]) {
        let mut zones = self.zones.lock().await;
        zones.serial += 1;
        zones.records = records.to_vec();
        self.write_zones(&zones);
        if self.process.is_none() {
            return;
        }
        let mut names = vec![REVERSE_ORIGIN];
        if !zones.servfail {
            names.push(self.origin.as_str());
        }
        self.knotc(&["-b", "zone-reload"], &names).await;
        for zone in names {
            self.wait_for_serial(zone, zones.serial).await;
        }
    }

    /// Makes the forward zone answer SERVFAIL (`on`), or serve its records again (`!on`), and
    /// returns once the server answers so. The reverse zone is unaffected.
    pub async fn set_servfail(&self, on: bool) {
        let mut zones = self.zones.lock().await;
        if zones.servfail == on {
            return;
        }
        zones.servfail = on;
        zones.serial += 1;
        self.write_zones(&zones);
        if self.process.is_none() {
            return;
        }
        if on {
            self.knotc(&["-b", "-f", "zone-purge"], &[self.origin.as_str()])
                .await;
            self.wait_for_servfail().await;
        } else {
            self.knotc(&["-b", "zone-reload"], &[self.origin.as_str()])
                .await;
            self.wait_for_serial(&self.origin, zones.serial).await;
        }
    }

    /// Kills knotd (`kill -9`) and returns once it is gone: queries then go unanswered (UDP) or
    /// are refused (TCP).
    pub async fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.stop("-KILL", READY_LIMIT);
        }
    }

    /// Starts knotd again on the same port with the last records (and SERVFAIL state); returns
    /// once it answers. Panics when the port was taken meanwhile.
    pub async fn start_again(&mut self) {
        if self.process.is_some() {
            return;
        }
        if !self.launch().await {
            panic!(
                "knotd did not start again on {}; log:\n{}",
                self.addr,
                self.log_tail()
            );
        }
    }

    /// The last lines of knotd's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.path("knot.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes the zone files and starts knotd; true once it answers on UDP and TCP with the
    /// current serial, false when it exits first or does not answer within [`READY_LIMIT`].
    async fn launch(&mut self) -> bool {
        let zones = self.zones.lock().await;
        self.write_zones(&zones);
        let serial = zones.serial;
        let servfail = zones.servfail;
        drop(zones);
        // A pid file left by a killed knotd would make the new one refuse to start.
        let _ = std::fs::remove_file(self.path("knot.pid"));
        let conf = self.path("knot.conf");
        let args = ["-c".to_string(), conf.display().to_string()];
        let mut process = Wrapped::spawn(&self.knotd, &args, &self.path("knotd.out"));
        let deadline = tokio::time::Instant::now() + READY_LIMIT;
        loop {
            let forward_ready = if servfail {
                self.rcode(&self.origin).await == Some(ResponseCode::ServFail)
            } else {
                self.serial(&self.origin).await == Some(serial)
            };
            if forward_ready
                && self.serial(REVERSE_ORIGIN).await == Some(serial)
                && TcpStream::connect(self.addr).await.is_ok()
            {
                self.process = Some(process);
                return true;
            }
            if !process.alive() || tokio::time::Instant::now() >= deadline {
                process.stop("-KILL", READY_LIMIT);
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn write_config(&self) {
        let dir = self.dir.path().display();
        let conf = format!(
            r#"server:
    rundir: "{dir}"
    listen: {ip}@{port}
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
control:
    listen: "{dir}/knot.sock"
log:
  - target: "{dir}/knot.log"
    any: info
database:
    storage: "{dir}"
template:
  - id: default
    storage: "{dir}"
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
    semantic-checks: off
zone:
  - domain: {forward}
    file: "{dir}/forward.zone"
  - domain: {REVERSE_ORIGIN}
    file: "{dir}/reverse.zone"
"#,
            ip = self.addr.ip(),
            port = self.addr.port(),
            forward = self.origin,
        );
        std::fs::write(self.path("knot.conf"), conf).expect("write knot.conf");
    }

    /// Writes both zone files from `zones`; without the forward one while SERVFAIL is on.
    fn write_zones(&self, zones: &Zones) {
        let forward = self.path("forward.zone");
        if zones.servfail {
            let _ = std::fs::remove_file(&forward);
        } else {
            let text = self.zone_text(&self.origin, zones, false);
            std::fs::write(&forward, text).expect("write the forward zone");
        }
        let text = self.zone_text(REVERSE_ORIGIN, zones, true);
        std::fs::write(self.path("reverse.zone"), text).expect("write the reverse zone");
    }

    /// A zone file: SOA and NS (TTL 1, negative TTL 1), then the records of that zone.
    fn zone_text(&self, origin: &str, zones: &Zones, reverse: bool) -> String {
        let ns = format!("ns.{}", self.origin);
        let mut text = format!(
            "$ORIGIN {origin}\n@ 1 IN SOA {ns} hostmaster.{} {} 3600 600 86400 1\n@ 1 IN NS {ns}\n",
            self.origin, zones.serial
        );
        for record in zones.records.iter().filter(|r| r.is_reverse() == reverse) {
            let _ = writeln!(text, "{}", record.zone_line());
        }
        text
    }

    /// Runs `knotc -s SOCKET FLAGS… zones…`; panics with its output when it fails.
    async fn knotc(&self, flags: &[&str], zones: &[&str]) {
        let mut cmd = Command::new(&self.knotc);
        cmd.arg("-s")
            .arg(self.path("knot.sock"))
            .args(["-t", "10"])
            .args(flags)
            .args(zones)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let out = tokio::time::timeout(KNOTC_LIMIT, cmd.output())
            .await
            .unwrap_or_else(|_| panic!("knotc {flags:?} {zones:?} took over {KNOTC_LIMIT:?}"))
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.knotc.display()));
        if !out.status.success() {
            panic!(
                "knotc {flags:?} {zones:?} failed ({}): {}{}\nknotd log:\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.log_tail()
            );
        }
    }

    async fn wait_for_serial(&self, zone: &str, serial: u32) {
        let deadline = tokio::time::Instant::now() + READY_LIMIT;
        while self.serial(zone).await != Some(serial) {
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "{zone} did not answer with serial {serial} within {READY_LIMIT:?}; log:\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn wait_for_servfail(&self) {
        let deadline = tokio::time::Instant::now() + READY_LIMIT;
        while self.rcode(&self.origin).await != Some(ResponseCode::ServFail) {
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "{} did not answer SERVFAIL within {READY_LIMIT:?}; log:\n{}",
                    self.origin,
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The SOA serial `zone` answers with over UDP, if it answers one.
    async fn serial(&self, zone: &str) -> Option<u32> {
        let answer = self.query_soa(zone).await?;
        answer.answers().iter().find_map(|r| match r.data() {
            RData::SOA(soa) => Some(soa.serial()),
            _ => None,
        })
    }

    /// The response code of a SOA query for `zone` over UDP, if it is answered.
    async fn rcode(&self, zone: &str) -> Option<ResponseCode> {
        Some(self.query_soa(zone).await?.response_code())
    }

    /// One SOA query over UDP; `None` when unanswered within [`PROBE_TIMEOUT`].
    async fn query_soa(&self, zone: &str) -> Option<Message> {
        let name = Name::from_ascii(zone).expect("a zone name");
        let id = rand::random::<u16>();
        let mut query = Message::new();
        query
            .set_id(id)
            .add_query(Query::query(name, RecordType::SOA));
        let bytes = query.to_vec().expect("encode a SOA query");
        let socket = UdpSocket::bind("127.0.0.1:0").await.ok()?;
        socket.connect(self.addr).await.ok()?;
        socket.send(&bytes).await.ok()?;
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(PROBE_TIMEOUT, socket.recv(&mut buf))
            .await
            .ok()?
            .ok()?;
        let answer = Message::from_vec(&buf[..n]).ok()?;
        (answer.id() == id).then_some(answer)
    }
}

/// `name` on `PATH` or in the `sbin` directories, where Debian installs knotd.
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// A port free for both UDP and TCP on 127.0.0.1 a moment ago.
fn free_port() -> u16 {
    for _ in 0..50 {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind UDP on 127.0.0.1");
        let port = udp.local_addr().expect("UDP address").port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both UDP and TCP on 127.0.0.1 in 50 tries");
}
