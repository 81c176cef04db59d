//! The admin protocol: line-delimited JSON over a unix socket.
//!
//! A client connects, writes one [`Request`] as a JSON object on one line, and reads [`Reply`]
//! lines: exactly one for every command except `events`, which is answered by
//! [`Reply::Subscribed`] and then one [`Reply::Event`] per state change until either side closes
//! the connection. A connection may carry several requests one after the other.
//!
//! ```text
//! → {"command":"primary","resource":"r0","force":false}
//! ← {"result":"error","error":"primary r0: the local disk is Inconsistent: only UpToDate data can be promoted (...)"}
//! → {"command":"status","resource":"r0"}
//! ← {"result":"status","resources":[{"name":"r0","up":true,"role":"Secondary",...}]}
//! ```

use serde::{Deserialize, Serialize};

use super::event::NodeEvent;
use super::report::ResourceReport;

/// Longest request line accepted, in bytes.
pub const MAX_REQUEST_LINE: u64 = 64 << 10;

/// A command for the daemon.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    /// The status of one resource, or of all.
    Status {
        /// The resource; all when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resource: Option<String>,
    },
    /// Attach the disk, start the engine and connect to the peers.
    Up {
        /// The resource.
        resource: String,
    },
    /// Stop the front end, demote, disconnect, close the metadata cleanly.
    Down {
        /// The resource.
        resource: String,
    },
    /// Promote this node and start the front end.
    Primary {
        /// The resource.
        resource: String,
        /// Promote data that is not UpToDate, making it the newest.
        #[serde(default)]
        force: bool,
    },
    /// Stop the front end and demote this node.
    Secondary {
        /// The resource.
        resource: String,
    },
    /// Connect to one peer, or to all.
    Connect {
        /// The resource.
        resource: String,
        /// The peer's node name; all peers when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        peer: Option<String>,
        /// Resolve a split brain by discarding this node's changes.
        #[serde(default)]
        discard_my_data: bool,
    },
    /// Disconnect from one peer, or from all, until `connect`.
    Disconnect {
        /// The resource.
        resource: String,
        /// The peer's node name; all peers when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        peer: Option<String>,
    },
    /// Online verify against the peers.
    Verify {
        /// The resource.
        resource: String,
    },
    /// Resume I/O frozen by fencing (after making sure the unfenced peer cannot write).
    ResumeIo {
        /// The resource.
        resource: String,
    },
    /// Mark the local data Outdated (a disconnected Secondary).
    Outdate {
        /// The resource.
        resource: String,
    },
    /// Discard the local data and resync it from a peer.
    Invalidate {
        /// The resource.
        resource: String,
    },
    /// Read the configuration file again and apply the resource's new peers and quorum options
    /// in place (`drbdadm adjust`).
    Adjust {
        /// The resource.
        resource: String,
    },
    /// Resync a peer's data from this node.
    InvalidateRemote {
        /// The resource.
        resource: String,
        /// The peer's node name.
        peer: String,
    },
    /// Start a new data generation on the metadata of a resource that is down.
    NewCurrentUuid {
        /// The resource.
        resource: String,
        /// Clear every bitmap and declare the data UpToDate (skips the initial sync).
        #[serde(default)]
        clear_bitmap: bool,
        /// The new current UUID, 16 hex digits; random when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        uuid: Option<String>,
    },
    /// Tests only: make the local disk fail requests (a daemon built with the `fault-injection`
    /// feature and started with `REPLBD_FAULT_INJECTION=1`; every other daemon refuses it). An
    /// empty plan clears the faults.
    InjectDiskFault {
        /// The resource.
        resource: String,
        /// Byte ranges `(start, end)` whose reads fail with EIO.
        #[serde(default)]
        read_errors: Vec<(u64, u64)>,
        /// Byte ranges `(start, end)` whose writes fail with EIO.
        #[serde(default)]
        write_errors: Vec<(u64, u64)>,
        /// Every write fails (a dead disk).
        #[serde(default)]
        all_writes_fail: bool,
    },
    /// Stream state changes.
    Events,
}

