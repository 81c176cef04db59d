//! Peer authentication: mutual HMAC-SHA256 challenge–response on the resource's shared secret.
//!
//! Each end sends a random 32-byte nonce in its `Hello`. Each then answers the other's challenge
//! with `HMAC(secret, "replbd-auth-v1" ‖ 0 ‖ resource ‖ 0 ‖ responder ‖ challenger ‖ challenge nonce ‖
//! responder nonce)`. Binding both node ids and both nonces means an answer can neither be replayed on
//! another connection nor reflected back at its sender; the secret itself never crosses the wire.
//! Verification is constant-time (`ring::hmac::verify`).

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

const CONTEXT: &[u8] = b"replbd-auth-v1";

/// A fresh random challenge.
pub fn nonce() -> [u8; 32] {
    let mut n = [0u8; 32];
    // SystemRandom only fails if the OS has no randomness at all; a zero nonce is then still bound
    // to both node ids and the other side's nonce.
    let _ = SystemRandom::new().fill(&mut n);
    n
}

fn message(
    resource: &str,
    responder: u8,
    challenger: u8,
    challenge: &[u8; 32],
    own_nonce: &[u8; 32],
) -> Vec<u8> {
    let mut m = Vec::with_capacity(CONTEXT.len() + resource.len() + 68);
    m.extend_from_slice(CONTEXT);
    m.push(0);
    m.extend_from_slice(resource.as_bytes());
    m.push(0);
    m.push(responder);
    m.push(challenger);
    m.extend_from_slice(challenge);
    m.extend_from_slice(own_nonce);
    m
}

/// The answer `responder` gives to `challenger`'s `challenge`.
pub fn respond(
    secret: &[u8],
    resource: &str,
    responder: u8,
    challenger: u8,
    challenge: &[u8; 32],
    own_nonce: &[u8; 32],
) -> [u8; 32] {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let tag = hmac::sign(
        &key,
        &message(resource, responder, challenger, challenge, own_nonce),
    );
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

/// Checks the peer's answer to our `challenge`.
pub fn verify(
    secret: &[u8],
    resource: &str,
    peer: u8,
    me: u8,
    challenge: &[u8; 32],
    peer_nonce: &[u8; 32],
    answer: &[u8; 32],
) -> bool {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    hmac::verify(&key, &message(resource, peer, me, challenge, peer_nonce), answer).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_verify_only_with_the_same_secret_and_binding() {
        let (a, b) = (nonce(), nonce());
        assert_ne!(a, b);
        let ans = respond(b"s3cret", "r0", 2, 1, &a, &b);
        assert!(verify(b"s3cret", "r0", 2, 1, &a, &b, &ans));
        assert!(!verify(b"other", "r0", 2, 1, &a, &b, &ans), "wrong secret");
        assert!(!verify(b"s3cret", "r1", 2, 1, &a, &b, &ans), "other resource");
        assert!(!verify(b"s3cret", "r0", 1, 2, &a, &b, &ans), "reflected");
        assert!(!verify(b"s3cret", "r0", 2, 1, &b, &a, &ans), "other nonces");
    }
}
