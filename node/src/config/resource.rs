//! The rules for one `[resource.NAME]` table: its nodes, volume, connections and option sections.
//!
//! Each rule reports at the line of the value it is about and says what to change. Rules that
//! depend on how options combine (protocol A with `allow-two-primaries`, stonith fencing with
//! protocol A, `on-congestion`) are `replbd_quorum::validate_connection_options`, applied to the
//! effective options of every connection, so the daemon and the engine can never disagree about them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use replbd_bitmap::layout::{DEFAULT_AL_EXTENTS, MAX_AL_EXTENTS, MIN_AL_EXTENTS};
use replbd_quorum::fencing::FencingPolicy;
use replbd_quorum::options::{ConnectionOptions, OnCongestion};
use replbd_quorum::quorum::{OnNoQuorum, QuorumPolicy};
use replbd_quorum::split_brain::{AfterSb0Pri, AfterSb1Pri, AfterSb2Pri, RrConflict, SplitBrainPolicies};
use replbd_quorum::{Protocol, QuorumConfig, validate_connection_options};
use replbd_replication::engine::{DigestAlg, ReadBalancing, Timeouts};
use replbd_ublk::{BlockSize, MAX_DEPTH, MAX_QUEUES};
use toml::Spanned;

use super::model::{
    FrontEndSpec, HandlersSpec, MetaDisk, NodeSpec, PeerSpec, ResourceSpec, ResyncSpec, UblkSpec, VolumeSpec,
};
use super::schema::{RawConnectionOptions, RawFrontEnd, RawNode, RawResource};
use super::validate::Checker;
use super::values::{check_name, parse_address, parse_duration, parse_rate, parse_size};
use crate::nbd::ListenAddr;

/// Most nodes in a resource: this one and 32 peers.
const MAX_NODES: usize = 33;

/// Parses an optional spanned text value with `parse`, reporting failures at its line.
fn opt<T, S: AsRef<str>, E: std::fmt::Display>(
    c: &mut Checker<'_>,
    res: &str,
    value: Option<&Spanned<S>>,
    parse: impl Fn(&str) -> Result<T, E>,
) -> Option<T> {
    let v = value?;
    match parse(v.get_ref().as_ref()) {
        Ok(x) => Some(x),
        Err(e) => {
            c.at(v.span(), format!("resource {res}: {e}"));
            None
        }
    }
}

/// A checked node, with where it was written.
struct Node<'a> {
    spec: NodeSpec,
    raw: &'a Spanned<RawNode>,
}

/// Checks one resource; returns it as this node runs it when `this_node` is one of its nodes and
/// nothing in it is wrong.
pub(crate) fn check_resource(
    c: &mut Checker<'_>,
    name: &str,
    res: &Spanned<RawResource>,
    this_node: Option<&str>,
) -> Option<ResourceSpec> {
    let before = c.count();
    if let Err(e) = check_name("resource", name) {
        c.at(res.span(), e);
    }
    let r = res.get_ref();
    let nodes = check_nodes(c, name, res);
    let volume = check_volume(c, name, res, &nodes, this_node);
    let (defaults, split_brain, secret, data_integrity) = check_net(c, name, r, &nodes, this_node);
    let overrides = check_connections(c, name, r, &nodes, &defaults);
    let (read_balancing, resync) = check_disk(c, name, r);
    let quorum = check_options(c, name, r, &nodes);
    let handlers = check_handlers(c, name, r, &defaults, &overrides, &split_brain);
    let front_end = check_front_end(c, name, res.span(), r.front_end.as_ref());
    let timeouts = check_timeouts(c, name, r);
    let (max_epoch_size, max_buffers, congestion_fill) = check_limits(c, name, r);
    let default_net = Default::default();
    let member = nodes.iter().any(|n| Some(n.spec.name.as_str()) == this_node);
    let tls = super::peer_tls::check_tls(
        c,
        name,
        r.net.as_ref().map_or(&default_net, Spanned::get_ref),
        member,
    );

    let this = nodes.iter().find(|n| Some(n.spec.name.as_str()) == this_node)?;
    if c.count() != before {
        return None;
    }
    let peers = nodes
        .iter()
        .filter(|n| n.spec.id != this.spec.id)
        .map(|n| {
            let key = pair(&this.spec.name, &n.spec.name);
            PeerSpec {
                node: n.spec.clone(),
                options: overrides.get(&key).cloned().unwrap_or_else(|| defaults.clone()),
            }
        })
        .collect();
    Some(ResourceSpec {
        name: name.to_owned(),
        this: this.spec.clone(),
        peers,
        volume: volume?,
        secret: secret?,
        data_integrity,
        split_brain,
        timeouts: timeouts?,
        max_epoch_size,
        max_buffers,
        congestion_fill,
        tls: tls?,
        read_balancing,
        resync,
        quorum,
        handlers,
        front_end: front_end?,
    })
}

