//! Per-connection options that constrain each other, and their validation.
//!
//! Some combinations of connection options are unsafe or meaningless, and DRBD rejects them when the
//! configuration is loaded rather than misbehaving later:
//!
//! - `allow-two-primaries` needs protocol C: with A or B a write acknowledged on one primary may not yet
//!   be on the other, and the two primaries' caches (e.g. a cluster file system) would diverge.
//! - `fencing resource-and-stonith` is rejected with protocol A: fencing promises that no acknowledged
//!   write is lost when the peer is shot, but protocol A acknowledges writes still in the send buffer.
//! - `on-congestion pull-ahead|disconnect` needs protocol A: only an asynchronous link can fall behind;
//!   with B or C the writer simply waits for the peer.
//!
//! Both ends of a connection must also agree on the protocol, the after-split-brain policies and
//! `allow-two-primaries`, because both ends evaluate them and must reach mirror-image results.
//! [`validate_connection_options`] checks one side's options; [`check_peer_agreement`] compares the two
//! sides during the connection handshake.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::fencing::FencingPolicy;
use crate::names::named_enum;
use crate::split_brain::SplitBrainPolicies;

named_enum! {
    /// The replication protocol of one connection: when a peer stops being "pending" for a write.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
    pub enum Protocol ("replication protocol") {
        /// Asynchronous: done when the data is handed to the socket. A crash of the primary can lose
        /// writes the application saw complete.
        A => "A",
        /// Memory-synchronous: done when the peer has received the data.
        B => "B",
        /// Synchronous (the default): done when the peer's disk write completed.
        #[default]
        C => "C",
    }
}

impl Protocol {
    /// Whether a write the application saw complete is on the peer's disk (protocol C only).
    pub const fn is_synchronous(self) -> bool {
        matches!(self, Protocol::C)
    }
}

named_enum! {
    /// What a primary does when the link to a peer is congested (`on-congestion`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub enum OnCongestion ("on-congestion policy") {
        /// Wait: application writes slow down to the link's speed (the default).
        #[default]
        Block => "block",
        /// Go Ahead: stop sending data, send only out-of-sync marks, resync when the link drains.
        PullAhead => "pull-ahead",
        /// Drop the connection to the congested peer.
        Disconnect => "disconnect",
    }
}

/// The options of one connection that are validated together.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ConnectionOptions {
    /// `protocol A|B|C`.
    pub protocol: Protocol,
    /// `fencing dont-care|resource-only|resource-and-stonith`.
    pub fencing: FencingPolicy,
    /// `allow-two-primaries yes|no`.
    pub allow_two_primaries: bool,
    /// `on-congestion block|pull-ahead|disconnect`.
    pub on_congestion: OnCongestion,
    /// The after-split-brain and rr-conflict policies (their keys sit beside the others:
    /// `after-sb-0pri`, …).
    #[serde(flatten)]
    pub split_brain: SplitBrainPolicies,
}

/// A connection configuration that replbd refuses; the message says what to change.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    /// allow-two-primaries with protocol A or B.
    #[error(
        "allow-two-primaries requires protocol C, but this connection uses protocol {protocol}: set \
         `protocol C` or turn allow-two-primaries off"
    )]
    TwoPrimariesNeedProtocolC {
        /// The configured protocol.
        protocol: Protocol,
    },
    /// fencing resource-and-stonith with protocol A.
    #[error(
        "fencing resource-and-stonith cannot be used with protocol A (acknowledged writes may be only in \
         the send buffer when the peer is shot): use protocol B or C, or fencing resource-only"
    )]
    StonithWithProtocolA,
    /// on-congestion pull-ahead or disconnect with protocol B or C.
    #[error(
        "on-congestion {on_congestion} requires protocol A, but this connection uses protocol {protocol}: \
         set `on-congestion block` or use protocol A"
    )]
    CongestionPolicyNeedsProtocolA {
        /// The configured congestion policy.
        on_congestion: OnCongestion,
        /// The configured protocol.
        protocol: Protocol,
    },
    /// The two ends of a connection are configured differently where they must agree.
    #[error(
        "{option} differs between the two ends of the connection (here: {local}, peer: {peer}): \
         configure the same {option} on both nodes"
    )]
    PeerDisagrees {
        /// The option's name as in the configuration, e.g. `"after-sb-0pri"`.
        option: &'static str,
        /// This node's value.
        local: String,
        /// The peer's value.
        peer: String,
    },
}

/// Checks the option combinations DRBD rejects (see the module documentation).
pub fn validate_connection_options(options: &ConnectionOptions) -> Result<(), ConfigError> {
    let protocol = options.protocol;
    if options.allow_two_primaries && protocol != Protocol::C {
        return Err(ConfigError::TwoPrimariesNeedProtocolC { protocol });
    }
    if options.fencing == FencingPolicy::ResourceAndStonith && protocol == Protocol::A {
        return Err(ConfigError::StonithWithProtocolA);
    }
    if options.on_congestion != OnCongestion::Block && protocol != Protocol::A {
        return Err(ConfigError::CongestionPolicyNeedsProtocolA {
            on_congestion: options.on_congestion,
            protocol,
        });
    }
    Ok(())
}

