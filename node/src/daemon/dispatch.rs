//! From an admin [`Request`] to an operation on a resource: find the resource, turn peer names into
//! node ids, check the arguments, and prefix every error with the command and resource
//! (`primary r0: the local disk is Inconsistent: …`) as `drbdadm` does.

use tracing::info;

use super::Daemon;
use super::host::{HostHandle, Op};
use crate::admin::protocol::{Reply, Request};

/// Answers `request`.
pub(super) async fn handle(daemon: &Daemon, request: Request) -> Reply {
    let command = request.command();
    let resource = match &request {
        Request::Status { resource: None } => {
            return Reply::Status {
                resources: daemon.reports(),
            };
        }
        Request::Events => return Reply::error("events: this request is answered by the event stream"),
        Request::Status { resource: Some(r) }
        | Request::Up { resource: r }
        | Request::Down { resource: r }
        | Request::Primary { resource: r, .. }
        | Request::Secondary { resource: r }
        | Request::Connect { resource: r, .. }
        | Request::Disconnect { resource: r, .. }
        | Request::Verify { resource: r }
        | Request::Invalidate { resource: r }
        | Request::Adjust { resource: r }
        | Request::ResumeIo { resource: r }
        | Request::Outdate { resource: r }
        | Request::InvalidateRemote { resource: r, .. }
        | Request::NewCurrentUuid { resource: r, .. }
        | Request::InjectDiskFault { resource: r, .. } => r.clone(),
    };
    let host = match find(daemon, command, &resource) {
        Ok(h) => h,
        Err(e) => return e,
    };
    let op = match request {
        Request::Adjust { .. } => adjustment(daemon, &resource).map(Some),
        request => operation(&host, request),
    };
    let op = match op {
        Ok(Some(op)) => op,
        Ok(None) => {
            return Reply::Status {
                resources: vec![host.report()],
            };
        }
        Err(reason) => return Reply::error(format!("{command} {resource}: {reason}")),
    };
    info!(resource = %resource, command, ?op, "admin command");
    match host.call(op).await {
        Ok(message) => Reply::done(message),
        Err(e) => {
            info!(resource = %resource, command, error = %e, "admin command failed");
            Reply::error(format!("{command} {resource}: {e}"))
        }
    }
}

/// `adjust`: the resource as the configuration file says now.
fn adjustment(daemon: &Daemon, resource: &str) -> Result<Op, String> {
    let path = &daemon.config().path;
    let config = crate::config::load(path).map_err(|e| format!("the configuration is invalid:\n{e}"))?;
    if config.this_node != daemon.config().this_node {
        return Err(format!(
            "{} now says this node is {}, not {}: restart the daemon for that",
            path.display(),
            config.this_node,
            daemon.config().this_node
        ));
    }
    let spec = config.resource(resource).cloned().ok_or_else(|| {
        format!(
            "{} no longer has resource {resource}: take it down with `replbd-node down {resource}` first",
            path.display()
        )
    })?;
    Ok(Op::Adjust(Box::new(spec)))
}

/// The operation a request asks of `host`'s resource (`None` for a status request).
fn operation(host: &HostHandle, request: Request) -> Result<Option<Op>, String> {
    let op = match request {
        Request::Status { .. } | Request::Events => return Ok(None),
        Request::Adjust { .. } => return Err("adjust is answered from the configuration file".into()),
        Request::Up { .. } => Op::Up,
        Request::Down { .. } => Op::Down,
        Request::Primary { force, .. } => Op::Primary { force },
        Request::Secondary { .. } => Op::Secondary,
        Request::Verify { .. } => Op::Verify,
        Request::Invalidate { .. } => Op::Invalidate,
        Request::ResumeIo { .. } => Op::ResumeIo,
        Request::Outdate { .. } => Op::Outdate,
        Request::Connect {
            peer,
            discard_my_data,
            ..
        } => Op::Connect {
            peer: peer.as_deref().map(|p| peer_id(host, p)).transpose()?,
            discard_my_data,
        },
        Request::Disconnect { peer, .. } => Op::Disconnect {
            peer: peer.as_deref().map(|p| peer_id(host, p)).transpose()?,
        },
        Request::InvalidateRemote { peer, .. } => Op::InvalidateRemote {
            peer: peer_id(host, &peer)?,
        },
        Request::NewCurrentUuid {
            clear_bitmap: false,
            uuid: Some(_),
            ..
        } => {
            return Err("--uuid is only for --clear-bitmap (every node must get the same UUID)".into());
        }
        Request::NewCurrentUuid {
            clear_bitmap: false, ..
        } => Op::RotateUuid,
        Request::NewCurrentUuid { uuid, .. } => Op::NewCurrentUuid {
            uuid: parse_uuid(uuid.as_deref())?,
        },
        Request::InjectDiskFault {
            read_errors,
            write_errors,
            all_writes_fail,
            ..
        } => inject_disk_fault(read_errors, write_errors, all_writes_fail)?,
    };
    Ok(Some(op))
}