fn pair(a: &str, b: &str) -> (String, String) {
    if a <= b {
        (a.to_owned(), b.to_owned())
    } else {
        (b.to_owned(), a.to_owned())
    }
}

fn check_nodes<'a>(c: &mut Checker<'_>, res: &str, raw: &'a Spanned<RawResource>) -> Vec<Node<'a>> {
    let r = raw.get_ref();
    if r.node.is_empty() {
        c.at(
            raw.span(),
            format!("resource {res} has no nodes: add a [[resource.{res}.node]] table for each node"),
        );
    }
    if r.node.len() > MAX_NODES {
        c.at(
            raw.span(),
            format!(
                "resource {res} has {} nodes; at most {MAX_NODES} are supported (this node and 32 peers)",
                r.node.len()
            ),
        );
    }
    let mut nodes: Vec<Node<'a>> = Vec::new();
    let mut by_name: BTreeMap<&str, usize> = BTreeMap::new();
    let mut by_id: BTreeMap<u8, (String, usize)> = BTreeMap::new();
    let mut by_addr: BTreeMap<SocketAddr, (String, usize)> = BTreeMap::new();
    for n in &r.node {
        let node = n.get_ref();
        let name = node.name.get_ref();
        let mut ok = true;
        if let Err(e) = check_name("node", name) {
            c.at(node.name.span(), format!("resource {res}: {e}"));
            ok = false;
        }
        if let Some(first) = by_name.get(name.as_str()) {
            let line = c.line(*first);
            c.at(
                node.name.span(),
                format!("resource {res}: node {name} appears twice (also on line {line})"),
            );
            ok = false;
        } else {
            by_name.insert(name, node.name.span().start);
        }
        let id = match u8::try_from(*node.id.get_ref()) {
            Ok(id) if id <= replbd_bitmap::units::MAX_NODE_ID => {
                if let Some((other, at)) = by_id.get(&id) {
                    let line = c.line(*at);
                    c.at(
                        node.id.span(),
                        format!(
                            "resource {res}: node id {id} appears twice ({name}, and {other} on line {line})"
                        ),
                    );
                    ok = false;
                } else {
                    by_id.insert(id, (name.clone(), node.id.span().start));
                }
                id
            }
            _ => {
                c.at(
                    node.id.span(),
                    format!(
                        "resource {res}: node {name}: id {} is out of range 0-63",
                        node.id.get_ref()
                    ),
                );
                ok = false;
                0
            }
        };
        let address = match parse_address(node.address.get_ref()) {
            Ok(a) => {
                if let Some((other, at)) = by_addr.get(&a) {
                    let line = c.line(*at);
                    c.at(
                        node.address.span(),
                        format!(
                            "resource {res}: address {a} of node {name} is also the address of {other} (line {line})"
                        ),
                    );
                    ok = false;
                } else {
                    by_addr.insert(a, (name.clone(), node.address.span().start));
                }
                Some(a)
            }
            Err(e) => {
                c.at(node.address.span(), format!("resource {res}: node {name}: {e}"));
                None
            }
        };
        let diskless = node.diskless.as_ref().is_some_and(|d| *d.get_ref());
        if diskless {
            for key in [&node.disk, &node.meta_disk].into_iter().flatten() {
                c.at(
                    key.span(),
                    format!("resource {res}: node {name} is diskless but has a disk or meta-disk"),
                );
            }
        }
        if let (Some(address), true) = (address, ok) {
            nodes.push(Node {
                spec: NodeSpec {
                    name: name.clone(),
                    id,
                    address,
                    diskless,
                },
                raw: n,
            });
        }
    }
    nodes.sort_by_key(|n| n.spec.id);
    nodes
}

