//! The `name=value` line format of mod_jk's `workers.properties` and `uriworkermap.properties`:
//! `#` starts a comment anywhere on a line, whitespace around names and values is dropped, and
//! `$(name)` in a value is replaced by an earlier property of that name or, failing that, by
//! the environment variable of that name, as mod_jk does. A value that is one `$(NAME)` and
//! nothing else, `NAME` not being a property of the file, also keeps the variable's name
//! ([`Property::env_var`]): a secret written that way becomes `secret_env: NAME`, whether or not
//! the variable is set where the import runs.

use super::ImportError;

/// One `name=value` line.
#[derive(Debug, Clone, PartialEq)]
pub struct Property {
    pub name: String,
    pub value: String,
    /// 1-based line number in its file.
    pub line: usize,
    /// `NAME` when the value was written `$(NAME)` and `NAME` is no earlier property.
    pub env_var: Option<String>,
    /// That variable is not set either: `value` is empty.
    pub unset: bool,
}

impl Property {
    /// The value, or the error for a `$(NAME)` that nothing defines.
    pub fn resolved(&self, file: &str) -> Result<&str, ImportError> {
        match (&self.env_var, self.unset) {
            (Some(name), true) => Err(ImportError::at(file, self.line, undefined(name))),
            _ => Ok(&self.value),
        }
    }
}

fn undefined(name: &str) -> String {
    format!("$({name}) is neither defined earlier in the file nor set in the environment")
}

/// `NAME` if `value` is exactly `$(NAME)`.
fn sole_reference(value: &str) -> Option<&str> {
    value
        .strip_prefix("$(")
        .and_then(|v| v.strip_suffix(')'))
        .filter(|name| !name.contains([')', '(', '$']))
}

/// Every property of `text` in file order; `env` looks up environment variables.
pub fn parse(
    text: &str,
    file: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<Property>, ImportError> {
    let mut props: Vec<Property> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let content = raw.split('#').next().unwrap_or("").trim();
        if content.is_empty() {
            continue;
        }
        let Some((name, value)) = content.split_once('=') else {
            return Err(ImportError::at(
                file,
                line,
                format!("expected name=value, found {content:?}"),
            ));
        };
        let name = name.trim();
        if name.is_empty() {
            return Err(ImportError::at(file, line, "a property without a name"));
        }
        let value = value.trim();
        let env_var = sole_reference(value)
            .filter(|n| !props.iter().any(|p| p.name == *n))
            .map(str::to_string);
        let (value, unset) = match &env_var {
            Some(var) => match env(var) {
                Some(v) => (v, false),
                None => (String::new(), true),
            },
            None => (
                substitute(value, &props, env).map_err(|m| ImportError::at(file, line, m))?,
                false,
            ),
        };
        props.push(Property {
            name: name.to_string(),
            value,
            line,
            env_var,
            unset,
        });
    }
    Ok(props)
}

/// `value` with every `$(name)` replaced.
fn substitute(
    value: &str,
    props: &[Property],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("$(") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find(')') else {
            return Err(format!("unclosed $( in {value:?}"));
        };
        let name = &after[..end];
        let found = props
            .iter()
            .rev()
            .find(|p| p.name == name)
            .map(|p| p.value.clone())
            .or_else(|| env(name));
        match found {
            Some(v) => out.push_str(&v),
            None => return Err(undefined(name)),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A mod_jk boolean: `1`, `on`, or a word starting with `t` or `y` is true; `0`, `off`, or a
/// word starting with `f` or `n` is false (case-insensitive).
pub fn boolean(value: &str) -> Option<bool> {
    let v = value.trim().to_ascii_lowercase();
    match v.as_str() {
        "1" | "on" => Some(true),
        "0" | "off" => Some(false),
        _ if v.starts_with('t') || v.starts_with('y') => Some(true),
        _ if v.starts_with('f') || v.starts_with('n') => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "TOMCAT_HOST").then(|| "10.1.1.1".to_string())
    }

    #[test]
    fn parse_table() {
        type Expected<'a> = Result<Vec<(&'a str, &'a str, usize)>, &'a str>;
        let cases: Vec<(&str, Expected)> = vec![
            ("a=b", Ok(vec![("a", "b", 1)])),
            (
                "# comment\n\n  worker.x.host = h  # trailing\n",
                Ok(vec![("worker.x.host", "h", 3)]),
            ),
            ("k=v=w", Ok(vec![("k", "v=w", 1)])),
            ("k=", Ok(vec![("k", "", 1)])),
            ("base=10.0.0\nh=$(base).7", Ok(vec![("base", "10.0.0", 1), ("h", "10.0.0.7", 2)])),
            ("h=$(TOMCAT_HOST):8009", Ok(vec![("h", "10.1.1.1:8009", 1)])),
            ("a=1\njust words", Err("t.properties:2: expected name=value, found \"just words\"")),
            ("=v", Err("t.properties:1: a property without a name")),
            (
                "h=x$(NOPE)",
                Err("t.properties:1: $(NOPE) is neither defined earlier in the file nor set in the environment"),
            ),
            ("h=$(NOPE)", Ok(vec![("h", "", 1)])),
            ("h=$(open", Err("t.properties:1: unclosed $( in \"$(open\"")),
        ];
        for (text, expected) in cases {
            let got = parse(text, "t.properties", &env);
            match expected {
                Ok(want) => {
                    let got = got.unwrap_or_else(|e| panic!("{text:?}: {e}"));
                    let got: Vec<_> = got
                        .iter()
                        .map(|p| (p.name.as_str(), p.value.as_str(), p.line))
                        .collect();
                    assert_eq!(got, want, "{text:?}");
                }
                Err(want) => {
                    let e = got.expect_err(text);
                    assert_eq!(e.to_string(), want, "{text:?}");
                }
            }
        }
    }

    #[test]
    fn env_var_table() {
        for (text, expected) in [
            ("s=$(AJP_SECRET)", Some("AJP_SECRET")),
            ("s=$(TOMCAT_HOST)", Some("TOMCAT_HOST")),
            ("v=1\ns=$(v)", None),
            ("s=x$(v)", None),
            ("s=plain", None),
        ] {
            let got = parse(text, "t", &|n| env(n)).ok();
            let got = got
                .as_ref()
                .and_then(|p| p.last())
                .and_then(|p| p.env_var.as_deref());
            assert_eq!(got, expected, "{text:?}");
        }
        let p = &parse("s=$(X)", "t", &env).unwrap()[0];
        assert_eq!(
            p.resolved("t").unwrap_err().to_string(),
            "t:1: $(X) is neither defined earlier in the file nor set in the environment"
        );
    }

    #[test]
    fn boolean_table() {
        for (v, expected) in [
            ("1", Some(true)),
            ("0", Some(false)),
            ("True", Some(true)),
            ("false", Some(false)),
            ("on", Some(true)),
            ("OFF", Some(false)),
            ("yes", Some(true)),
            ("n", Some(false)),
            ("maybe", None),
            ("", None),
        ] {
            assert_eq!(boolean(v), expected, "{v:?}");
        }
    }
}
