//! From the file as written ([`super::schema`]) to the checked model ([`super::model`]).
//!
//! The validator collects every problem with the byte range it is about (turned into a line number
//! at the end) instead of stopping at the first, and checks the whole file — also resources this
//! node does not take part in — so a file copied to every node is checked the same way on each.
//! Per-resource rules live in [`super::resource`]; this module holds the parts that span the file:
//! which node this host is, and what two resources on this node must not share (replication
//! addresses, disks, metadata, NBD endpoints, ublk devices).

use std::collections::BTreeMap;
use std::ops::Range;

use super::error::{Problem, line_of};
use super::model::{FrontEndSpec, MetaDisk, NodeConfig, ResourceSpec};
use super::resource::check_resource;
use super::schema::RawFile;
use super::values::check_name;

/// Collects problems while walking the file.
pub(crate) struct Checker<'a> {
    text: &'a str,
    file: &'a str,
    problems: Vec<(usize, Problem)>,
}

impl<'a> Checker<'a> {
    pub(crate) fn new(text: &'a str, file: &'a str) -> Checker<'a> {
        Checker {
            text,
            file,
            problems: Vec::new(),
        }
    }

    /// A problem about the text at `span`.
    pub(crate) fn at(&mut self, span: Range<usize>, message: impl Into<String>) {
        let line = line_of(self.text, span.start);
        self.problems.push((
            span.start,
            Problem {
                file: self.file.to_owned(),
                line: Some(line),
                message: message.into(),
            },
        ));
    }

    /// A problem about the file as a whole.
    pub(crate) fn general(&mut self, message: impl Into<String>) {
        self.problems.push((
            usize::MAX,
            Problem {
                file: self.file.to_owned(),
                line: None,
                message: message.into(),
            },
        ));
    }

    /// How many problems were found so far.
    pub(crate) fn count(&self) -> usize {
        self.problems.len()
    }

    /// The line of byte offset `offset`, for messages that point at a second place.
    pub(crate) fn line(&self, offset: usize) -> usize {
        line_of(self.text, offset)
    }

    /// The problems in file order (those without a line last).
    pub(crate) fn into_problems(mut self) -> Vec<Problem> {
        self.problems.sort_by_key(|(offset, _)| *offset);
        self.problems.into_iter().map(|(_, p)| p).collect()
    }
}

/// Checks a parsed file. `hostname` names this host when the file has no `this-node`.
pub(crate) fn validate(raw: RawFile, c: &mut Checker<'_>, hostname: Option<&str>) -> Option<NodeConfig> {
    let this_node = match &raw.this_node {
        Some(name) => {
            if let Err(e) = check_name("this-node", name.get_ref()) {
                c.at(name.span(), e);
            }
            Some(name.get_ref().clone())
        }
        None => match_hostname(&raw, hostname),
    };
    let mut resources = Vec::new();
    for (name, res) in &raw.resource {
        if let Some(spec) = check_resource(c, name, res, this_node.as_deref()) {
            resources.push(spec);
        }
    }
    let Some(this_node) = this_node else {
        let host = hostname.unwrap_or("(unknown)");
        if raw.resource.is_empty() {
            c.general(format!(
                "this host's name {host:?} cannot be used as a node name: set this-node = \"NAME\""
            ));
        } else {
            c.general(format!(
                "this host's name {host:?} is not a node of any resource: set this-node = \"NAME\" at the top of the file"
            ));
        }
        return None;
    };
    if let Some(name) = &raw.this_node {
        let member = raw.resource.values().any(|r| {
            r.get_ref()
                .node
                .iter()
                .any(|n| n.get_ref().name.get_ref() == name.get_ref())
        });
        if !raw.resource.is_empty() && !member {
            c.at(
                name.span(),
                format!("this-node {:?} is not a node of any resource", name.get_ref()),
            );
        }
    }
    check_shared_on_this_node(c, &raw, &resources);
    Some(NodeConfig {
        path: std::path::PathBuf::new(),
        this_node,
        resources,
    })
}

/// Without `this-node`, this host is the node whose name is the host name (or its first label),
/// like DRBD's `on HOSTNAME` sections.
fn match_hostname(raw: &RawFile, hostname: Option<&str>) -> Option<String> {
    let host = hostname?.trim();
    let short = host.split('.').next().unwrap_or(host);
    let names: Vec<&String> = raw
        .resource
        .values()
        .flat_map(|r| r.get_ref().node.iter().map(|n| n.get_ref().name.get_ref()))
        .collect();
    if raw.resource.is_empty() && check_name("node", short).is_ok() {
        return Some(short.to_owned());
    }
    [host, short]
        .into_iter()
        .find(|h| names.iter().any(|n| n.as_str() == *h))
        .map(str::to_owned)
}

/// Two resources on this node must not share a replication address, a disk, metadata, an NBD
/// endpoint or a ublk device: each would silently corrupt or block the other.
fn check_shared_on_this_node(c: &mut Checker<'_>, raw: &RawFile, resources: &[ResourceSpec]) {
    // Where to point: the resource's own table.
    let span_of = |name: &str| raw.resource.get(name).map_or(0..0, |r| r.span());
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    for r in resources {
        let mut claims = vec![format!("replication address {}", r.this.address)];
        if let Some(d) = &r.volume.disk {
            claims.push(format!("disk {}", d.display()));
        }
        if let (MetaDisk::External(p), false) = (&r.volume.meta, r.this.diskless) {
            claims.push(format!("disk {}", p.display()));
        }
        match &r.front_end {
            FrontEndSpec::Nbd(addr) => claims.push(format!("NBD endpoint {addr}")),
            FrontEndSpec::Ublk(u) => claims.push(format!("ublk device {}", u.path())),
            FrontEndSpec::None => {}
        }
        for claim in claims {
            match seen.get(&claim) {
                Some(other) if *other != r.name => c.at(
                    span_of(&r.name),
                    format!(
                        "resource {}: {claim} is also used by resource {other} on this node",
                        r.name
                    ),
                ),
                Some(_) => {}
                None => {
                    seen.insert(claim, &r.name);
                }
            }
        }
    }
}