pub(super) fn absolute_path(
    c: &mut Checker<'_>,
    res: &str,
    what: &str,
    v: &Spanned<String>,
) -> Option<PathBuf> {
    let p = PathBuf::from(v.get_ref());
    if p.is_absolute() {
        Some(p)
    } else {
        c.at(
            v.span(),
            format!(
                "resource {res}: {what} {:?} must be an absolute path",
                v.get_ref()
            ),
        );
        None
    }
}

fn meta_disk(c: &mut Checker<'_>, res: &str, v: &Spanned<String>) -> Option<MetaDisk> {
    if v.get_ref() == "internal" {
        return Some(MetaDisk::Internal);
    }
    absolute_path(c, res, "meta-disk (\"internal\" or a path)", v).map(MetaDisk::External)
}

fn check_volume(
    c: &mut Checker<'_>,
    res: &str,
    raw: &Spanned<RawResource>,
    nodes: &[Node<'_>],
    this_node: Option<&str>,
) -> Option<VolumeSpec> {
    let r = raw.get_ref();
    let Some(v) = r.volume.first() else {
        c.at(
            raw.span(),
            format!("resource {res} has no volume: add a [[resource.{res}.volume]] table"),
        );
        return None;
    };
    for extra in r.volume.iter().skip(1) {
        c.at(
            extra.span(),
            format!("resource {res}: only one volume per resource is supported for now"),
        );
    }
    let vol = v.get_ref();
    if let Some(n) = &vol.number
        && *n.get_ref() != 0
    {
        c.at(
            n.span(),
            format!("resource {res}: volume number must be 0 (one volume per resource for now)"),
        );
    }
    let size = opt(c, res, vol.size.as_ref(), |s| {
        let n = parse_size(s)?;
        if n == 0 || !n.is_multiple_of(4096) {
            return Err(format!("size {s:?} must be a non-zero multiple of 4KiB"));
        }
        Ok(n)
    });
    let default_disk = vol.disk.as_ref().and_then(|d| absolute_path(c, res, "disk", d));
    let default_meta = match &vol.meta_disk {
        Some(m) => meta_disk(c, res, m),
        None => Some(MetaDisk::Internal),
    };
    let create_metadata = vol.create_metadata.as_ref().is_some_and(|b| *b.get_ref());
    let diskful = nodes.iter().filter(|n| !n.spec.diskless).count();
    let min_peers = diskful.saturating_sub(1).max(1);
    let max_peers = match &vol.max_peers {
        Some(m) => match usize::try_from(*m.get_ref()) {
            Ok(n) if (min_peers..=32).contains(&n) => n,
            _ => {
                c.at(
                    m.span(),
                    format!(
                        "resource {res}: max-peers {} must be from {min_peers} (the diskful peers) to 32",
                        m.get_ref()
                    ),
                );
                min_peers
            }
        },
        None => min_peers,
    };
    let al_extents = match &vol.al_extents {
        Some(a) => match u32::try_from(*a.get_ref()) {
            Ok(n) if (MIN_AL_EXTENTS..=MAX_AL_EXTENTS).contains(&n) => n,
            _ => {
                c.at(
                    a.span(),
                    format!(
                        "resource {res}: al-extents {} must be from {MIN_AL_EXTENTS} to {MAX_AL_EXTENTS}",
                        a.get_ref()
                    ),
                );
                DEFAULT_AL_EXTENTS
            }
        },
        None => DEFAULT_AL_EXTENTS,
    };
    // Every diskful node needs a disk; the one of this node is what the spec carries.
    let mut this_volume = None;
    let mut reported = std::collections::BTreeSet::new();
    for n in nodes {
        let raw_node = n.raw.get_ref();
        let disk = match &raw_node.disk {
            Some(d) => absolute_path(c, res, "disk", d),
            None => default_disk.clone(),
        };
        let meta = match &raw_node.meta_disk {
            Some(m) => meta_disk(c, res, m),
            None => default_meta.clone(),
        };
        if n.spec.diskless {
            if Some(n.spec.name.as_str()) == this_node {
                this_volume = Some((None, MetaDisk::Internal));
            }
            continue;
        }
        let Some(disk) = disk else {
            if vol.disk.is_none() && raw_node.disk.is_none() {
                c.at(
                    n.raw.span(),
                    format!(
                        "resource {res}: node {} has no disk: set disk in the volume or on the node, or diskless = true",
                        n.spec.name
                    ),
                );
            }
            continue;
        };
        let Some(meta) = meta else { continue };
        if let MetaDisk::External(m) = &meta {
            let span = raw_node
                .meta_disk
                .as_ref()
                .or(vol.meta_disk.as_ref())
                .map_or(v.span(), Spanned::span);
            // A volume-wide meta-disk shared by every node is reported once.
            if *m == disk && reported.insert(span.start) {
                c.at(
                    span,
                    format!(
                        "resource {res}: node {}: external meta-disk is the data disk itself: use meta-disk = \"internal\"",
                        n.spec.name
                    ),
                );
            }
            if create_metadata && size.is_none() && reported.insert(v.span().start) {
                c.at(
                    v.span(),
                    format!("resource {res}: create-metadata with external metadata needs the volume size"),
                );
            }
        }
        if Some(n.spec.name.as_str()) == this_node {
            this_volume = Some((Some(disk), meta));
        }
    }
    let (disk, meta) = this_volume?;
    Some(VolumeSpec {
        number: 0,
        size,
        disk,
        meta,
        create_metadata,
        max_peers,
        al_extents,
    })
}

/// Parses the connection options set in one table over `base`.
fn connection_options(
    c: &mut Checker<'_>,
    res: &str,
    raw: RawConnectionOptions<'_>,
    base: &ConnectionOptions,
) -> ConnectionOptions {
    let mut o = base.clone();
    if let Some(p) = opt(c, res, raw.protocol, Protocol::from_str) {
        o.protocol = p;
    }
    if let Some(a) = raw.allow_two_primaries {
        o.allow_two_primaries = *a.get_ref();
    }
    if let Some(f) = opt(c, res, raw.fencing, FencingPolicy::from_str) {
        o.fencing = f;
    }
    if let Some(x) = opt(c, res, raw.on_congestion, OnCongestion::from_str) {
        o.on_congestion = x;
    }
    o
}

type NetParts = (ConnectionOptions, SplitBrainPolicies, Option<Vec<u8>>, bool);

fn check_net(
    c: &mut Checker<'_>,
    res: &str,
    r: &RawResource,
    nodes: &[Node<'_>],
    this_node: Option<&str>,
) -> NetParts {
    let default_net = Default::default();
    let net = r.net.as_ref().map_or(&default_net, Spanned::get_ref);
    let net_span = r.net.as_ref().map(Spanned::span);
    let mut sb = SplitBrainPolicies::default();
    if let Some(p) = opt(c, res, net.after_sb_0pri.as_ref(), AfterSb0Pri::from_str) {
        if let (AfterSb0Pri::DiscardNode(victim), Some(v)) = (&p, &net.after_sb_0pri)
            && !nodes.iter().any(|n| &n.spec.name == victim)
        {
            c.at(
                v.span(),
                format!("resource {res}: after-sb-0pri discard-node-{victim}: {victim} is not a node of this resource"),
            );
        }
        sb.after_sb_0pri = p;
    }
    if let Some(p) = opt(c, res, net.after_sb_1pri.as_ref(), AfterSb1Pri::from_str) {
        sb.after_sb_1pri = p;
    }
    if let Some(p) = opt(c, res, net.after_sb_2pri.as_ref(), AfterSb2Pri::from_str) {
        sb.after_sb_2pri = p;
    }
    if let Some(p) = opt(c, res, net.rr_conflict.as_ref(), RrConflict::from_str) {
        sb.rr_conflict = p;
    }
    sb.always_asbp = net.always_asbp.unwrap_or(false);
    let mut defaults = connection_options(c, res, net.connection_options(), &ConnectionOptions::default());
    defaults.split_brain = sb.clone();
    if let Err(e) = validate_connection_options(&defaults)
        && let Some(span) = net_span.clone()
    {
        c.at(span, format!("resource {res}: {e}"));
    }
    let data_integrity = opt(c, res, net.data_integrity_alg.as_ref(), |s| match s {
        "crc32c" => Ok(true),
        "none" => Ok(false),
        other => Err(format!(
            "data-integrity-alg {other:?} is not supported: use \"crc32c\" (or \"none\")"
        )),
    })
    .unwrap_or(false);
    let member = nodes.iter().any(|n| Some(n.spec.name.as_str()) == this_node);
    let secret = match (&net.shared_secret, &net.shared_secret_file) {
        (Some(s), None) if s.get_ref().is_empty() => {
            c.at(s.span(), format!("resource {res}: shared-secret is empty"));
            None
        }
        (Some(s), None) => Some(s.get_ref().as_bytes().to_vec()),
        (None, Some(f)) => {
            let path = absolute_path(c, res, "shared-secret-file", f);
            match path {
                // Other nodes' secret files need not exist on this host.
                Some(_) if !member => Some(Vec::new()),
                Some(p) => match std::fs::read(&p) {
                    Ok(mut bytes) => {
                        while bytes.last().is_some_and(|b| b.is_ascii_whitespace()) {
                            bytes.pop();
                        }
                        if bytes.is_empty() {
                            c.at(
                                f.span(),
                                format!("resource {res}: shared-secret-file {} is empty", p.display()),
                            );
                            None
                        } else {
                            Some(bytes)
                        }
                    }
                    Err(e) => {
                        c.at(
                            f.span(),
                            format!(
                                "resource {res}: cannot read shared-secret-file {}: {e}",
                                p.display()
                            ),
                        );
                        None
                    }
                },
                None => None,
            }
        }
        (Some(s), Some(_)) => {
            c.at(
                s.span(),
                format!("resource {res}: set shared-secret or shared-secret-file, not both"),
            );
            None
        }
        (None, None) => {
            let span = net_span.unwrap_or(0..0);
            c.at(
                span,
                format!(
                    "resource {res} has no shared secret: set shared-secret or shared-secret-file in [resource.{res}.net]"
                ),
            );
            None
        }
    };
    (defaults, sb, secret, data_integrity)
}

fn check_connections(
    c: &mut Checker<'_>,
    res: &str,
    r: &RawResource,
    nodes: &[Node<'_>],
    defaults: &ConnectionOptions,
) -> BTreeMap<(String, String), ConnectionOptions> {
    let mut out: BTreeMap<(String, String), ConnectionOptions> = BTreeMap::new();
    let mut lines: BTreeMap<(String, String), usize> = BTreeMap::new();
    for conn in &r.connection {
        let cn = conn.get_ref();
        let hosts = cn.hosts.get_ref();
        let known = |h: &String| nodes.iter().any(|n| &n.spec.name == h);
        if hosts.len() != 2 || hosts[0] == hosts[1] {
            c.at(
                cn.hosts.span(),
                format!(
                    "resource {res}: a connection joins exactly two different nodes: hosts = [\"a\", \"b\"]"
                ),
            );
            continue;
        }
        if let Some(h) = hosts.iter().find(|h| !known(h)) {
            c.at(
                cn.hosts.span(),
                format!("resource {res}: connection host {h} is not a node of this resource"),
            );
            continue;
        }
        let key = pair(&hosts[0], &hosts[1]);
        if let Some(at) = lines.get(&key) {
            let line = c.line(*at);
            c.at(
                conn.span(),
                format!(
                    "resource {res}: the connection {} - {} appears twice (also on line {line})",
                    key.0, key.1
                ),
            );
            continue;
        }
        lines.insert(key.clone(), conn.span().start);
        let o = connection_options(c, res, cn.connection_options(), defaults);
        if let Err(e) = validate_connection_options(&o) {
            c.at(
                conn.span(),
                format!("resource {res}: connection {} - {}: {e}", key.0, key.1),
            );
        }
        out.insert(key, o);
    }
    out
}

fn check_disk(c: &mut Checker<'_>, res: &str, r: &RawResource) -> (ReadBalancing, ResyncSpec) {
    let default_disk = Default::default();
    let d = r.disk.as_ref().map_or(&default_disk, Spanned::get_ref);
    let rb = opt(c, res, d.read_balancing.as_ref(), ReadBalancing::from_str).unwrap_or_default();
    let mut s = ResyncSpec::default();
    if let Some(x) = opt(c, res, d.c_max_rate.as_ref(), parse_rate) {
        s.c_max_rate = x;
    }
    if let Some(x) = opt(c, res, d.c_min_rate.as_ref(), parse_rate) {
        s.c_min_rate = x;
    }
    if let Some(x) = opt(c, res, d.c_fill_target.as_ref(), parse_size) {
        s.c_fill_target = x;
    }
    if let Some(x) = opt(c, res, d.c_plan_ahead.as_ref(), parse_duration) {
        s.c_plan_ahead = x;
    }
    if let Some(net) = r.net.as_ref().map(Spanned::get_ref) {
        s.csums_alg = opt(c, res, net.csums_alg.as_ref(), |v| match v {
            "none" => Ok(None),
            v => DigestAlg::from_str(v).map(Some),
        })
        .unwrap_or(None);
        if let Some(a) = opt(c, res, net.verify_alg.as_ref(), DigestAlg::from_str) {
            s.verify_alg = a;
        }
    }
    if s.c_min_rate > s.c_max_rate
        && let Some(v) = d.c_min_rate.as_ref().or(d.c_max_rate.as_ref())
    {
        c.at(
            v.span(),
            format!(
                "resource {res}: c-min-rate ({}/s) is above c-max-rate ({}/s)",
                replbd_bitmap::units::human_size(s.c_min_rate),
                replbd_bitmap::units::human_size(s.c_max_rate)
            ),
        );
    }
    (rb, s)
}

fn check_options(c: &mut Checker<'_>, res: &str, r: &RawResource, nodes: &[Node<'_>]) -> QuorumConfig {
    let default_options = Default::default();
    let o = r.options.as_ref().map_or(&default_options, Spanned::get_ref);
    let voters = nodes.iter().filter(|n| !n.spec.diskless).count();
    let mut q = QuorumConfig::default();
    let policy = |c: &mut Checker<'_>, key: &str, v: Option<&Spanned<super::values::Text>>| {
        let p = opt(c, res, v, QuorumPolicy::from_str)?;
        if let (QuorumPolicy::Count(n), Some(v)) = (p, v)
            && usize::from(n) > voters
        {
            c.at(
                v.span(),
                format!(
                    "resource {res}: {key} {n} can never be reached: the resource has {voters} diskful nodes"
                ),
            );
        }
        Some(p)
    };
    if let Some(p) = policy(c, "quorum", o.quorum.as_ref()) {
        q.quorum = p;
    }
    if let Some(p) = policy(
        c,
        "quorum-minimum-redundancy",
        o.quorum_minimum_redundancy.as_ref(),
    ) {
        q.minimum_redundancy = p;
    }
    if let Some(p) = opt(c, res, o.on_no_quorum.as_ref(), OnNoQuorum::from_str) {
        q.on_no_quorum = p;
    }
    q
}

fn check_handlers(
    c: &mut Checker<'_>,
    res: &str,
    r: &RawResource,
    defaults: &ConnectionOptions,
    overrides: &BTreeMap<(String, String), ConnectionOptions>,
    sb: &SplitBrainPolicies,
) -> HandlersSpec {
    let default_handlers = Default::default();
    let h = r.handlers.as_ref().map_or(&default_handlers, Spanned::get_ref);
    let mut command = |v: &Option<Spanned<String>>, key: &str| -> Option<String> {
        let v = v.as_ref()?;
        if v.get_ref().trim().is_empty() {
            c.at(v.span(), format!("resource {res}: handler {key} is empty"));
            return None;
        }
        Some(v.get_ref().clone())
    };
    let spec = HandlersSpec {
        fence_peer: command(&h.fence_peer, "fence-peer"),
        unfence_peer: command(&h.unfence_peer, "unfence-peer"),
        pri_lost_after_sb: command(&h.pri_lost_after_sb, "pri-lost-after-sb"),
        quorum_lost: command(&h.quorum_lost, "quorum-lost"),
        pri_lost: command(&h.pri_lost, "pri-lost"),
    };
    let fencing = std::iter::once(defaults)
        .chain(overrides.values())
        .any(|o| o.fencing != FencingPolicy::DontCare);
    if fencing && spec.fence_peer.is_none() {
        let span = r
            .net
            .as_ref()
            .and_then(|n| n.get_ref().fencing.as_ref().map(Spanned::span))
            .or_else(|| {
                r.connection
                    .iter()
                    .find(|x| x.get_ref().fencing.is_some())
                    .map(Spanned::span)
            })
            .unwrap_or(0..0);
        c.at(
            span,
            format!("resource {res}: fencing needs a fence-peer handler: set handlers.fence-peer"),
        );
    }
    let pri_lost = sb.after_sb_1pri == AfterSb1Pri::CallPriLostAfterSb
        || sb.after_sb_2pri == AfterSb2Pri::CallPriLostAfterSb;
    if sb.rr_conflict == RrConflict::CallPriLost && spec.pri_lost.is_none() {
        let span = r.net.as_ref().map_or(0..0, Spanned::span);
        c.at(
            span,
            format!(
                "resource {res}: rr-conflict call-pri-lost needs a pri-lost handler: set handlers.pri-lost"
            ),
        );
    }
    if pri_lost && spec.pri_lost_after_sb.is_none() {
        let span = r.net.as_ref().map_or(0..0, Spanned::span);
        c.at(
            span,
            format!(
                "resource {res}: call-pri-lost-after-sb needs a pri-lost-after-sb handler: set handlers.pri-lost-after-sb"
            ),
        );
    }
    spec
}

fn check_front_end(
    c: &mut Checker<'_>,
    res: &str,
    res_span: std::ops::Range<usize>,
    fe: Option<&Spanned<RawFrontEnd>>,
) -> Option<FrontEndSpec> {
    let Some(fe) = fe else {
        c.at(res_span, format!(
            "resource {res} has no front end: add [resource.{res}.front-end] with kind = \"ublk\" and device = N \
             (/dev/ublkbN), kind = \"nbd\", or kind = \"none\""
        ));
        return None;
    };
    let f = fe.get_ref();
    let kind = f.kind.get_ref().as_str();
    let nbd_keys = [
        f.socket.as_ref().map(Spanned::span),
        f.port.as_ref().map(Spanned::span),
    ];
    let ublk_keys = [
        f.device.as_ref().map(Spanned::span),
        f.queues.as_ref().map(Spanned::span),
        f.queue_depth.as_ref().map(Spanned::span),
        f.logical_block_size.as_ref().map(Spanned::span),
    ];
    let mut misplaced = |keys: &[Option<std::ops::Range<usize>>], message: &str| {
        let found = keys.iter().flatten().next().cloned();
        let misplaced = found.is_some();
        if let Some(span) = found {
            c.at(span, format!("resource {res}: {message}"));
        }
        misplaced
    };
    match kind {
        "nbd" => {
            if misplaced(
                &ublk_keys,
                "device, queues, queue-depth and logical-block-size only apply to the ublk front end",
            ) {
                return None;
            }
            check_nbd(c, res, fe)
        }
        "ublk" => {
            if misplaced(&nbd_keys, "socket and port only apply to the nbd front end") {
                return None;
            }
            check_ublk(c, res, fe)
        }
        "none" => {
            let keys: Vec<_> = nbd_keys.iter().chain(ublk_keys.iter()).cloned().collect();
            if misplaced(&keys, "the none front end takes no other keys") {
                return None;
            }
            Some(FrontEndSpec::None)
        }
        other => {
            c.at(
                f.kind.span(),
                format!("resource {res}: unknown front end {other:?}: use \"ublk\", \"nbd\" or \"none\""),
            );
            None
        }
    }
}

fn check_nbd(c: &mut Checker<'_>, res: &str, fe: &Spanned<RawFrontEnd>) -> Option<FrontEndSpec> {
    let f = fe.get_ref();
    match (&f.socket, &f.port) {
        (Some(s), None) => {
            absolute_path(c, res, "NBD socket", s).map(|p| FrontEndSpec::Nbd(ListenAddr::Unix(p)))
        }
        (None, Some(p)) => match u16::try_from(*p.get_ref()) {
            Ok(port) if port > 0 => Some(FrontEndSpec::Nbd(ListenAddr::localhost(port))),
            _ => {
                c.at(
                    p.span(),
                    format!("resource {res}: NBD port {} is out of range 1-65535", p.get_ref()),
                );
                None
            }
        },
        _ => {
            c.at(
                fe.span(),
                format!(
                    "resource {res}: the nbd front end needs exactly one of socket = \"/path\" or port = N"
                ),
            );
            None
        }
    }
}

/// Most ublk devices the driver allows (`UBLK_MAX_UBLKS`): device numbers are below it.
const UBLK_MAX_DEVICES: i64 = 1 << 20;

fn check_ublk(c: &mut Checker<'_>, res: &str, fe: &Spanned<RawFrontEnd>) -> Option<FrontEndSpec> {
    let f = fe.get_ref();
    let before = c.count();
    let Some(device) = &f.device else {
        c.at(
            fe.span(),
            format!(
                "resource {res}: the ublk front end needs its device number: device = N for /dev/ublkbN \
                 (fixed, so that a restarted daemon finds the device it left behind)"
            ),
        );
        return None;
    };
    let mut spec = UblkSpec::new(0);
    match u32::try_from(*device.get_ref()) {
        Ok(n) if i64::from(n) < UBLK_MAX_DEVICES => spec.device = n,
        _ => c.at(
            device.span(),
            format!(
                "resource {res}: ublk device {} is out of range 0-{}",
                device.get_ref(),
                UBLK_MAX_DEVICES - 1
            ),
        ),
    }
    if let Some(q) = &f.queues {
        match u16::try_from(*q.get_ref()) {
            Ok(n) if (1..=MAX_QUEUES).contains(&n) => spec.queues = n,
            _ => c.at(
                q.span(),
                format!(
                    "resource {res}: queues {} is out of range 1-{MAX_QUEUES}",
                    q.get_ref()
                ),
            ),
        }
    }
    if let Some(d) = &f.queue_depth {
        match u16::try_from(*d.get_ref()) {
            Ok(n) if (1..=MAX_DEPTH).contains(&n) => spec.queue_depth = n,
            _ => c.at(
                d.span(),
                format!(
                    "resource {res}: queue-depth {} is out of range 1-{MAX_DEPTH}",
                    d.get_ref()
                ),
            ),
        }
    }
    if let Some(b) = &f.logical_block_size {
        match u32::try_from(*b.get_ref()).ok().and_then(BlockSize::from_bytes) {
            Some(bs) => spec.logical_block_size = bs,
            None => c.at(
                b.span(),
                format!(
                    "resource {res}: logical-block-size {} must be 512 or 4096",
                    b.get_ref()
                ),
            ),
        }
    }
    (c.count() == before).then_some(FrontEndSpec::Ublk(spec))
}

fn check_timeouts(c: &mut Checker<'_>, res: &str, r: &RawResource) -> Option<Timeouts> {
    let default_net = Default::default();
    let n = r.net.as_ref().map_or(&default_net, Spanned::get_ref);
    let mut t = Timeouts::default();
    let before = c.count();
    let fields = [
        (&n.timeout, &mut t.ack),
        (&n.connect_timeout, &mut t.connect),
        (&n.ping_int, &mut t.ping_interval),
        (&n.ping_timeout, &mut t.ping_timeout),
        (&n.connect_int, &mut t.reconnect_max),
        (&n.connect_int_min, &mut t.reconnect_min),
        (&n.read_timeout, &mut t.read),
    ];
    for (raw, slot) in fields {
        if let Some(d) = opt(c, res, raw.as_ref(), parse_duration) {
            *slot = d;
        }
    }
    if t.reconnect_min > t.reconnect_max
        && let Some(v) = n.connect_int_min.as_ref().or(n.connect_int.as_ref())
    {
        c.at(
            v.span(),
            format!(
                "resource {res}: connect-int-min ({:?}) is above connect-int ({:?})",
                t.reconnect_min, t.reconnect_max
            ),
        );
    }
    (c.count() == before).then_some(t)
}

fn check_limits(c: &mut Checker<'_>, res: &str, r: &RawResource) -> (u32, u64, u64) {
    let default_net = Default::default();
    let n = r.net.as_ref().map_or(&default_net, Spanned::get_ref);
    let epoch = match &n.max_epoch_size {
        Some(v) => match u32::try_from(*v.get_ref()) {
            Ok(x) if (1..=20000).contains(&x) => x,
            _ => {
                c.at(
                    v.span(),
                    format!(
                        "resource {res}: max-epoch-size {} must be from 1 to 20000",
                        v.get_ref()
                    ),
                );
                2048
            }
        },
        None => 2048,
    };
    let buffers = opt(c, res, n.max_buffers.as_ref(), |s| {
        let b = parse_size(s)?;
        if b < 1 << 20 {
            return Err(format!("max-buffers {s:?} must be at least 1MiB"));
        }
        Ok(b)
    })
    .unwrap_or(128 << 20);
    // Below max-buffers, or writers block before the link ever counts as congested.
    let fill = opt(c, res, n.congestion_fill.as_ref(), |s| {
        let f = parse_size(s)?;
        if f >= buffers {
            return Err(format!(
                "congestion-fill {s:?} must be below max-buffers ({buffers} bytes): writers wait for \
                 buffers before a link that full could count as congested"
            ));
        }
        Ok(f)
    })
    .unwrap_or(0);
    (epoch, buffers, fill)
}