impl Request {
    /// The command's name, as typed on the command line.
    pub fn command(&self) -> &'static str {
        match self {
            Request::Status { .. } => "status",
            Request::Up { .. } => "up",
            Request::Down { .. } => "down",
            Request::Primary { .. } => "primary",
            Request::Secondary { .. } => "secondary",
            Request::Connect { .. } => "connect",
            Request::Disconnect { .. } => "disconnect",
            Request::Verify { .. } => "verify",
            Request::Invalidate { .. } => "invalidate",
            Request::Adjust { .. } => "adjust",
            Request::ResumeIo { .. } => "resume-io",
            Request::Outdate { .. } => "outdate",
            Request::InvalidateRemote { .. } => "invalidate-remote",
            Request::NewCurrentUuid { .. } => "new-current-uuid",
            Request::InjectDiskFault { .. } => "inject-disk-fault",
            Request::Events => "events",
        }
    }
}

/// An answer from the daemon.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum Reply {
    /// The command succeeded.
    Done {
        /// What was done, for people.
        message: String,
    },
    /// The status asked for.
    Status {
        /// One report per resource, in name order.
        resources: Vec<ResourceReport>,
    },
    /// The command failed; the message says why and what to do.
    Error {
        /// `COMMAND RESOURCE: reason`.
        error: String,
    },
    /// The `events` stream started; [`Reply::Event`] lines follow.
    Subscribed,
    /// A state change (or, first, the state that exists).
    Event {
        /// The change.
        event: NodeEvent,
    },
}

impl Reply {
    /// An error reply.
    pub fn error(message: impl Into<String>) -> Reply {
        Reply::Error {
            error: message.into(),
        }
    }

    /// A success reply.
    pub fn done(message: impl Into<String>) -> Reply {
        Reply::Done {
            message: message.into(),
        }
    }
}

/// Encodes a value as one protocol line (JSON and a newline).
pub fn to_line<T: Serialize>(value: &T) -> Result<String, serde_json::Error> {
    let mut line = serde_json::to_string(value)?;
    line.push('\n');
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_one_json_object_per_line() {
        let r = Request::Connect {
            resource: "r0".into(),
            peer: Some("beta".into()),
            discard_my_data: true,
        };
        let line = to_line(&r).unwrap();
        assert_eq!(
            line,
            "{\"command\":\"connect\",\"resource\":\"r0\",\"peer\":\"beta\",\"discard_my_data\":true}\n"
        );
        assert_eq!(serde_json::from_str::<Request>(&line).unwrap(), r);
        let minimal: Request = serde_json::from_str(r#"{"command":"primary","resource":"r0"}"#).unwrap();
        assert_eq!(
            minimal,
            Request::Primary {
                resource: "r0".into(),
                force: false
            }
        );
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"command":"events"}"#).unwrap(),
            Request::Events
        );
        assert_eq!(
            serde_json::from_str::<Request>(
                r#"{"command":"invalidate-remote","resource":"r0","peer":"beta"}"#
            )
            .unwrap()
            .command(),
            "invalidate-remote"
        );
    }

    #[test]
    fn malformed_requests_are_refused() {
        for bad in [
            r#"{"command":"explode"}"#,
            r#"{"command":"up"}"#,
            r#"{"command":"up","resource":"r0","force":true}"#,
            "not json",
        ] {
            assert!(serde_json::from_str::<Request>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn replies_are_tagged() {
        assert_eq!(
            to_line(&Reply::error("up r9: no such resource")).unwrap(),
            "{\"result\":\"error\",\"error\":\"up r9: no such resource\"}\n"
        );
        assert_eq!(
            to_line(&Reply::Subscribed).unwrap(),
            "{\"result\":\"subscribed\"}\n"
        );
    }
}
