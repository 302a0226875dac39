//! Writes an imported [`Balancer`] as `balancer.yaml` text: keys in the order of the
//! configuration reference, values quoted where YAML could read them as something other than
//! a string, and every note as a `#` comment (above the item it concerns, or after its value).

use std::fmt::Write as _;
use std::time::Duration;

use super::model::{Ajp, Balancer, Health, Listener, Node, Noted, Pool, Session, NO_SECRET_NOTE};

/// The document as text.
pub fn write(b: &Balancer) -> String {
    let mut out = Out::default();
    for line in &b.header {
        out.comment(0, line);
    }
    out.key(0, "listeners");
    for l in &b.listeners {
        write_listener(&mut out, l);
    }
    write_session(&mut out, &b.session);
    out.key(0, "pools");
    for p in &b.pools {
        write_pool(&mut out, p);
    }
    out.text
}

fn write_listener(out: &mut Out, l: &Listener) {
    for n in &l.notes {
        out.comment(2, n);
    }
    out.item(2, "bind", &scalar(&l.bind), None);
}

fn write_session(out: &mut Out, s: &Session) {
    if s.cookies.is_none() && s.path_param.is_none() && s.separator.is_none() {
        for n in &s.notes {
            out.comment(0, n);
        }
        return;
    }
    out.key(0, "session");
    for n in &s.notes {
        out.comment(2, n);
    }
    if let Some(c) = &s.cookies {
        out.value(2, "cookies", &flow_list(&c.value), c.note.as_deref());
    }
    if let Some(p) = &s.path_param {
        out.value(2, "path_param", &scalar(&p.value), p.note.as_deref());
    }
    if let Some(p) = &s.separator {
        out.value(2, "separator", &scalar(&p.value), p.note.as_deref());
    }
}

fn write_pool(out: &mut Out, p: &Pool) {
    for n in &p.notes {
        out.comment(2, n);
    }
    out.item(2, "name", &scalar(&p.name), None);
    if !p.hosts.is_empty() {
        out.value(4, "hosts", &flow_list(&p.hosts), None);
    }
    if let Some(prefix) = &p.path_prefix {
        noted(out, 4, "path_prefix", prefix, |v| scalar(v));
    }
    if let Some(protocol) = p.protocol {
        out.value(4, "protocol", protocol.as_str(), None);
    }
    if let Some(ajp) = &p.ajp {
        write_ajp(out, 4, ajp);
    }
    if let Some(b) = &p.balance {
        noted(out, 4, "balance", b, |v| v.as_str().to_string());
    }
    if p.max_attempts.is_some() || p.recover_after.is_some() {
        out.key(4, "failover");
        if let Some(m) = &p.max_attempts {
            noted(out, 6, "max_attempts", m, |v| v.to_string());
        }
        if let Some(r) = &p.recover_after {
            noted(out, 6, "recover_after", r, |v| duration(*v));
        }
    }
    let t = &p.timeouts;
    if t.connect.is_some() || t.response.is_some() || t.idle.is_some() {
        out.key(4, "timeouts");
        for (name, v) in [
            ("connect", &t.connect),
            ("response", &t.response),
            ("idle", &t.idle),
        ] {
            if let Some(v) = v {
                noted(out, 6, name, v, |d| duration(*d));
            }
        }
    }
    if !p.fail_on_status.is_empty() {
        let codes: Vec<String> = p.fail_on_status.iter().map(u16::to_string).collect();
        out.value(
            4,
            "fail_on_status",
            &format!("[{}]", codes.join(", ")),
            None,
        );
    }
    if let Some(h) = &p.health {
        write_health(out, h);
    }
    out.key(4, "nodes");
    for n in &p.nodes {
        write_node(out, n);
    }
}

fn write_ajp(out: &mut Out, indent: usize, ajp: &Ajp) {
    out.key(indent, "ajp");
    let inner = indent + 2;
    match (&ajp.secret, &ajp.secret_env) {
        (Some(s), _) => out.value(inner, "secret", &scalar(s), None),
        (None, Some(var)) => out.value(inner, "secret_env", &scalar(var), None),
        (None, None) => out.value(inner, "secret_required", "false", Some(NO_SECRET_NOTE)),
    }
    if let Some(size) = &ajp.packet_size {
        noted(out, inner, "packet_size", size, |v| v.to_string());
    }
    if let Some(after) = &ajp.ping_after {
        noted(out, inner, "ping_after", after, |v| duration(*v));
    }
}

fn write_health(out: &mut Out, h: &Health) {
    if let Some(note) = &h.note {
        out.comment(4, note);
    }
    out.key(4, "health");
    match &h.path {
        None => out.value(6, "kind", "cping", None),
        Some(path) => {
            if h.http_kind {
                out.value(6, "kind", "http", None);
            }
            out.value(6, "path", &scalar(path), None);
        }
    }
    if let Some(i) = h.interval {
        out.value(6, "interval", &duration(i), None);
    }
    if let Some(r) = h.rise {
        out.value(6, "rise", &r.to_string(), None);
    }
    if let Some(f) = h.fall {
        out.value(6, "fall", &f.to_string(), None);
    }
}

