//! The config loader on any text: never panics (no overflow in a duration, an address or a
//! number); an error names the file and a line inside the text; a config that loads is
//! internally consistent (bounded durations, at least one listener and one pool).

#![no_main]

use libfuzzer_sys::fuzz_target;
use stickyroute_fuzz::config::{Config, MAX_DURATION};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::from_yaml(text, "fuzz.yaml") {
        Err(e) => {
            // Lines as YAML counts them: `\n`, `\r\n` and a bare `\r` each end one (a file
            // of bare CRs is several lines for the parser and for an editor).
            let breaks = text.matches('\n').count()
                + text
                    .as_bytes()
                    .windows(2)
                    .filter(|w| w[0] == b'\r' && w[1] != b'\n')
                    .count()
                + usize::from(text.ends_with('\r'));
            let lines = breaks + 2;
            if let Some(line) = e.line {
                assert!(line >= 1 && line <= lines, "line {line} of {lines}: {e}");
            }
            assert!(e.to_string().starts_with("fuzz.yaml"), "{e}");
        }
        Ok(c) => {
            assert!(!c.listeners.is_empty() && !c.pools.is_empty());
            for l in &c.listeners {
                assert!(!l.header_read_timeout.is_zero() && l.header_read_timeout <= MAX_DURATION);
            }
            for p in &c.pools {
                assert!(!p.nodes.is_empty());
                let t = &p.timeouts;
                for d in [t.connect, t.response, t.idle, p.failover.recover_after] {
                    assert!(d <= MAX_DURATION);
                }
            }
            let _ = c.summary();
            let _ = c.check_admin_exposure();
        }
    }
});