/// Checks that the peer's options agree with ours where both ends must use the same value: protocol,
/// `allow-two-primaries`, `after-sb-0pri`, `after-sb-1pri`, `after-sb-2pri` and `always-asbp`.
pub fn check_peer_agreement(local: &ConnectionOptions, peer: &ConnectionOptions) -> Result<(), ConfigError> {
    fn same<T: PartialEq + ToString>(option: &'static str, local: &T, peer: &T) -> Result<(), ConfigError> {
        if local == peer {
            Ok(())
        } else {
            Err(ConfigError::PeerDisagrees {
                option,
                local: local.to_string(),
                peer: peer.to_string(),
            })
        }
    }
    let (l, p) = (&local.split_brain, &peer.split_brain);
    same("protocol", &local.protocol, &peer.protocol)?;
    same(
        "allow-two-primaries",
        &local.allow_two_primaries,
        &peer.allow_two_primaries,
    )?;
    same("after-sb-0pri", &l.after_sb_0pri, &p.after_sb_0pri)?;
    same("after-sb-1pri", &l.after_sb_1pri, &p.after_sb_1pri)?;
    same("after-sb-2pri", &l.after_sb_2pri, &p.after_sb_2pri)?;
    same("always-asbp", &l.always_asbp, &p.always_asbp)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::split_brain::AfterSb0Pri;

    fn options(protocol: Protocol) -> ConnectionOptions {
        ConnectionOptions {
            protocol,
            ..ConnectionOptions::default()
        }
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(validate_connection_options(&ConnectionOptions::default()), Ok(()));
        assert_eq!(ConnectionOptions::default().protocol, Protocol::C);
    }

    #[test]
    fn validation_table() {
        struct Case {
            name: &'static str,
            options: ConnectionOptions,
            ok: bool,
        }
        let cases = [
            Case {
                name: "two primaries with protocol C",
                options: ConnectionOptions {
                    allow_two_primaries: true,
                    ..options(Protocol::C)
                },
                ok: true,
            },
            Case {
                name: "two primaries with protocol B",
                options: ConnectionOptions {
                    allow_two_primaries: true,
                    ..options(Protocol::B)
                },
                ok: false,
            },
            Case {
                name: "two primaries with protocol A",
                options: ConnectionOptions {
                    allow_two_primaries: true,
                    ..options(Protocol::A)
                },
                ok: false,
            },
            Case {
                name: "stonith with protocol A",
                options: ConnectionOptions {
                    fencing: FencingPolicy::ResourceAndStonith,
                    ..options(Protocol::A)
                },
                ok: false,
            },
            Case {
                name: "stonith with protocol B",
                options: ConnectionOptions {
                    fencing: FencingPolicy::ResourceAndStonith,
                    ..options(Protocol::B)
                },
                ok: true,
            },
            Case {
                name: "resource-only with protocol A",
                options: ConnectionOptions {
                    fencing: FencingPolicy::ResourceOnly,
                    ..options(Protocol::A)
                },
                ok: true,
            },
            Case {
                name: "pull-ahead with protocol A",
                options: ConnectionOptions {
                    on_congestion: OnCongestion::PullAhead,
                    ..options(Protocol::A)
                },
                ok: true,
            },
            Case {
                name: "pull-ahead with protocol C",
                options: ConnectionOptions {
                    on_congestion: OnCongestion::PullAhead,
                    ..options(Protocol::C)
                },
                ok: false,
            },
            Case {
                name: "disconnect on congestion with protocol B",
                options: ConnectionOptions {
                    on_congestion: OnCongestion::Disconnect,
                    ..options(Protocol::B)
                },
                ok: false,
            },
        ];
        for case in cases {
            assert_eq!(
                validate_connection_options(&case.options).is_ok(),
                case.ok,
                "{}",
                case.name
            );
        }
    }

    #[test]
    fn errors_say_what_to_change() {
        let err = validate_connection_options(&ConnectionOptions {
            allow_two_primaries: true,
            ..options(Protocol::A)
        })
        .unwrap_err();
        assert!(err.to_string().contains("set `protocol C`"), "{err}");
        let err = validate_connection_options(&ConnectionOptions {
            on_congestion: OnCongestion::PullAhead,
            ..options(Protocol::C)
        })
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "on-congestion pull-ahead requires protocol A, but this connection uses protocol C: set \
             `on-congestion block` or use protocol A"
        );
    }

    #[test]
    fn peers_must_agree_on_protocol_and_policies() {
        let a = ConnectionOptions::default();
        assert_eq!(check_peer_agreement(&a, &a.clone()), Ok(()));
        let b = options(Protocol::B);
        let err = check_peer_agreement(&a, &b).unwrap_err();
        assert_eq!(
            err,
            ConfigError::PeerDisagrees {
                option: "protocol",
                local: "C".into(),
                peer: "B".into()
            }
        );
        let mut c = a.clone();
        c.split_brain.after_sb_0pri = AfterSb0Pri::DiscardZeroChanges;
        let err = check_peer_agreement(&a, &c).unwrap_err();
        assert!(err.to_string().contains("after-sb-0pri differs"), "{err}");
        // Fencing and congestion are per node and may differ.
        let d = ConnectionOptions {
            fencing: FencingPolicy::ResourceOnly,
            ..a.clone()
        };
        assert_eq!(check_peer_agreement(&a, &d), Ok(()));
    }

    #[test]
    fn protocol_and_congestion_names() {
        assert_eq!("c".parse::<Protocol>().unwrap(), Protocol::C);
        assert!(Protocol::C.is_synchronous() && !Protocol::B.is_synchronous());
        assert_eq!(
            "Pull-Ahead".parse::<OnCongestion>().unwrap(),
            OnCongestion::PullAhead
        );
        assert_eq!(OnCongestion::PullAhead.to_string(), "pull-ahead");
    }
}
