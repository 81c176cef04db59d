//! Fuzzes the node configuration parser (`replbd-node check-config`) with arbitrary text: nothing
//! may panic; an accepted configuration must turn into engine configurations that pass the
//! engine's own validation; a rejected one must name the file, and a line inside the text when it
//! gives one.

use std::path::Path;

/// Runs every check of this target on `data`; panics on a failed check.
pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match replbd_node::config::parse(text, Path::new("fuzz.toml"), Some("alpha")) {
        Ok(config) => {
            for r in &config.resources {
                let e = r.engine_config();
                assert!(
                    e.validate().is_ok(),
                    "accepted, but the engine refuses it: {:?}",
                    e.validate()
                );
            }
        }
        Err(replbd_node::config::error::ConfigError::Invalid { problems }) => {
            assert!(!problems.is_empty(), "rejected without a reason");
            for p in &problems {
                assert_eq!(p.file, "fuzz.toml");
                assert!(!p.message.is_empty());
                if let Some(line) = p.line {
                    let lines = text.split('\n').count().max(1);
                    assert!(
                        line >= 1 && line <= lines,
                        "line {line} of {lines}: {}",
                        p.message
                    );
                }
            }
        }
        Err(e) => panic!("parsing text cannot fail to read a file: {e}"),
    }
}
