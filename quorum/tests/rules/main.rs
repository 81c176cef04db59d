//! Rule tests for `replbd-quorum`, through the public API: table-driven cases named after the rule
//! or scenario they pin down, scenario tests that chain rotations and handshakes, and property tests
//! for the symmetry and monotonicity the rules promise.
//!
//! One test binary (modules below) keeps link time down. The modules are marked `cfg(test)` so that
//! clippy treats their helpers as test code (where `unwrap` is allowed), like the `#[test]` functions.

#[cfg(test)]
mod decide;
#[cfg(test)]
mod promote;
#[cfg(test)]
mod quorum;
#[cfg(test)]
mod rotate;
#[cfg(test)]
mod scenarios;
#[cfg(test)]
mod split_brain;
#[cfg(test)]
mod support;
