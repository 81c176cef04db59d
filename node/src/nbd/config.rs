//! Limits of the NBD server: what it advertises to clients and what it protects itself with.
//!
//! Every limit here exists because a client is not trusted: a request's length is bounded before the
//! server allocates a buffer for it, each connection has a budget of bytes in flight so a client that
//! pipelines without reading replies cannot exhaust memory, and a client that connects and says
//! nothing is dropped after the handshake timeout.

use std::time::Duration;

use crate::nbd::error::NbdError;

/// Minimum block size advertised (`NBD_INFO_BLOCK_SIZE`): every offset and length must be a multiple
/// of it, as the volume interface requires.
pub const MIN_BLOCK: u32 = 512;
/// Preferred block size advertised: smaller writes may cost a read-modify-write in the engine.
pub const PREFERRED_BLOCK: u32 = 4096;
/// Default maximum payload of one read or write: 32 MiB, what qemu and the Linux client expect.
pub const DEFAULT_MAX_PAYLOAD: u32 = 32 << 20;
/// What each in-flight request costs in the per-connection budget besides its payload, so that even
/// zero-payload requests (flush, trim) are bounded in number.
pub const REQUEST_OVERHEAD: u32 = 4096;
/// Largest accepted option data during the handshake; export names are at most 4 KiB.
pub const MAX_OPTION_LEN: u32 = 64 << 10;

/// Limits of an NBD server. `NbdConfig::default()` suits qemu and the Linux client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NbdConfig {
    /// Largest read or write accepted (advertised as the maximum block size); a multiple of 512,
    /// at least 4096. A larger write closes the connection: its payload is never read.
    pub max_payload: u32,
    /// Bytes of payload (plus [`REQUEST_OVERHEAD`] per request) one connection may have in flight;
    /// at least `max_payload + REQUEST_OVERHEAD`. When it is used up the server stops reading
    /// that connection's requests until replies have been sent.
    pub max_in_flight_bytes: u32,
    /// Connections served at once; further clients are accepted and closed at once, with a log line.
    pub max_connections: usize,
    /// Time a client has to finish the handshake.
    pub handshake_timeout: Duration,
    /// On shutdown, time in-flight requests have to finish before connections are cut.
    pub drain_timeout: Duration,
}

impl Default for NbdConfig {
    fn default() -> NbdConfig {
        NbdConfig {
            max_payload: DEFAULT_MAX_PAYLOAD,
            max_in_flight_bytes: 4 * DEFAULT_MAX_PAYLOAD,
            max_connections: 64,
            handshake_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(30),
        }
    }
}

impl NbdConfig {
    /// Checks that the limits are consistent.
    pub fn validate(&self) -> Result<(), NbdError> {
        let invalid = |field: &'static str, reason: String| Err(NbdError::InvalidConfig { field, reason });
        if self.max_payload < PREFERRED_BLOCK || !self.max_payload.is_multiple_of(MIN_BLOCK) {
            return invalid(
                "max_payload",
                format!(
                    "{} is not a multiple of {MIN_BLOCK} of at least {PREFERRED_BLOCK}",
                    self.max_payload
                ),
            );
        }
        if self.max_payload > 1 << 30 {
            return invalid(
                "max_payload",
                format!("{} is above the 1 GiB this server allows", self.max_payload),
            );
        }
        let needed = self.max_payload.saturating_add(REQUEST_OVERHEAD);
        if self.max_in_flight_bytes < needed {
            return invalid(
                "max_in_flight_bytes",
                format!(
                    "{} cannot hold one maximum-size request ({needed} bytes)",
                    self.max_in_flight_bytes
                ),
            );
        }
        if self.max_connections == 0 {
            return invalid("max_connections", "0 would refuse every client".to_owned());
        }
        if self.handshake_timeout.is_zero() {
            return invalid("handshake_timeout", "0 would drop every client".to_owned());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_bad_limits_are_named() {
        assert!(NbdConfig::default().validate().is_ok());
        let small = NbdConfig {
            max_payload: 1000,
            ..NbdConfig::default()
        };
        assert!(matches!(
            small.validate(),
            Err(NbdError::InvalidConfig {
                field: "max_payload",
                ..
            })
        ));
        let starved = NbdConfig {
            max_in_flight_bytes: DEFAULT_MAX_PAYLOAD,
            ..NbdConfig::default()
        };
        assert!(matches!(
            starved.validate(),
            Err(NbdError::InvalidConfig {
                field: "max_in_flight_bytes",
                ..
            })
        ));
    }
}
