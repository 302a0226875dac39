//! mod_jk's mounts (`uriworkermap.properties` lines `/app/*=lb`, and `worker.lb.mount`) → the
//! pools' `path_prefix`. A pattern that is a path, or a path followed by `/*` or `*`, is a
//! prefix; wildcards elsewhere, exclusions (`!`) and disabled lines (`-`) are notes.

use super::model::{Noted, Pool};
use super::properties;
use super::{ImportError, Input};

/// One mount: `pattern` served by `worker`, written at `file:line`.
#[derive(Debug, Clone, PartialEq)]
pub struct Mount {
    pub pattern: String,
    pub worker: String,
    pub file: String,
    pub line: usize,
}

impl Mount {
    fn at(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }
}

/// Every mount of a `uriworkermap.properties`; `/app|/*` is the two mounts `/app` and `/app/*`.
pub fn parse(
    input: Input,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<Mount>, ImportError> {
    let mut mounts = Vec::new();
    for p in properties::parse(input.text, input.name, env)? {
        p.resolved(input.name)?;
        if p.value.is_empty() {
            return Err(ImportError::at(
                input.name,
                p.line,
                format!("{} maps to no worker", p.name),
            ));
        }
        let patterns = match p.name.split_once('|') {
            Some((base, rest)) => vec![base.to_string(), format!("{base}{rest}")],
            None => vec![p.name.clone()],
        };
        for pattern in patterns {
            mounts.push(Mount {
                pattern,
                worker: p.value.clone(),
                file: input.name.to_string(),
                line: p.line,
            });
        }
    }
    Ok(mounts)
}

/// The path prefix a mount pattern stands for, if it is one.
fn prefix(pattern: &str) -> Option<String> {
    let base = pattern
        .strip_suffix("/*")
        .or_else(|| pattern.strip_suffix('*'))
        .unwrap_or(pattern);
    if !pattern.starts_with('/') || base.contains(['*', '?']) {
        return None;
    }
    let base = base.trim_end_matches('/');
    Some(if base.is_empty() {
        "/".into()
    } else {
        base.to_string()
    })
}

/// Sets each pool's `path_prefix` from its first mount; other mounts become notes on the
/// pool, mounts of workers that are no pool notes in `header`.
pub fn apply(pools: &mut [Pool], mounts: &[Mount], header: &mut Vec<String>) {
    for m in mounts {
        let (worker, options) = match m.worker.split_once(';') {
            Some((w, o)) => (w.trim(), Some(o.trim())),
            None => (m.worker.trim(), None),
        };
        let Some(pool) = pools.iter_mut().find(|p| p.name == worker) else {
            header.push(format!(
                "{}: {}={} not imported: worker {worker} is not a pool",
                m.at(),
                m.pattern,
                m.worker
            ));
            continue;
        };
        if let Some(o) = options {
            pool.notes.push(format!(
                "not carried over: mount options {o:?} ({})",
                m.at()
            ));
        }
        if let Some(p) = m.pattern.strip_prefix('-') {
            pool.notes
                .push(format!("{}: the disabled mount {p} is left out", m.at()));
            continue;
        }
        if let Some(p) = m.pattern.strip_prefix('!') {
            pool.notes.push(format!("not carried over: the exclusion !{p} ({}): stickyroute forwards every path under the prefix", m.at()));
            continue;
        }
        let Some(prefix) = prefix(&m.pattern) else {
            pool.notes.push(format!("not carried over: the mount {} ({}): only a path or a path followed by /* becomes a path_prefix", m.pattern, m.at()));
            continue;
        };
        match &pool.path_prefix {
            None => pool.path_prefix = Some(Noted::new(prefix, format!("{}: {}", m.at(), m.pattern))),
            Some(existing) if existing.value == prefix => {}
            Some(_) => pool.notes.push(format!("also mounted at {prefix} ({}): a pool has one path_prefix; copy the pool under another name for this path", m.at())),
        }
    }
    if !mounts.is_empty() {
        for pool in pools.iter_mut().filter(|p| p.path_prefix.is_none()) {
            pool.notes
                .push("no mount of this worker: path_prefix / (every path)".into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_table() {
        for (pattern, expected) in [
            ("/app/*", Some("/app")),
            ("/app", Some("/app")),
            ("/app/", Some("/app")),
            ("/*", Some("/")),
            ("/", Some("/")),
            ("/shop/cart*", Some("/shop/cart")),
            ("/*.jsp", None),
            ("/app/*.do", None),
            ("/a?c/*", None),
            ("app/*", None),
        ] {
            assert_eq!(prefix(pattern).as_deref(), expected, "{pattern}");
        }
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn apply_table() {
        let text = "/app|/*=lb\n/shop/*=lb2;reply_timeout=5000\n/shop=lb2\n/more/*=lb2\n!/app/static/*=lb\n-/old/*=lb\n/*.jsp=lb2\n/jkstatus=status\n";
        let mounts = parse(
            Input {
                name: "u.properties",
                text,
            },
            &no_env,
        )
        .unwrap();
        assert_eq!(mounts.len(), 9);
        let mut pools = vec![Pool::new("lb"), Pool::new("lb2"), Pool::new("lb3")];
        let mut header = Vec::new();
        apply(&mut pools, &mounts, &mut header);
        let prefixes: Vec<Option<&str>> = pools
            .iter()
            .map(|p| p.path_prefix.as_ref().map(|n| n.value.as_str()))
            .collect();
        assert_eq!(prefixes, [Some("/app"), Some("/shop"), None]);
        assert_eq!(
            pools[0].path_prefix.as_ref().unwrap().note.as_deref(),
            Some("u.properties:1: /app")
        );
        let expect = [
            (0, "not carried over: the exclusion !/app/static/*"),
            (0, "u.properties:6: the disabled mount /old/* is left out"),
            (1, "not carried over: mount options \"reply_timeout=5000\""),
            (1, "also mounted at /more (u.properties:4)"),
            (1, "not carried over: the mount /*.jsp (u.properties:7)"),
            (2, "no mount of this worker"),
        ];
        for (pool, text) in expect {
            assert!(
                pools[pool].notes.iter().any(|n| n.starts_with(text)),
                "pool {pool} lacks {text:?}: {:?}",
                pools[pool].notes
            );
        }
        assert_eq!(
            header,
            ["u.properties:8: /jkstatus=status not imported: worker status is not a pool"]
        );
        let err = parse(
            Input {
                name: "u.properties",
                text: "/app/*=\n",
            },
            &no_env,
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "u.properties:1: /app/* maps to no worker");
    }
}
