//! `tls-certificate`, `tls-key`, `tls-ca` in `[resource.NAME.net]`: TLS on the resource's
//! replication connections.
//!
//! The files are read and checked with the rest of the configuration (`check-config` reports a
//! missing or unusable file with its line), on the node that runs the resource only: other nodes'
//! paths need not exist here. The three go together; TLS is on when they are set.

use replbd_replication::tls::PeerTls;
use toml::Spanned;

use super::resource::absolute_path;
use super::schema::RawNet;
use super::validate::Checker;

/// The resource's TLS identity: `Some(None)` without TLS, `None` after a reported problem.
pub(super) fn check_tls(
    c: &mut Checker<'_>,
    res: &str,
    net: &RawNet,
    member: bool,
) -> Option<Option<PeerTls>> {
    let fields: [(&str, &Option<Spanned<String>>); 3] = [
        ("tls-certificate", &net.tls_certificate),
        ("tls-key", &net.tls_key),
        ("tls-ca", &net.tls_ca),
    ];
    let set: Vec<_> = fields.iter().filter(|(_, v)| v.is_some()).collect();
    if set.is_empty() {
        return Some(None);
    }
    if set.len() != fields.len() {
        let missing: Vec<&str> = fields
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(n, _)| *n)
            .collect();
        let span = set[0].1.as_ref().map_or(0..0, Spanned::span);
        c.at(
            span,
            format!(
                "resource {res}: TLS needs tls-certificate, tls-key and tls-ca together; missing {}",
                missing.join(", ")
            ),
        );
        return None;
    }
    let mut paths = Vec::new();
    for (name, v) in fields {
        paths.push(absolute_path(c, res, name, v.as_ref()?)?);
    }
    if !member {
        return Some(None);
    }
    match PeerTls::from_pem_files(&paths[0], &paths[1], &paths[2]) {
        Ok(tls) => Some(Some(tls)),
        Err(e) => {
            let span = net.tls_certificate.as_ref().map_or(0..0, Spanned::span);
            c.at(span, format!("resource {res}: {e}"));
            None
        }
    }
}
