//! Parsers for the value syntaxes of the configuration file: durations (`6s`, `500ms`), sizes and
//! rates (`100MiB`), replication addresses (`host:port`) and names.
//!
//! They are plain functions returning a message, so the validator can attach the file and line of
//! the value that failed, and unit tests can check each syntax on its own.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use serde::Deserialize;

/// Parses a duration: a whole number followed by `ms`, `s`, `m` or `h` (`6s`, `500ms`, `2m`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let bad = || format!("invalid duration {text:?}: use a whole number and a unit, e.g. 500ms, 6s, 2m");
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let d = match unit.trim() {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" | "min" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => return Err(bad()),
    };
    if d.is_zero() {
        return Err(format!("duration {text:?} must be greater than zero"));
    }
    Ok(d)
}

/// Parses a size (`4096`, `64MiB`, `1TiB`; binary units).
pub fn parse_size(text: &str) -> Result<u64, String> {
    replbd_bitmap::units::parse_size(text).map_err(|e| e.to_string())
}

/// A rate (`100MiB` means 100 MiB per second; a trailing `/s` is accepted).
pub fn parse_rate(text: &str) -> Result<u64, String> {
    parse_size(text.trim().trim_end_matches("/s"))
}

/// Parses a replication address `host:port`, resolving a host name (the first address wins,
/// IPv4 preferred, so every node resolves the same name to the same address on a dual-stack host).
pub fn parse_address(text: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = text.parse::<SocketAddr>() {
        return check_port(text, a);
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(format!(
            "invalid address {text:?}: use HOST:PORT, e.g. 10.0.0.1:7000"
        ));
    };
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(format!(
            "invalid address {text:?}: use HOST:PORT, e.g. 10.0.0.1:7000"
        ));
    }
    let addrs: Vec<SocketAddr> = text
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve address {text:?}: {e}"))?
        .collect();
    let first = addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| format!("address {text:?} resolves to nothing"))?;
    check_port(text, first)
}

fn check_port(text: &str, a: SocketAddr) -> Result<SocketAddr, String> {
    if a.port() == 0 {
        return Err(format!("address {text:?} has port 0: give the port to listen on"));
    }
    Ok(a)
}

/// Checks a resource or node name: 1 to 64 characters among letters, digits, `-`, `_` and `.`,
/// not starting with `-` or `.`, and not a word the command line reserves.
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if name.is_empty() || name.len() > 64 || !ok_chars || name.starts_with(['-', '.']) {
        return Err(format!(
            "{what} name {name:?} is invalid: use 1 to 64 letters, digits, '-', '_' or '.', not starting with '-' or '.'"
        ));
    }
    if name == "all" {
        return Err(format!("{what} name \"all\" is reserved"));
    }
    Ok(())
}

/// A value that may be written as a string or an integer (`quorum = 2` or `quorum = "majority"`,
/// `size = 1073741824` or `size = "1GiB"`); kept as text for the parser of the option.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Text(pub String);

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Text, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Text;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string or an integer")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text(v.to_owned()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("6s"), Ok(Duration::from_secs(6)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        for bad in ["", "6", "s", "1.5s", "-1s", "0s", "6 parsecs"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes_and_rates() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_rate("100MiB/s"), Ok(100 << 20));
        assert_eq!(parse_rate("250KiB"), Ok(250 << 10));
        assert!(parse_rate("fast").is_err());
    }

    #[test]
    fn addresses() {
        assert_eq!(
            parse_address("127.0.0.1:7000"),
            Ok("127.0.0.1:7000".parse().unwrap())
        );
        assert!(parse_address("[::1]:7000").is_ok());
        assert!(parse_address("localhost:7000").is_ok());
        for bad in [
            "127.0.0.1",
            "127.0.0.1:0",
            ":7000",
            "127.0.0.1:99999",
            "no-such-host.invalid:7000",
        ] {
            assert!(parse_address(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names() {
        assert!(check_name("resource", "r0").is_ok());
        assert!(check_name("node", "alpha.example-1_b").is_ok());
        for bad in ["", "-x", ".x", "a b", "all", "r/0", &"x".repeat(65)] {
            assert!(check_name("resource", bad).is_err(), "{bad}");
        }
    }
}
