//! Child processes that die with the test process: a program started under a small `sh`
//! wrapper that kills it (`kill -9`) when the test drops its handle or the test process exits,
//! whichever comes first. Used by the Tomcat and Knot DNS fixtures.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// A process run under the wrapper: killed with `kill -9` when this value is dropped or the
/// test process exits, whichever comes first.
pub struct Wrapped {
    child: Child,
    stdin: Option<ChildStdin>,
    /// The pid of the wrapped process itself (not of the wrapper).
    pub pid: u32,
    pub log: PathBuf,
}

/// `sh -c WRAPPER sh program args…`: starts the program in the background with its output
/// appended to `$SR_LOG`, prints its pid, then waits for end of file on stdin and kills it.
const WRAPPER: &str = r#""$@" </dev/null >>"$SR_LOG" 2>&1 &
echo "$!"
cat >/dev/null
kill -9 "$!" 2>/dev/null
wait
"#;

impl Wrapped {
    pub fn spawn(program: &Path, args: &[String], log: &Path) -> Wrapped {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(WRAPPER)
            .arg("sh")
            .arg(program)
            .args(args)
            .env("SR_LOG", log)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let pid = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{}: no pid from the wrapper", program.display()));
        Wrapped {
            stdin: child.stdin.take(),
            child,
            pid,
            log: log.to_path_buf(),
        }
    }

    /// Is the wrapped process still running (not gone, not a zombie)?
    pub fn alive(&self) -> bool {
        match std::fs::read_to_string(format!("/proc/{}/status", self.pid)) {
            Ok(s) => !s
                .lines()
                .any(|l| l.starts_with("State:") && (l.contains('Z') || l.contains('X'))),
            Err(_) => false,
        }
    }

    fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([sig, &self.pid.to_string()])
            .status();
    }

    /// Sends `sig` and waits (bounded) until the process is gone.
    pub fn stop(&mut self, sig: &str, timeout: Duration) {
        self.signal(sig);
        let deadline = Instant::now() + timeout;
        while self.alive() {
            if Instant::now() > deadline {
                self.signal("-KILL");
            }
            if Instant::now() > deadline + Duration::from_secs(5) {
                panic!("pid {} did not exit after {sig}", self.pid);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The last lines of the process's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Wrapped {
    fn drop(&mut self) {
        drop(self.stdin.take()); // end of file: the wrapper kills the process
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
