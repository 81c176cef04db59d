//! Configuration errors: each problem names the file, the line and what is wrong.
//!
//! Validation does not stop at the first problem: an operator editing a file wants every mistake
//! listed at once, each on its own `FILE:LINE: message` line (the form editors and `grep -n` use).

use std::fmt;
use std::path::PathBuf;

use thiserror::Error;

/// One problem in a configuration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The file, as the user named it.
    pub file: String,
    /// The 1-based line the problem is on, when it is about one place.
    pub line: Option<usize>,
    /// What is wrong, and where possible what to do.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the configuration {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file has problems; every one is listed, one per line.
    #[error("{}", render(problems))]
    Invalid {
        /// Every problem found, in file order.
        problems: Vec<Problem>,
    },
}

fn render(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

impl ConfigError {
    /// The problems found (empty for a read error).
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Read { .. } => &[],
            ConfigError::Invalid { problems } => problems,
        }
    }
}

/// The 1-based line of byte offset `offset` in `text`.
pub fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end].iter().filter(|&&b| b == b'\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_one_based() {
        let text = "a\nb\nc";
        assert_eq!(line_of(text, 0), 1);
        assert_eq!(line_of(text, 2), 2);
        assert_eq!(line_of(text, 4), 3);
        assert_eq!(line_of(text, 99), 3);
    }

    #[test]
    fn problems_render_as_file_line_message() {
        let p = Problem {
            file: "replbd.toml".into(),
            line: Some(14),
            message: "resource r0: node id 3 appears twice".into(),
        };
        assert_eq!(
            p.to_string(),
            "replbd.toml:14: resource r0: node id 3 appears twice"
        );
        let e = ConfigError::Invalid {
            problems: vec![p.clone(), Problem { line: None, ..p }],
        };
        assert_eq!(
            e.to_string(),
            "replbd.toml:14: resource r0: node id 3 appears twice\nreplbd.toml: resource r0: node id 3 appears twice"
        );
    }
}
