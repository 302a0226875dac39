//! The structure of an Apache httpd configuration file: directives with their arguments and
//! `<Section …>` blocks holding more, each with its line. Lines ending in `\` continue on the
//! next; `#` starts a comment only at the start of a line; arguments may be quoted with `"` or
//! `'`. Nothing is interpreted here.

use super::ImportError;

/// One directive, or a section with the directives inside it.
#[derive(Debug, Clone, PartialEq)]
pub struct Directive {
    pub name: String,
    pub args: Vec<String>,
    /// 1-based line where it starts.
    pub line: usize,
    /// `Some` for a section (`<Proxy …>`).
    pub children: Option<Vec<Directive>>,
}

impl Directive {
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }
}

/// The file's top-level directives.
pub fn parse(text: &str, file: &str) -> Result<Vec<Directive>, ImportError> {
    // Open sections, innermost last, each with the directives read so far inside it.
    let mut stack: Vec<Directive> = Vec::new();
    let mut top: Vec<Directive> = Vec::new();
    for (line, content) in logical_lines(text) {
        let err = |m: String| ImportError::at(file, line, m);
        if let Some(rest) = content.strip_prefix("</") {
            let name = rest.trim_end_matches('>').trim();
            let Some(open) = stack.pop() else {
                return Err(err(format!("</{name}> closes no open section")));
            };
            if !open.is(name) {
                return Err(err(format!(
                    "</{name}> closes <{}> opened at line {}",
                    open.name, open.line
                )));
            }
            match stack.last_mut() {
                Some(parent) => parent.children.get_or_insert_with(Vec::new).push(open),
                None => top.push(open),
            }
            continue;
        }
        let section = content.starts_with('<');
        let body = if section {
            content[1..]
                .strip_suffix('>')
                .ok_or_else(|| err(format!("section {content:?} lacks its closing >")))?
        } else {
            content.as_str()
        };
        let mut words = words(body).map_err(err)?;
        if words.is_empty() {
            return Err(err(format!("{content:?} names no directive")));
        }
        let name = words.remove(0);
        let d = Directive {
            name,
            args: words,
            line,
            children: section.then(Vec::new),
        };
        if section {
            stack.push(d);
        } else {
            match stack.last_mut() {
                Some(parent) => parent.children.get_or_insert_with(Vec::new).push(d),
                None => top.push(d),
            }
        }
    }
    if let Some(open) = stack.pop() {
        return Err(ImportError::at(
            file,
            open.line,
            format!("<{}> is never closed", open.name),
        ));
    }
    Ok(top)
}

/// Non-empty, non-comment lines with continuations joined, each with the line it starts on.
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let (start, mut joined) = pending.take().unwrap_or((i + 1, String::new()));
        let trimmed = raw.trim();
        if joined.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                joined.push_str(part);
                joined.push(' ');
                pending = Some((start, joined));
            }
            None => {
                joined.push_str(trimmed);
                out.push((start, joined.trim().to_string()));
            }
        }
    }
    if let Some((start, joined)) = pending {
        if !joined.trim().is_empty() {
            out.push((start, joined.trim().to_string()));
        }
    }
    out
}

/// A directive's words: whitespace-separated, `"…"` and `'…'` quoted (a backslash escapes a
/// quote inside `"…"`).
fn words(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let Some(&first) = chars.peek() else {
            return Ok(out);
        };
        let mut word = String::new();
        if first == '"' || first == '\'' {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err(format!("unclosed {first} in {text:?}")),
                    Some('\\')
                        if first == '"'
                            && chars.peek().is_some_and(|c| *c == '"' || *c == '\\') =>
                    {
                        word.extend(chars.next());
                    }
                    Some(c) if c == first => break,
                    Some(c) => word.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                word.push(c);
            }
        }
        out.push(word);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_table() {
        let cases: Vec<(&str, Result<Vec<&str>, &str>)> = vec![
            ("a b  c", Ok(vec!["a", "b", "c"])),
            (
                "ProxyPass \"/my app\" x",
                Ok(vec!["ProxyPass", "/my app", "x"]),
            ),
            ("a 'b c' d", Ok(vec!["a", "b c", "d"])),
            ("a \"b\\\"c\"", Ok(vec!["a", "b\"c"])),
            ("a \"open", Err("unclosed \" in \"a \\\"open\"")),
            ("", Ok(vec![])),
        ];
        for (text, expected) in cases {
            let got = words(text);
            match expected {
                Ok(w) => assert_eq!(got.unwrap(), w, "{text:?}"),
                Err(e) => assert_eq!(got.unwrap_err(), e, "{text:?}"),
            }
        }
    }

    #[test]
    fn sections_and_continuations() {
        let text = "# comment\nListen 80\n<VirtualHost *:80>\n  ServerName a.example\n  <Proxy \"balancer://c\">\n    BalancerMember http://h:8080 \\\n      route=n1\n  </Proxy>\n</VirtualHost>\n";
        let top = parse(text, "h.conf").unwrap();
        assert_eq!(top.len(), 2);
        assert!(top[0].is("listen") && top[0].args == ["80"] && top[0].line == 2);
        let vhost = &top[1];
        assert_eq!((vhost.name.as_str(), vhost.line), ("VirtualHost", 3));
        let inner = vhost.children.as_ref().unwrap();
        assert_eq!(inner[0].args, ["a.example"]);
        let proxy = &inner[1];
        assert_eq!(proxy.args, ["balancer://c"]);
        let member = &proxy.children.as_ref().unwrap()[0];
        assert_eq!(member.args, ["http://h:8080", "route=n1"]);
        assert_eq!(member.line, 6);
    }

    #[test]
    fn errors_name_the_line() {
        for (text, expected) in [
            ("<Proxy x>\nA b\n", "h.conf:1: <Proxy> is never closed"),
            ("A\n</Proxy>\n", "h.conf:2: </Proxy> closes no open section"),
            (
                "<Proxy x>\n</Location>\n",
                "h.conf:2: </Location> closes <Proxy> opened at line 1",
            ),
            (
                "<Proxy x\n",
                "h.conf:1: section \"<Proxy x\" lacks its closing >",
            ),
            (
                "ProxyPass \"/a\n",
                "h.conf:1: unclosed \" in \"ProxyPass \\\"/a\"",
            ),
        ] {
            assert_eq!(
                parse(text, "h.conf").unwrap_err().to_string(),
                expected,
                "{text:?}"
            );
        }
    }
}
