//! Why a controller request failed, and the gRPC status each reason becomes.

use thiserror::Error;

use crate::placement::PlacementError;
use crate::store::StoreError;

/// Why a request failed. The message is what the CLI prints after `ERROR: `.
#[derive(Debug, Error)]
pub enum ApiError {
    /// An object does not exist.
    #[error("{kind} {name} does not exist{hint}")]
    NotFound {
        /// Its kind.
        kind: &'static str,
        /// Its name.
        name: String,
        /// What exists instead, or what to do.
        hint: String,
    },
    /// An object exists already.
    #[error("{kind} {name} already exists{hint}")]
    Exists {
        /// Its kind.
        kind: &'static str,
        /// Its name.
        name: String,
        /// More.
        hint: String,
    },
    /// An argument is wrong.
    #[error("{0}")]
    Invalid(String),
    /// The request conflicts with what exists (in use, deployed, ...).
    #[error("{0}")]
    Conflict(String),
    /// Auto-placement failed.
    #[error(transparent)]
    Placement(#[from] PlacementError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A node could not do its part.
    #[error("node {node}: {message}")]
    Agent {
        /// The node.
        node: String,
        /// What it said.
        message: String,
    },
    /// This controller is a standby.
    #[error("not the active controller (the active one is {leader}): try another controller")]
    Standby {
        /// The active controller's id, if known.
        leader: String,
    },
}

impl ApiError {
    /// The gRPC code for this error.
    pub fn code(&self) -> tonic::Code {
        match self {
            ApiError::NotFound { .. } => tonic::Code::NotFound,
            ApiError::Exists { .. } => tonic::Code::AlreadyExists,
            ApiError::Invalid(_) => tonic::Code::InvalidArgument,
            ApiError::Conflict(_) | ApiError::Placement(_) => tonic::Code::FailedPrecondition,
            ApiError::Store(StoreError::NotLeader) | ApiError::Standby { .. } => tonic::Code::Unavailable,
            ApiError::Store(_) => tonic::Code::Internal,
            ApiError::Agent { .. } => tonic::Code::Aborted,
        }
    }

    /// A "not found" error listing what exists.
    pub fn not_found<'a>(
        kind: &'static str,
        name: &str,
        known: impl Iterator<Item = &'a String>,
    ) -> ApiError {
        let known: Vec<&str> = known.map(String::as_str).collect();
        let hint = if known.is_empty() {
            format!(" (there are no {kind}s)")
        } else if known.len() <= 10 {
            format!(" (known: {})", known.join(", "))
        } else {
            format!(" ({} {kind}s exist)", known.len())
        };
        ApiError::NotFound {
            kind,
            name: name.to_owned(),
            hint,
        }
    }
}