/// `inject-disk-fault`: only in a test build that was also enabled at start.
#[cfg(feature = "fault-injection")]
fn inject_disk_fault(
    read_errors: Vec<(u64, u64)>,
    write_errors: Vec<(u64, u64)>,
    all_writes_fail: bool,
) -> Result<Op, String> {
    if std::env::var_os("REPLBD_FAULT_INJECTION").is_none_or(|v| v != "1") {
        return Err("fault injection is off (start the daemon with REPLBD_FAULT_INJECTION=1)".into());
    }
    Ok(Op::InjectDiskFault {
        read_errors,
        write_errors,
        all_writes_fail,
    })
}

/// `inject-disk-fault`: refused by a production build.
#[cfg(not(feature = "fault-injection"))]
fn inject_disk_fault(_: Vec<(u64, u64)>, _: Vec<(u64, u64)>, _: bool) -> Result<Op, String> {
    Err("this replbd-node was built without the fault-injection feature (a test-only feature)".into())
}

fn find(daemon: &Daemon, command: &str, resource: &str) -> Result<HostHandle, Reply> {
    daemon.host(resource).ok_or_else(|| {
        let known = daemon.host_names();
        let known = if known.is_empty() {
            "none".to_owned()
        } else {
            known.join(", ")
        };
        Reply::error(format!(
            "{command} {resource}: no such resource on this node ({}; configured: {known})",
            daemon.config().this_node
        ))
    })
}

/// The node id of the peer named `name`.
fn peer_id(host: &HostHandle, name: &str) -> Result<u8, String> {
    let spec = host.spec();
    if name == spec.this.name {
        return Err(format!("{name} is this node, not a peer"));
    }
    match spec.peer_named(name) {
        Some(p) => Ok(p.node.id),
        None => {
            let peers: Vec<&str> = spec.peers.iter().map(|p| p.node.name.as_str()).collect();
            Err(format!(
                "{} has no peer named {name} (peers: {})",
                spec.name,
                if peers.is_empty() {
                    "none".to_owned()
                } else {
                    peers.join(", ")
                }
            ))
        }
    }
}

/// A UUID given as 16 hex digits (an optional `0x`); a random one when absent.
fn parse_uuid(text: Option<&str>) -> Result<u64, String> {
    let Some(t) = text else {
        return Ok(replbd_bitmap::random::random_uuid());
    };
    let digits = t.trim().trim_start_matches("0x").trim_start_matches("0X");
    match u64::from_str_radix(digits, 16) {
        // Bit 0 of a current UUID is the "Primary" flag, never part of the generation.
        Ok(u) if u <= replbd_bitmap::superblock::UUID_JUST_CREATED + 1 => Err(format!(
            "invalid UUID {t:?}: values up to {} are reserved markers",
            replbd_bitmap::superblock::UUID_JUST_CREATED + 1
        )),
        Ok(u) if u & 1 == 1 => Err(format!(
            "invalid UUID {t:?}: bit 0 is reserved (it marks a Primary); use an even number such as {:X}",
            u & !1
        )),
        Ok(u) if !digits.is_empty() && digits.len() <= 16 => Ok(u),
        _ => Err(format!(
            "invalid UUID {t:?}: give up to 16 hex digits, e.g. 5EED5EED5EED5EEC"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_hex() {
        assert_eq!(parse_uuid(Some("5EED5EED5EED5EEC")), Ok(0x5EED_5EED_5EED_5EEC));
        assert_eq!(parse_uuid(Some("0x10")), Ok(16));
        assert!(
            parse_uuid(Some("5EED"))
                .unwrap_err()
                .contains("bit 0 is reserved")
        );
        assert!(parse_uuid(Some("xyz")).is_err());
        assert!(parse_uuid(Some("0")).is_err());
        assert!(parse_uuid(Some("4")).is_err());
        assert!(parse_uuid(Some("11112222333344445")).is_err());
        assert!(parse_uuid(None).is_ok());
    }
}
