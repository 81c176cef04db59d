//! The node's configuration file (`/etc/replbd/replbd.toml`): which node this host is and every
//! resource it hosts, like DRBD's `/etc/drbd.d/*.res` without LINSTOR.
//!
//! - [`schema`]: the TOML tables as written (unknown keys are errors);
//! - [`values`]: value syntaxes (durations, sizes, addresses, names);
//! - `validate` and `resource`: the rules, with every problem reported as `FILE:LINE: message`;
//! - [`model`]: the checked result the daemon runs from;
//! - [`error`]: the error types.
//!
//! The format is documented with a full example in `docs/node-config.md`.

pub mod error;
pub mod model;
mod peer_tls;
mod resource;
pub mod schema;
mod validate;
pub mod values;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

pub use error::{ConfigError, Problem};
pub use model::{
    FrontEndSpec, HandlersSpec, MetaDisk, NodeConfig, NodeSpec, PeerSpec, ResourceSpec, ResyncSpec, UblkSpec,
    VolumeSpec,
};

/// The default location of the configuration file.
pub const DEFAULT_PATH: &str = "/etc/replbd/replbd.toml";

/// Reads and checks the configuration at `path`; without `this-node` in the file, this host's name
/// says which node it is.
pub fn load(path: &Path) -> Result<NodeConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text, path, hostname().as_deref())
}

/// Checks the configuration `text`, read from `path` (named in error messages); `hostname` stands
/// for this host's name.
pub fn parse(text: &str, path: &Path, hostname: Option<&str>) -> Result<NodeConfig, ConfigError> {
    let file = path.display().to_string();
    let mut checker = validate::Checker::new(text, &file);
    let raw: schema::RawFile = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            let mut message = e.message().trim_end().replace('\n', " ");
            match e.span() {
                Some(span) => {
                    // Some parser messages ("duplicate key") do not quote what they are about.
                    let snippet = text.get(span.clone()).unwrap_or("").trim();
                    if !message.contains('`')
                        && !snippet.is_empty()
                        && snippet.len() <= 40
                        && !snippet.contains('\n')
                    {
                        message = format!("{message}: `{snippet}`");
                    }
                    checker.at(span, message)
                }
                None => checker.general(message),
            }
            return Err(ConfigError::Invalid {
                problems: checker.into_problems(),
            });
        }
    };
    let config = validate::validate(raw, &mut checker, hostname);
    let problems = checker.into_problems();
    match config {
        Some(mut c) if problems.is_empty() => {
            c.path = PathBuf::from(path);
            Ok(c)
        }
        _ => Err(ConfigError::Invalid { problems }),
    }
}

/// This host's name, as the kernel knows it.
pub fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
}
