//! Opening a connection to a peer: version negotiation, then mutual authentication.
//!
//! ```text
//!   connector                          acceptor
//!   Hello(versions, ids, nonce) ──────▶  (learns which peer this is)
//!                                ◀──────  Hello(versions, ids, nonce)
//!   AuthResponse(mac) ──────────────────▶
//!                                ◀──────  AuthResponse(mac)
//!   (both verify; either may send Error(reason) and close instead)
//! ```
//!
//! Anything unexpected — a non-replbd peer, garbage, a wrong resource or node id, no common version,
//! a wrong secret — ends the handshake with a [`HandshakeError`] naming it; the side that detects it
//! first tells the other with an `Error` frame so both logs say why.

use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::auth;
use crate::wire::messages::{self, AuthResponse, ErrorCode, ErrorMessage, Hello};
use crate::wire::{FrameReader, FrameWriter, Kind, MAX_VERSION, MIN_VERSION, WireError};

/// Who we are and whom we expect.
#[derive(Clone, Debug)]
pub struct Identity {
    /// The resource.
    pub resource: String,
    /// Our node id.
    pub node: u8,
    /// The shared secret.
    pub secret: Vec<u8>,
    /// Versions we speak.
    pub versions: (u16, u16),
}

impl Identity {
    /// An identity speaking every version this build knows.
    pub fn new(resource: &str, node: u8, secret: &[u8]) -> Identity {
        Identity {
            resource: resource.to_string(),
            node,
            secret: secret.to_vec(),
            versions: (MIN_VERSION, MAX_VERSION),
        }
    }
}

/// Why a handshake failed.
#[derive(Debug, Error)]
pub enum HandshakeError {
    /// The transport failed or the peer sent an invalid frame.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The peer sent a frame other than the one expected.
    #[error("expected {expected} during the handshake, got {got}")]
    Unexpected {
        /// Expected kind.
        expected: Kind,
        /// Received kind.
        got: Kind,
    },
    /// The peer refused the connection and said why.
    #[error("the peer refused the connection: {message} ({code:?})")]
    Refused {
        /// Its reason.
        code: ErrorCode,
        /// Its message.
        message: String,
    },
    /// We refused the peer (after telling it why).
    #[error("refused the peer: {0}")]
    Rejected(String),
    /// The peer's answer to our challenge is wrong.
    #[error(
        "authentication failed: node {peer} does not know the shared secret of resource {resource} (check `shared-secret` on both nodes)"
    )]
    AuthFailed {
        /// The peer's node id.
        peer: u8,
        /// The resource.
        resource: String,
    },
}

/// What both ends agreed on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Agreed {
    /// The peer's node id.
    pub peer: u8,
    /// The protocol version to speak.
    pub version: u16,
}

async fn read_expect<R: AsyncRead + Unpin>(
    r: &mut FrameReader<R>,
    expected: Kind,
) -> Result<bytes::Bytes, HandshakeError> {
    let (h, payload) = r.read_frame().await?;
    if h.kind == Kind::Error {
        let e: ErrorMessage = messages::decode(Kind::Error, &payload)?;
        return Err(HandshakeError::Refused {
            code: e.code,
            message: e.message,
        });
    }
    if h.kind != expected {
        return Err(HandshakeError::Unexpected {
            expected,
            got: h.kind,
        });
    }
    Ok(payload)
}

async fn refuse<W: AsyncWrite + Unpin>(
    w: &mut FrameWriter<W>,
    code: ErrorCode,
    message: String,
) -> HandshakeError {
    let _ = w
        .send(messages::encode(
            Kind::Error,
            &ErrorMessage {
                code,
                message: message.clone(),
            },
        ))
        .await;
    HandshakeError::Rejected(message)
}

fn hello(me: &Identity, peer: u8, nonce: [u8; 32]) -> Hello {
    Hello {
        min_version: me.versions.0,
        max_version: me.versions.1,
        resource: me.resource.clone(),
        node: me.node,
        peer,
        nonce,
    }
}

/// Checks the peer's hello against what we expect; returns the version to speak.
fn check_hello(me: &Identity, theirs: &Hello, expected_peer: Option<u8>) -> Result<u16, (ErrorCode, String)> {
    if theirs.resource != me.resource {
        return Err((
            ErrorCode::UnknownResource,
            format!(
                "node {} has no resource {:?} on this port (it serves {:?})",
                me.node, theirs.resource, me.resource
            ),
        ));
    }
    if theirs.peer != me.node || expected_peer.is_some_and(|p| p != theirs.node) {
        return Err((
            ErrorCode::WrongNode,
            format!(
                "node ids do not match the configuration: the peer says it is node {} calling node {}, this is node {}",
                theirs.node, theirs.peer, me.node
            ),
        ));
    }
    let version = me.versions.1.min(theirs.max_version);
    if version < me.versions.0 || version < theirs.min_version {
        return Err((
            ErrorCode::VersionMismatch,
            format!(
                "no common protocol version: node {} speaks {}..={}, node {} speaks {}..={}; upgrade the older node",
                me.node, me.versions.0, me.versions.1, theirs.node, theirs.min_version, theirs.max_version
            ),
        ));
    }
    Ok(version)
}

/// Runs the handshake as the connecting side, calling node `peer`.
pub async fn connect<R, W>(
    me: &Identity,
    peer: u8,
    r: &mut FrameReader<R>,
    w: &mut FrameWriter<W>,
) -> Result<Agreed, HandshakeError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let ours = auth::nonce();
    w.send(messages::encode(Kind::Hello, &hello(me, peer, ours)))
        .await
        .map_err(WireError::from)?;
    let theirs: Hello = messages::decode(Kind::Hello, &read_expect(r, Kind::Hello).await?)?;
    let version = match check_hello(me, &theirs, Some(peer)) {
        Ok(v) => v,
        Err((code, msg)) => return Err(refuse(w, code, msg).await),
    };
    authenticate(me, &theirs, ours, r, w).await?;
    Ok(Agreed {
        peer: theirs.node,
        version,
    })
}

