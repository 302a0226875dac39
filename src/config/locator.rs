//! Where a configuration error is: [`ConfigError`] names the file, the line and the key, and
//! [`KeyLocator`] finds the line a key path (`pools[0].nodes[1].route`) is written on, for the
//! errors that validation finds after serde has read the document.

use std::collections::HashMap;
use std::fmt;

/// A configuration error: where, which key, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// Key path such as `pools[0].nodes[1].weight`; empty for the document itself.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": key `{}`", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Maps key paths (`pools[0].nodes[1].route`) to the 1-based line where they are written.
pub struct KeyLocator {
    lines: HashMap<String, usize>,
}

impl KeyLocator {
    /// Walks the YAML events of `text` once. A text that does not parse yields an empty map.
    pub fn new(text: &str) -> Self {
        use saphyr_parser::{Event, Parser};
        enum Frame {
            Map { key: Option<String> },
            Seq { index: usize },
        }
        fn path_of(stack: &[(Frame, String)]) -> String {
            stack.last().map(|(_, p)| p.clone()).unwrap_or_default()
        }
        fn child(parent: &str, frame: &Frame) -> Option<String> {
            match frame {
                Frame::Map { key: Some(k) } if parent.is_empty() => Some(k.clone()),
                Frame::Map { key: Some(k) } => Some(format!("{parent}.{k}")),
                Frame::Map { key: None } => None,
                Frame::Seq { index } => Some(format!("{parent}[{index}]")),
            }
        }
        let mut lines = HashMap::new();
        // Each frame carries the path of the container it opens.
        let mut stack: Vec<(Frame, String)> = Vec::new();
        for item in Parser::new_from_str(text) {
            let Ok((event, span)) = item else { break };
            let line = span.start.line();
            match event {
                Event::Scalar(value, ..) => {
                    let parent = path_of(&stack);
                    match stack.last_mut() {
                        Some((Frame::Map { key }, _)) if key.is_none() => {
                            let k = value.to_string();
                            let path = if parent.is_empty() {
                                k.clone()
                            } else {
                                format!("{parent}.{k}")
                            };
                            lines.entry(path).or_insert(line);
                            *key = Some(k);
                        }
                        Some((frame, _)) => {
                            if let Some(p) = child(&parent, frame) {
                                lines.entry(p).or_insert(line);
                            }
                            advance(frame);
                        }
                        None => {}
                    }
                }
                Event::MappingStart(..) | Event::SequenceStart(..) => {
                    let parent = path_of(&stack);
                    let path = match stack.last() {
                        Some((frame, _)) => child(&parent, frame).unwrap_or_default(),
                        None => String::new(),
                    };
                    lines.entry(path.clone()).or_insert(line);
                    let frame = if matches!(event, Event::MappingStart(..)) {
                        Frame::Map { key: None }
                    } else {
                        Frame::Seq { index: 0 }
                    };
                    stack.push((frame, path));
                }
                Event::MappingEnd | Event::SequenceEnd => {
                    stack.pop();
                    if let Some((frame, _)) = stack.last_mut() {
                        advance(frame);
                    }
                }
                _ => {}
            }
        }
        fn advance(frame: &mut Frame) {
            match frame {
                Frame::Map { key } => *key = None,
                Frame::Seq { index } => *index += 1,
            }
        }
        KeyLocator { lines }
    }

    /// Line of `key` when it is written in the document.
    pub fn exact_line(&self, key: &str) -> Option<usize> {
        self.lines.get(key).copied()
    }

    /// Line of `key`, or of its nearest written ancestor (a defaulted key is not written).
    pub fn line(&self, key: &str) -> Option<usize> {
        let mut k = key;
        loop {
            if let Some(l) = self.lines.get(k) {
                return Some(*l);
            }
            let Some(cut) = k.rfind(['.', '[']) else {
                return self.lines.get("").copied(); // the document itself
            };
            k = &k[..cut];
        }
    }
}