fn write_node(out: &mut Out, n: &Node) {
    for note in &n.notes {
        out.comment(6, note);
    }
    out.item(6, "route", &scalar(&n.route), None);
    out.value(8, "address", &scalar(&n.address), None);
    if let Some(protocol) = n.protocol {
        out.value(8, "protocol", protocol.as_str(), None);
    }
    if let Some(ajp) = &n.ajp {
        write_ajp(out, 8, ajp);
    }
    if let Some(w) = &n.weight {
        noted(out, 8, "weight", w, |v| v.to_string());
    }
    if let Some(d) = &n.domain {
        out.value(8, "domain", &scalar(d), None);
    }
    if let Some(r) = &n.redirect {
        out.value(8, "redirect", &scalar(r), None);
    }
    if let Some(s) = &n.state {
        noted(out, 8, "state", s, |v| v.as_str().to_string());
    }
}

fn noted<T>(out: &mut Out, indent: usize, key: &str, v: &Noted<T>, show: impl Fn(&T) -> String) {
    out.value(indent, key, &show(&v.value), v.note.as_deref());
}

/// The text being written.
#[derive(Default)]
struct Out {
    text: String,
}

impl Out {
    fn comment(&mut self, indent: usize, text: &str) {
        let _ = writeln!(self.text, "{:indent$}# {}", "", one_line(text));
    }

    /// `key:` opening a section.
    fn key(&mut self, indent: usize, key: &str) {
        let _ = writeln!(self.text, "{:indent$}{key}:", "");
    }

    /// `key: value`, with the note after it.
    fn value(&mut self, indent: usize, key: &str, value: &str, note: Option<&str>) {
        let _ = write!(self.text, "{:indent$}{key}: {value}", "");
        self.end(note);
    }

    /// `- key: value`, the first key of a list item.
    fn item(&mut self, indent: usize, key: &str, value: &str, note: Option<&str>) {
        let _ = write!(self.text, "{:indent$}- {key}: {value}", "");
        self.end(note);
    }

    fn end(&mut self, note: Option<&str>) {
        if let Some(n) = note {
            let _ = write!(self.text, "  # {}", one_line(n));
        }
        self.text.push('\n');
    }
}

/// Comment text on one line: line breaks and other control characters become spaces.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// `[a, b]` with each item as [`scalar`] writes it.
fn flow_list(items: &[String]) -> String {
    let items: Vec<String> = items.iter().map(|s| scalar(s)).collect();
    format!("[{}]", items.join(", "))
}

/// A string as a YAML scalar: plain when it can only be read back as that same string,
/// double-quoted otherwise.
pub fn scalar(s: &str) -> String {
    let plain = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '/' || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_./-".contains(c))
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n" | "null"
        );
    if plain {
        return s.to_string();
    }
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(q, "\\x{:02x}", c as u32);
            }
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

/// A duration in the largest unit that writes it exactly: `250ms`, `10s`, `5m`, `2h`.
pub fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) || ms == 0 {
        return format!("{ms}ms");
    }
    let s = ms / 1000;
    if s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalar_table() {
        for (input, expected) in [
            ("jvm1", "jvm1"),
            ("/app", "/app"),
            ("node_1.example-2", "node_1.example-2"),
            ("127.0.0.1:8009", "\"127.0.0.1:8009\""),
            ("8009", "\"8009\""),
            ("yes", "\"yes\""),
            ("Off", "\"Off\""),
            ("null", "\"null\""),
            ("", "\"\""),
            ("-x", "\"-x\""),
            ("a b", "\"a b\""),
            ("s\"3\\t", "\"s\\\"3\\\\t\""),
            ("line\nbreak", "\"line\\x0abreak\""),
            ("#x", "\"#x\""),
        ] {
            assert_eq!(scalar(input), expected, "{input:?}");
        }
    }

    #[test]
    fn duration_table() {
        for (ms, expected) in [
            (0, "0ms"),
            (250, "250ms"),
            (1500, "1500ms"),
            (10_000, "10s"),
            (90_000, "90s"),
            (300_000, "5m"),
            (7_200_000, "2h"),
        ] {
            assert_eq!(duration(Duration::from_millis(ms)), expected, "{ms}");
        }
    }

    #[test]
    fn notes_become_comments_on_one_line() {
        let mut pool = Pool::new("app");
        pool.notes.push("first\nsecond".into());
        let mut node = Node::new("jvm1", "10.0.0.1:8009");
        node.weight = Some(Noted::new(3, "lbfactor=3"));
        pool.nodes.push(node);
        let b = Balancer {
            header: vec!["imported".into()],
            listeners: vec![Listener {
                bind: "0.0.0.0:80".into(),
                notes: vec![],
            }],
            pools: vec![pool],
            ..Balancer::default()
        };
        let text = write(&b);
        assert_eq!(
            text,
            "# imported\nlisteners:\n  - bind: \"0.0.0.0:80\"\npools:\n  # first second\n  - name: app\n    nodes:\n      - route: jvm1\n        address: \"10.0.0.1:8009\"\n        weight: 3  # lbfactor=3\n"
        );
    }
}