/// Reads the first `Hello` of an accepted connection, to learn which peer is calling.
pub async fn accept_hello<R: AsyncRead + Unpin>(r: &mut FrameReader<R>) -> Result<Hello, HandshakeError> {
    Ok(messages::decode(
        Kind::Hello,
        &read_expect(r, Kind::Hello).await?,
    )?)
}

/// Finishes the handshake as the accepting side, once the caller found `theirs.node` acceptable.
pub async fn accept<R, W>(
    me: &Identity,
    theirs: &Hello,
    r: &mut FrameReader<R>,
    w: &mut FrameWriter<W>,
) -> Result<Agreed, HandshakeError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let version = match check_hello(me, theirs, None) {
        Ok(v) => v,
        Err((code, msg)) => return Err(refuse(w, code, msg).await),
    };
    let ours = auth::nonce();
    w.send(messages::encode(Kind::Hello, &hello(me, theirs.node, ours)))
        .await
        .map_err(WireError::from)?;
    authenticate(me, theirs, ours, r, w).await?;
    Ok(Agreed {
        peer: theirs.node,
        version,
    })
}

/// Refuses an accepted connection whose hello named a peer we do not have.
pub async fn refuse_unknown<W: AsyncWrite + Unpin>(
    w: &mut FrameWriter<W>,
    me: &Identity,
    theirs: &Hello,
) -> HandshakeError {
    let msg = format!(
        "node {} is not a configured peer of resource {:?} on node {}",
        theirs.node, me.resource, me.node
    );
    refuse(w, ErrorCode::WrongNode, msg).await
}

async fn authenticate<R, W>(
    me: &Identity,
    theirs: &Hello,
    ours: [u8; 32],
    r: &mut FrameReader<R>,
    w: &mut FrameWriter<W>,
) -> Result<(), HandshakeError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mac = auth::respond(
        &me.secret,
        &me.resource,
        me.node,
        theirs.node,
        &theirs.nonce,
        &ours,
    );
    w.send(messages::encode(Kind::AuthResponse, &AuthResponse { mac }))
        .await
        .map_err(WireError::from)?;
    let answer: AuthResponse =
        messages::decode(Kind::AuthResponse, &read_expect(r, Kind::AuthResponse).await?)?;
    if !auth::verify(
        &me.secret,
        &me.resource,
        theirs.node,
        me.node,
        &ours,
        &theirs.nonce,
        &answer.mac,
    ) {
        let err = HandshakeError::AuthFailed {
            peer: theirs.node,
            resource: me.resource.clone(),
        };
        let _ = w
            .send(messages::encode(
                Kind::Error,
                &ErrorMessage {
                    code: ErrorCode::AuthFailed,
                    message: format!(
                        "node {} could not authenticate node {}: the shared secrets differ",
                        me.node, theirs.node
                    ),
                },
            ))
            .await;
        return Err(err);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn pair(
        a: Identity,
        b: Identity,
    ) -> (Result<Agreed, HandshakeError>, Result<Agreed, HandshakeError>) {
        let (s1, s2) = tokio::io::duplex(1 << 16);
        let (r1, w1) = tokio::io::split(s1);
        let (r2, w2) = tokio::io::split(s2);
        let b_node = b.node;
        let client = tokio::spawn(async move {
            let (mut r, mut w) = (FrameReader::new(r1, false), FrameWriter::new(w1, false));
            connect(&a, b_node, &mut r, &mut w).await
        });
        let server = tokio::spawn(async move {
            let (mut r, mut w) = (FrameReader::new(r2, false), FrameWriter::new(w2, false));
            let h = accept_hello(&mut r).await?;
            accept(&b, &h, &mut r, &mut w).await
        });
        (client.await.unwrap(), server.await.unwrap())
    }

    #[tokio::test]
    async fn matching_secrets_agree_on_the_newest_common_version() {
        let (c, s) = pair(Identity::new("r0", 1, b"k"), Identity::new("r0", 2, b"k")).await;
        assert_eq!(
            c.unwrap(),
            Agreed {
                peer: 2,
                version: MAX_VERSION
            }
        );
        assert_eq!(
            s.unwrap(),
            Agreed {
                peer: 1,
                version: MAX_VERSION
            }
        );
    }

    #[tokio::test]
    async fn a_wrong_secret_fails_on_both_sides() {
        let (c, s) = pair(Identity::new("r0", 1, b"k"), Identity::new("r0", 2, b"other")).await;
        let (c, s) = (c.unwrap_err().to_string(), s.unwrap_err().to_string());
        assert!(
            c.contains("authentication failed") || c.contains("shared secrets differ"),
            "{c}"
        );
        assert!(
            s.contains("authentication failed") || s.contains("shared secrets differ"),
            "{s}"
        );
    }

    #[tokio::test]
    async fn version_resource_and_node_mismatches_are_explained() {
        let mut old = Identity::new("r0", 2, b"k");
        old.versions = (7, 9);
        let (c, _) = pair(Identity::new("r0", 1, b"k"), old).await;
        assert!(c.unwrap_err().to_string().contains("no common protocol version"));
        let (c, _) = pair(Identity::new("r0", 1, b"k"), Identity::new("r1", 2, b"k")).await;
        assert!(c.unwrap_err().to_string().contains("has no resource"));
    }
}
