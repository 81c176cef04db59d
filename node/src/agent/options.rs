//! DRBD options the controller passes with a resource (`DrbdOptions/...` properties, as LINSTOR
//! names them) applied to the resource's spec.
//!
//! Keys arrive without the `DrbdOptions/` prefix (`Resource/quorum`, `Net/protocol`,
//! `PeerDevice/c-max-rate`, …) and values in the configuration file's syntax, parsed by the same
//! functions, so a controller-managed resource accepts what `replbd.toml` accepts. An unknown key
//! or a bad value fails the resource with a message naming both: a typo never silently leaves a
//! safety option (quorum, say) at its default.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;

use replbd_quorum::options::OnCongestion;
use replbd_quorum::quorum::OnNoQuorum;
use replbd_quorum::{Protocol, QuorumPolicy, validate_connection_options};
use replbd_replication::engine::DigestAlg;

use crate::config::ResourceSpec;
use crate::config::values::{parse_duration, parse_rate, parse_size};

/// The keys understood, for the error message.
const KNOWN: &[&str] = &[
    "Resource/quorum",
    "Resource/quorum-minimum-redundancy",
    "Resource/on-no-quorum",
    "Net/protocol",
    "Net/data-integrity-alg",
    "Net/csums-alg",
    "Net/verify-alg",
    "Net/on-congestion",
    "Net/congestion-fill",
    "Net/max-buffers",
    "PeerDevice/c-max-rate",
    "PeerDevice/c-min-rate",
    "PeerDevice/c-fill-target",
    "PeerDevice/c-plan-ahead",
];

fn parsed<T, E: std::fmt::Display>(key: &str, value: &str, r: Result<T, E>) -> Result<T, String> {
    r.map_err(|e| format!("DrbdOptions/{key} = {value:?}: {e}"))
}

/// Applies `options` to `spec` (in key order, so the first bad key reported is always the same).
pub fn apply(spec: &mut ResourceSpec, options: &HashMap<String, String>) -> Result<(), String> {
    let sorted: BTreeMap<&String, &String> = options.iter().collect();
    for (key, value) in sorted {
        let v = value.as_str();
        match key.as_str() {
            "Resource/quorum" => spec.quorum.quorum = parsed(key, v, QuorumPolicy::from_str(v))?,
            "Resource/quorum-minimum-redundancy" => {
                spec.quorum.minimum_redundancy = parsed(key, v, QuorumPolicy::from_str(v))?;
            }
            "Resource/on-no-quorum" => spec.quorum.on_no_quorum = parsed(key, v, OnNoQuorum::from_str(v))?,
            "Net/protocol" => {
                let p = parsed(key, v, Protocol::from_str(v))?;
                spec.peers.iter_mut().for_each(|peer| peer.options.protocol = p);
            }
            "Net/on-congestion" => {
                let c = parsed(key, v, OnCongestion::from_str(v))?;
                spec.peers
                    .iter_mut()
                    .for_each(|peer| peer.options.on_congestion = c);
            }
            "Net/data-integrity-alg" => {
                spec.data_integrity = match v {
                    "crc32c" => true,
                    "none" => false,
                    _ => return Err(format!("DrbdOptions/{key} = {v:?}: use crc32c or none")),
                };
            }
            "Net/csums-alg" => {
                spec.resync.csums_alg = match v {
                    "none" => None,
                    _ => Some(parsed(key, v, DigestAlg::from_str(v))?),
                };
            }
            "Net/verify-alg" => spec.resync.verify_alg = parsed(key, v, DigestAlg::from_str(v))?,
            "Net/congestion-fill" => spec.congestion_fill = parsed(key, v, parse_size(v))?,
            "Net/max-buffers" => spec.max_buffers = parsed(key, v, parse_size(v))?,
            "PeerDevice/c-max-rate" => spec.resync.c_max_rate = parsed(key, v, parse_rate(v))?,
            "PeerDevice/c-min-rate" => spec.resync.c_min_rate = parsed(key, v, parse_rate(v))?,
            "PeerDevice/c-fill-target" => spec.resync.c_fill_target = parsed(key, v, parse_size(v))?,
            "PeerDevice/c-plan-ahead" => spec.resync.c_plan_ahead = parsed(key, v, parse_duration(v))?,
            _ => {
                return Err(format!(
                    "DrbdOptions/{key} is not an option replbd knows; known: {}",
                    KNOWN.join(", ")
                ));
            }
        }
    }
    // The same combination rules as the configuration file.
    for peer in &spec.peers {
        validate_connection_options(&peer.options)
            .map_err(|e| format!("connection to {}: {e}", peer.node.name))?;
    }
    if spec.congestion_fill >= spec.max_buffers {
        return Err(format!(
            "DrbdOptions/Net/congestion-fill ({}) must be below max-buffers ({})",
            spec.congestion_fill, spec.max_buffers
        ));
    }
    Ok(())
}
