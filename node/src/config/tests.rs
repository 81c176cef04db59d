//! One test per configuration rule: each error names the file, the line of the offending value and
//! the reason.

use std::path::Path;

use replbd_quorum::Protocol;
use replbd_quorum::fencing::FencingPolicy;
use replbd_quorum::quorum::{OnNoQuorum, QuorumPolicy};
use replbd_quorum::split_brain::AfterSb0Pri;

use super::*;

const BASE: &str = r#"this-node = "alpha"

[resource.r0]

[[resource.r0.node]]
name = "alpha"
id = 0
address = "127.0.0.1:7000"

[[resource.r0.node]]
name = "beta"
id = 1
address = "127.0.0.1:7001"

[[resource.r0.node]]
name = "gamma"
id = 2
address = "127.0.0.1:7002"

[[resource.r0.volume]]
size = "64MiB"
disk = "/var/lib/replbd/r0.img"
meta-disk = "internal"

[resource.r0.net]
shared-secret = "s3cret"

[resource.r0.front-end]
kind = "nbd"
socket = "/run/replbd/r0.nbd"
"#;

fn parse_text(text: &str) -> Result<NodeConfig, ConfigError> {
    parse(text, Path::new("replbd.toml"), Some("testhost"))
}

fn ok(text: &str) -> NodeConfig {
    match parse_text(text) {
        Ok(c) => c,
        Err(e) => panic!("expected a valid configuration, got:\n{e}\n--- in:\n{text}"),
    }
}

/// The single problem `text` has.
fn problem(text: &str) -> Problem {
    let problems = problems(text);
    assert_eq!(problems.len(), 1, "expected one problem, got: {problems:#?}");
    problems.into_iter().next().unwrap()
}

fn problems(text: &str) -> Vec<Problem> {
    match parse_text(text) {
        Ok(_) => panic!("expected an error in:\n{text}"),
        Err(e) => e.problems().to_vec(),
    }
}

/// The 1-based line of the first occurrence of `needle` at or after line `from`.
fn line_of(text: &str, needle: &str, from: usize) -> usize {
    text.lines()
        .enumerate()
        .skip(from.saturating_sub(1))
        .find(|(_, l)| l.contains(needle))
        .map(|(i, _)| i + 1)
        .unwrap_or_else(|| panic!("{needle:?} not in the text"))
}

/// Asserts `text` has one problem, on the line holding `needle`, whose message contains `reason`.
fn rejects(text: &str, needle: &str, reason: &str) {
    let p = problem(text);
    assert_eq!(p.file, "replbd.toml");
    assert_eq!(p.line, Some(line_of(text, needle, 1)), "wrong line for {p}");
    assert!(p.message.contains(reason), "{p} does not say {reason:?}");
}

/// BASE with `extra` appended (tables at the end).
fn with(extra: &str) -> String {
    format!("{BASE}{extra}")
}

#[test]
fn the_base_configuration_is_valid_and_seen_from_this_node() {
    let c = ok(BASE);
    assert_eq!(c.this_node, "alpha");
    assert_eq!(c.path, Path::new("replbd.toml"));
    let r = c.resource("r0").unwrap();
    assert_eq!(r.this.id, 0);
    assert_eq!(
        r.peers.iter().map(|p| p.node.name.as_str()).collect::<Vec<_>>(),
        ["beta", "gamma"]
    );
    assert!(r.peers.iter().all(|p| p.options.protocol == Protocol::C));
    assert_eq!(
        r.volume.disk.as_deref(),
        Some(Path::new("/var/lib/replbd/r0.img"))
    );
    assert_eq!(r.volume.meta, MetaDisk::Internal);
    assert_eq!(r.volume.size, Some(64 << 20));
    assert_eq!(r.volume.max_peers, 2);
    assert!(!r.volume.create_metadata);
    assert_eq!(r.secret, b"s3cret");
    assert_eq!(
        r.front_end,
        FrontEndSpec::Nbd(crate::nbd::ListenAddr::Unix("/run/replbd/r0.nbd".into()))
    );
    assert_eq!(r.quorum.quorum, QuorumPolicy::Off);
    assert_eq!(r.node_name(2), "gamma");
    assert_eq!(r.node_name(9), "node9");
}

#[test]
fn the_engine_configuration_carries_ids_addresses_and_per_connection_protocols() {
    let text = with(
        r#"
[[resource.r0.connection]]
hosts = ["gamma", "alpha"]
protocol = "A"
"#,
    )
    .replace(
        "shared-secret = \"s3cret\"",
        "shared-secret = \"s3cret\"\ntimeout = \"3s\"\nping-int = \"500ms\"\ndata-integrity-alg = \"crc32c\"",
    );
    let r = ok(&text).resources.remove(0);
    let e = r.engine_config();
    assert_eq!((e.name.as_str(), e.node_id), ("r0", 0));
    assert_eq!(e.listen, "127.0.0.1:7000".parse().unwrap());
    assert_eq!(e.secret, b"s3cret");
    assert!(e.data_integrity);
    assert_eq!(e.timeouts.ack, std::time::Duration::from_secs(3));
    assert_eq!(e.timeouts.ping_interval, std::time::Duration::from_millis(500));
    let protocols: Vec<(u8, Protocol)> = e.peers.iter().map(|p| (p.node_id, p.protocol)).collect();
    assert_eq!(protocols, [(1, Protocol::C), (2, Protocol::A)]);
    assert!(e.validate().is_ok());
}

#[test]
fn the_engine_configuration_carries_on_congestion_per_connection_and_congestion_fill() {
    let text = with(
        r#"
[[resource.r0.connection]]
hosts = ["alpha", "gamma"]
protocol = "A"
on-congestion = "pull-ahead"
"#,
    )
    .replace(
        "shared-secret = \"s3cret\"",
        "shared-secret = \"s3cret\"\ncongestion-fill = \"2MiB\"",
    );
    let e = ok(&text).resources.remove(0).engine_config();
    assert_eq!(e.congestion_fill, 2 << 20);
    assert_eq!(
        e.congestion_policy(1),
        replbd_quorum::options::OnCongestion::Block
    );
    assert_eq!(
        e.congestion_policy(2),
        replbd_quorum::options::OnCongestion::PullAhead
    );
    assert!(e.validate().is_ok());
}

#[test]
fn without_this_node_the_host_name_picks_the_node() {
    let text = BASE.replace("this-node = \"alpha\"\n", "");
    let c = parse(&text, Path::new("replbd.toml"), Some("beta.example.com")).unwrap();
    assert_eq!(c.this_node, "beta");
    assert_eq!(c.resources[0].this.id, 1);
    let e = parse(&text, Path::new("replbd.toml"), Some("delta")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "replbd.toml: this host's name \"delta\" is not a node of any resource: set this-node = \"NAME\" at the top of the file"
    );
}

#[test]
fn this_node_must_be_a_node_of_some_resource() {
    rejects(
        &BASE.replace("this-node = \"alpha\"", "this-node = \"delta\""),
        "this-node",
        "this-node \"delta\" is not a node of any resource",
    );
}

#[test]
fn resources_without_this_node_are_checked_but_not_hosted() {
    let text = with(
        r#"
[resource.r1]
[[resource.r1.node]]
name = "beta"
id = 1
address = "127.0.0.1:7101"
[[resource.r1.node]]
name = "gamma"
id = 2
address = "127.0.0.1:7102"
[[resource.r1.volume]]
disk = "/dev/vdb"
[resource.r1.net]
shared-secret = "x"
[resource.r1.front-end]
kind = "none"
"#,
    );
    let c = ok(&text);
    assert_eq!(c.resources.len(), 1);
    let text = text.replace(
        "id = 2\naddress = \"127.0.0.1:7102\"",
        "id = 1\naddress = \"127.0.0.1:7102\"",
    );
    let p = problem(&text);
    assert_eq!(p.line, Some(line_of(&text, "127.0.0.1:7102", 1) - 1));
    assert!(p.message.contains("resource r1: node id 1 appears twice"), "{p}");
}

#[test]
fn syntax_errors_name_the_line() {
    let text = BASE.replace("id = 1", "id = = 1");
    let p = problem(&text);
    assert_eq!(p.line, Some(line_of(&text, "id = = 1", 1)));
}

#[test]
fn duplicate_keys_name_the_key() {
    let text = BASE.replace("id = 1\n", "id = 1\nid = 2\n");
    let p = problem(&text);
    assert_eq!(
        p.line,
        Some(line_of(&text, "id = 2", line_of(&text, "id = 1", 1)))
    );
    assert!(
        p.message.contains("duplicate key") && p.message.contains("`id`"),
        "{p}"
    );
}

#[test]
fn unknown_keys_are_rejected_with_their_line() {
    rejects(
        &BASE.replace("this-node", "this-nod"),
        "this-nod",
        "unknown field `this-nod`",
    );
    rejects(
        &BASE.replace("id = 1\n", "id = 1\nport = 7\n"),
        "port = 7",
        "unknown field `port`",
    );
    rejects(
        &BASE.replace(
            "shared-secret = \"s3cret\"",
            "shared-secret = \"s3cret\"\nprotocl = \"C\"",
        ),
        "protocl",
        "unknown field `protocl`",
    );
}

#[test]
fn wrong_types_are_rejected_with_their_line() {
    rejects(
        &BASE.replace("id = 1", "id = \"one\""),
        "id = \"one\"",
        "invalid type",
    );
}

#[test]
fn node_ids_must_be_unique() {
    let text = BASE.replace("id = 2", "id = 1");
    let p = problem(&text);
    assert_eq!(
        p.to_string(),
        format!(
            "replbd.toml:{}: resource r0: node id 1 appears twice (gamma, and beta on line {})",
            line_of(&text, "id = 1", line_of(&text, "\"gamma\"", 1)),
            line_of(&text, "id = 1", 1)
        )
    );
}

#[test]
fn node_names_must_be_unique_and_valid() {
    let text = BASE.replace("name = \"gamma\"", "name = \"beta\"");
    let second = line_of(&text, "name = \"beta\"", line_of(&text, "name = \"beta\"", 1) + 1);
    let p = problem(&text);
    assert_eq!(p.line, Some(second));
    assert!(p.message.contains("node beta appears twice"), "{p}");
    rejects(
        &BASE.replace("\"gamma\"", "\"gam ma\""),
        "gam ma",
        "node name \"gam ma\" is invalid",
    );
}

#[test]
fn node_ids_are_in_range() {
    rejects(
        &BASE.replace("id = 2", "id = 64"),
        "id = 64",
        "id 64 is out of range 0-63",
    );
}

#[test]
fn addresses_must_parse_and_be_unique() {
    rejects(
        &BASE.replace("127.0.0.1:7002", "127.0.0.1"),
        "address = \"127.0.0.1\"",
        "invalid address",
    );
    let text = BASE.replace("127.0.0.1:7002", "127.0.0.1:7001");
    let p = problem(&text);
    assert_eq!(
        p.line,
        Some(line_of(&text, "127.0.0.1:7001", line_of(&text, "gamma", 1)))
    );
    assert!(
        p.message
            .contains("address 127.0.0.1:7001 of node gamma is also the address of beta"),
        "{p}"
    );
}

#[test]
fn exactly_one_volume() {
    let text = BASE.replace(
        "[[resource.r0.volume]]\nsize = \"64MiB\"\ndisk = \"/var/lib/replbd/r0.img\"\nmeta-disk = \"internal\"\n",
        "",
    );
    let p = problem(&text);
    assert_eq!(p.line, Some(line_of(&text, "[resource.r0]", 1)));
    assert!(p.message.contains("resource r0 has no volume"), "{p}");
    let text = with("\n[[resource.r0.volume]]\ndisk = \"/dev/vdc\"\n");
    let p = problem(&text);
    assert_eq!(p.line, Some(line_of(&text, "disk = \"/dev/vdc\"", 1) - 1));
    assert!(p.message.contains("only one volume per resource"), "{p}");
}

#[test]
fn diskful_nodes_need_a_disk_and_diskless_nodes_must_not_have_one() {
    let text = BASE.replace("disk = \"/var/lib/replbd/r0.img\"\n", "");
    let p = problems(&text);
    assert_eq!(p.len(), 3, "{p:#?}");
    assert!(p[0].message.contains("node alpha has no disk"), "{}", p[0]);
    let text = BASE.replace("id = 2\n", "id = 2\ndiskless = true\ndisk = \"/dev/vdb\"\n");
    rejects(
        &text,
        "disk = \"/dev/vdb\"",
        "node gamma is diskless but has a disk",
    );
    // A node may override the volume's disk.
    let text = BASE.replace("id = 0\n", "id = 0\ndisk = \"/dev/alpha-disk\"\n");
    assert_eq!(
        ok(&text).resources[0].volume.disk.as_deref(),
        Some(Path::new("/dev/alpha-disk"))
    );
}

#[test]
fn diskless_this_node_has_no_disk_and_fewer_slots_are_needed() {
    let text = BASE.replace("id = 0\n", "id = 0\ndiskless = true\n");
    let r = ok(&text).resources.remove(0);
    assert!(r.this.diskless);
    assert_eq!(r.volume.disk, None);
    assert_eq!(r.volume.max_peers, 1);
}

#[test]
fn paths_must_be_absolute() {
    rejects(
        &BASE.replace("meta-disk = \"internal\"", "meta-disk = \"meta.img\""),
        "meta.img",
        "must be an absolute path",
    );
    rejects(
        &BASE.replace("\"/var/lib/replbd/r0.img\"", "\"r0.img\""),
        "r0.img",
        "must be an absolute path",
    );
}

#[test]
fn external_metadata_may_not_be_the_disk_itself() {
    rejects(
        &BASE.replace(
            "meta-disk = \"internal\"",
            "meta-disk = \"/var/lib/replbd/r0.img\"",
        ),
        "meta-disk",
        "external meta-disk is the data disk itself",
    );
}

#[test]
fn max_peers_and_al_extents_are_bounded() {
    rejects(
        &BASE.replace("size = \"64MiB\"", "size = \"64MiB\"\nmax-peers = 1"),
        "max-peers",
        "max-peers 1 must be from 2",
    );
    rejects(
        &BASE.replace("size = \"64MiB\"", "size = \"64MiB\"\nal-extents = 3"),
        "al-extents",
        "al-extents 3",
    );
    rejects(
        &BASE.replace("size = \"64MiB\"", "size = \"1000\""),
        "size = \"1000\"",
        "multiple of 4KiB",
    );
}

#[test]
fn protocol_a_with_two_primaries_is_rejected() {
    let text = BASE.replace(
        "shared-secret = \"s3cret\"",
        "shared-secret = \"s3cret\"\nprotocol = \"A\"\nallow-two-primaries = true",
    );
    rejects(
        &text,
        "[resource.r0.net]",
        "allow-two-primaries requires protocol C",
    );
    // The same through a connection's override.
    let text = with("\n[[resource.r0.connection]]\nhosts = [\"alpha\", \"beta\"]\nprotocol = \"B\"\n")
        .replace(
            "shared-secret = \"s3cret\"",
            "shared-secret = \"s3cret\"\nallow-two-primaries = true",
        );
    rejects(
        &text,
        "[[resource.r0.connection]]",
        "connection alpha - beta: allow-two-primaries requires protocol C",
    );
}

#[test]
fn stonith_fencing_with_protocol_a_is_rejected() {
    let text = with("\n[resource.r0.handlers]\nfence-peer = \"/usr/lib/replbd/fence.sh\"\n").replace(
        "shared-secret = \"s3cret\"",
        "shared-secret = \"s3cret\"\nprotocol = \"A\"\nfencing = \"resource-and-stonith\"",
    );
    rejects(
        &text,
        "[resource.r0.net]",
        "fencing resource-and-stonith cannot be used with protocol A",
    );
}

#[test]
fn option_names_are_checked() {
    let net = |kv: &str| {
        BASE.replace(
            "shared-secret = \"s3cret\"",
            &format!("shared-secret = \"s3cret\"\n{kv}"),
        )
    };
    rejects(
        &net("protocol = \"D\""),
        "protocol",
        "unknown replication protocol \"D\"",
    );
    rejects(
        &net("fencing = \"sometimes\""),
        "fencing",
        "unknown fencing policy",
    );
    rejects(
        &net("on-congestion = \"panic\""),
        "on-congestion",
        "unknown on-congestion policy",
    );
    rejects(
        &net("after-sb-0pri = \"coin-toss\""),
        "after-sb-0pri",
        "unknown after-sb-0pri policy",
    );
    rejects(
        &net("after-sb-1pri = \"coin-toss\""),
        "after-sb-1pri",
        "unknown after-sb-1pri policy",
    );
    rejects(
        &net("after-sb-2pri = \"coin-toss\""),
        "after-sb-2pri",
        "unknown after-sb-2pri policy",
    );
    rejects(
        &net("rr-conflict = \"coin-toss\""),
        "rr-conflict",
        "unknown rr-conflict policy",
    );
    rejects(
        &net("data-integrity-alg = \"md5\""),
        "data-integrity-alg",
        "use \"crc32c\"",
    );
    rejects(&net("timeout = \"6\""), "timeout", "invalid duration \"6\"");
    rejects(&net("max-epoch-size = 0"), "max-epoch-size", "max-epoch-size 0");
    rejects(&net("max-buffers = \"4KiB\""), "max-buffers", "at least 1MiB");
    rejects(
        &net("tls-certificate = \"/etc/replbd/tls/node.crt\""),
        "tls-certificate",
        "missing tls-key, tls-ca",
    );
    rejects(
        &net(
            "tls-certificate = \"/nonexistent/node.crt\"\ntls-key = \"/nonexistent/node.key\"\ntls-ca = \"/nonexistent/ca.crt\"",
        ),
        "tls-certificate",
        "tls-certificate /nonexistent/node.crt",
    );
    rejects(
        &net("tls-certificate = \"node.crt\"\ntls-key = \"/k\"\ntls-ca = \"/c\""),
        "tls-certificate",
        "must be an absolute path",
    );
    rejects(
        &net("max-buffers = \"8MiB\"\ncongestion-fill = \"8MiB\""),
        "congestion-fill",
        "must be below max-buffers",
    );
    rejects(
        &net("connect-int = \"1s\"\nconnect-int-min = \"2s\""),
        "connect-int-min",
        "above connect-int",
    );
}

#[test]
fn after_sb_policies_are_stored_and_discard_node_must_name_a_node() {
    let net = |kv: &str| {
        BASE.replace(
            "shared-secret = \"s3cret\"",
            &format!("shared-secret = \"s3cret\"\n{kv}"),
        )
    };
    let r = ok(&net("after-sb-0pri = \"discard-node-beta\""))
        .resources
        .remove(0);
    assert_eq!(
        r.split_brain.after_sb_0pri,
        AfterSb0Pri::DiscardNode("beta".into())
    );
    assert_eq!(
        r.peers[0].options.split_brain.after_sb_0pri,
        AfterSb0Pri::DiscardNode("beta".into())
    );
    rejects(
        &net("after-sb-0pri = \"discard-node-zeta\""),
        "after-sb-0pri",
        "zeta is not a node of this resource",
    );
    rejects(
        &net("after-sb-1pri = \"call-pri-lost-after-sb\""),
        "[resource.r0.net]",
        "needs a pri-lost-after-sb handler",
    );
    rejects(
        &net("rr-conflict = \"call-pri-lost\""),
        "[resource.r0.net]",
        "needs a pri-lost handler",
    );
}

#[test]
fn fencing_needs_a_fence_peer_handler() {
    let text = BASE.replace(
        "shared-secret = \"s3cret\"",
        "shared-secret = \"s3cret\"\nfencing = \"resource-only\"",
    );
    rejects(&text, "fencing", "fencing needs a fence-peer handler");
    let text = with("\n[resource.r0.handlers]\nfence-peer = \"/usr/lib/replbd/fence.sh\"\nunfence-peer = \"/usr/lib/replbd/unfence.sh\"\n")
        .replace("shared-secret = \"s3cret\"", "shared-secret = \"s3cret\"\nfencing = \"resource-only\"");
    let r = ok(&text).resources.remove(0);
    assert_eq!(r.peers[0].options.fencing, FencingPolicy::ResourceOnly);
    assert_eq!(r.handlers.fence_peer.as_deref(), Some("/usr/lib/replbd/fence.sh"));
    assert_eq!(
        r.handlers.unfence_peer.as_deref(),
        Some("/usr/lib/replbd/unfence.sh")
    );
    rejects(
        &with("\n[resource.r0.handlers]\nquorum-lost = \" \"\n"),
        "quorum-lost",
        "handler quorum-lost is empty",
    );
}

#[test]
fn quorum_settings() {
    let opts = |kv: &str| with(&format!("\n[resource.r0.options]\n{kv}\n"));
    let r = ok(&opts("quorum = \"majority\"\non-no-quorum = \"io-error\""))
        .resources
        .remove(0);
    assert_eq!(r.quorum.quorum, QuorumPolicy::Majority);
    assert_eq!(r.quorum.on_no_quorum, OnNoQuorum::IoError);
    assert_eq!(
        ok(&opts("quorum = 2")).resources[0].quorum.quorum,
        QuorumPolicy::Count(2)
    );
    rejects(
        &opts("quorum = 4"),
        "quorum = 4",
        "quorum 4 can never be reached: the resource has 3 diskful nodes",
    );
    rejects(&opts("quorum = \"most\""), "quorum", "unknown quorum setting");
    rejects(
        &opts("on-no-quorum = \"panic\""),
        "on-no-quorum",
        "unknown on-no-quorum policy",
    );
    rejects(
        &opts("quorum-minimum-redundancy = 5"),
        "quorum-minimum-redundancy",
        "can never be reached",
    );
}

#[test]
fn resync_rates_are_stored() {
    let disk = |kv: &str| with(&format!("\n[resource.r0.disk]\n{kv}\n"));
    let r = ok(&disk("c-max-rate = \"200MiB\"\nc-min-rate = \"1MiB/s\"\nc-fill-target = \"1MiB\"\nread-balancing = \"round-robin\""))
        .resources
        .remove(0);
    assert_eq!(
        (r.resync.c_max_rate, r.resync.c_min_rate, r.resync.c_fill_target),
        (200 << 20, 1 << 20, 1 << 20)
    );
    assert_eq!(
        r.read_balancing,
        replbd_replication::engine::ReadBalancing::RoundRobin
    );
    rejects(
        &disk("c-max-rate = \"1MiB\"\nc-min-rate = \"2MiB\""),
        "c-min-rate",
        "c-min-rate (2MiB/s) is above c-max-rate (1MiB/s)",
    );
    rejects(
        &disk("c-max-rate = \"fast\""),
        "c-max-rate",
        "invalid size \"fast\"",
    );
    rejects(
        &disk("read-balancing = \"striping\""),
        "read-balancing",
        "unknown read-balancing",
    );
}

#[test]
fn resync_settings_reach_the_engine() {
    use replbd_replication::engine::DigestAlg;
    let net = |kv: &str| {
        BASE.replace(
            "shared-secret = \"s3cret\"",
            &format!("shared-secret = \"s3cret\"\n{kv}"),
        )
    };
    let e = ok(BASE).resources.remove(0).engine_config();
    assert_eq!((e.resync.csums, e.resync.verify), (None, DigestAlg::Crc32c));
    let text = net("csums-alg = \"sha256\"\nverify-alg = \"sha256\"")
        + "\n[resource.r0.disk]\nc-max-rate = \"200MiB\"\nc-min-rate = \"1MiB\"\nc-fill-target = \"8MiB\"\n";
    let e = ok(&text).resources.remove(0).engine_config();
    assert_eq!(
        (e.resync.csums, e.resync.verify),
        (Some(DigestAlg::Sha256), DigestAlg::Sha256)
    );
    assert_eq!(
        (e.resync.max_rate, e.resync.min_rate, e.resync.fill_target),
        (200 << 20, 1 << 20, 8 << 20)
    );
    rejects(
        &net("csums-alg = \"md5\""),
        "csums-alg",
        "unknown digest algorithm \"md5\": use crc32c or sha256",
    );
    rejects(
        &net("verify-alg = \"none\""),
        "verify-alg",
        "unknown digest algorithm",
    );
}

#[test]
fn the_shared_secret_is_required_once() {
    rejects(
        &BASE.replace("shared-secret = \"s3cret\"", ""),
        "[resource.r0.net]",
        "has no shared secret",
    );
    rejects(
        &BASE.replace("\"s3cret\"", "\"\""),
        "shared-secret",
        "shared-secret is empty",
    );
    rejects(
        &BASE.replace(
            "shared-secret = \"s3cret\"",
            "shared-secret = \"a\"\nshared-secret-file = \"/etc/replbd/r0.secret\"",
        ),
        "shared-secret = \"a\"",
        "not both",
    );
    rejects(
        &BASE.replace(
            "shared-secret = \"s3cret\"",
            "shared-secret-file = \"/nonexistent/r0.secret\"",
        ),
        "shared-secret-file",
        "cannot read shared-secret-file /nonexistent/r0.secret",
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("r0.secret");
    std::fs::write(&file, "from-a-file\n").unwrap();
    let text = BASE.replace(
        "shared-secret = \"s3cret\"",
        &format!("shared-secret-file = \"{}\"", file.display()),
    );
    assert_eq!(ok(&text).resources[0].secret, b"from-a-file");
}

#[test]
fn front_ends() {
    let fe = |body: &str| BASE.replace("kind = \"nbd\"\nsocket = \"/run/replbd/r0.nbd\"", body);
    assert_eq!(
        ok(&fe("kind = \"nbd\"\nport = 10809")).resources[0].front_end,
        FrontEndSpec::Nbd(crate::nbd::ListenAddr::localhost(10809))
    );
    assert_eq!(
        ok(&fe("kind = \"none\"")).resources[0].front_end,
        FrontEndSpec::None
    );
    assert_eq!(
        ok(&fe("kind = \"ublk\"\ndevice = 3")).resources[0].front_end,
        FrontEndSpec::Ublk(UblkSpec::new(3))
    );
    assert_eq!(
        ok(&fe(
            "kind = \"ublk\"\ndevice = 0\nqueues = 2\nqueue-depth = 128\nlogical-block-size = 4096"
        ))
        .resources[0]
            .front_end,
        FrontEndSpec::Ublk(UblkSpec {
            device: 0,
            queues: 2,
            queue_depth: 128,
            logical_block_size: replbd_ublk::BlockSize::B4096,
        })
    );
    let no_table = BASE.replace(
        "[resource.r0.front-end]\nkind = \"nbd\"\nsocket = \"/run/replbd/r0.nbd\"\n",
        "",
    );
    rejects(&no_table, "[resource.r0]", "resource r0 has no front end");
    rejects(
        &fe("kind = \"nbd\""),
        "[resource.r0.front-end]",
        "exactly one of socket",
    );
    rejects(&fe("kind = \"nbd\"\nport = 0"), "port = 0", "out of range");
    rejects(
        &fe("kind = \"ublk\"\ndevice = 0\nport = 10809"),
        "port",
        "only apply to the nbd front end",
    );
    rejects(
        &fe("kind = \"ublk\""),
        "[resource.r0.front-end]",
        "the ublk front end needs its device number: device = N",
    );
    rejects(
        &fe("kind = \"ublk\"\ndevice = -1"),
        "device",
        "ublk device -1 is out of range 0-1048575",
    );
    rejects(
        &fe("kind = \"ublk\"\ndevice = 0\nqueues = 0"),
        "queues",
        "queues 0 is out of range 1-64",
    );
    rejects(
        &fe("kind = \"ublk\"\ndevice = 0\nqueue-depth = 5000"),
        "queue-depth",
        "queue-depth 5000 is out of range 1-4096",
    );
    rejects(
        &fe("kind = \"ublk\"\ndevice = 0\nlogical-block-size = 1024"),
        "logical-block-size",
        "logical-block-size 1024 must be 512 or 4096",
    );
    rejects(
        &fe("kind = \"nbd\"\nport = 10809\nqueues = 2"),
        "queues",
        "only apply to the ublk front end",
    );
    rejects(
        &fe("kind = \"none\"\ndevice = 1"),
        "device",
        "the none front end takes no other keys",
    );
    rejects(&fe("kind = \"iscsi\""), "kind", "unknown front end \"iscsi\"");
}

#[test]
fn two_resources_on_this_node_may_not_share_a_ublk_device() {
    let base = BASE.replace(
        "kind = \"nbd\"\nsocket = \"/run/replbd/r0.nbd\"",
        "kind = \"ublk\"\ndevice = 5",
    );
    let r1 = base
        .replace("this-node = \"alpha\"\n", "")
        .replace("r0", "r1")
        .replace("700", "710")
        .replace("/var/lib/replbd/r1.img", "/var/lib/replbd/other.img");
    let text = format!("{base}\n{r1}");
    let p = problem(&text);
    assert_eq!(p.line, Some(line_of(&text, "[resource.r1]", 1)));
    assert_eq!(
        p.message,
        "resource r1: ublk device /dev/ublkb5 is also used by resource r0 on this node"
    );
}

#[test]
fn resource_names_are_checked() {
    rejects(
        &BASE.replace("resource.r0", "resource.all"),
        "[resource.all]",
        "resource name \"all\" is reserved",
    );
}

#[test]
fn connections_join_two_known_nodes_once() {
    rejects(
        &with("\n[[resource.r0.connection]]\nhosts = [\"alpha\"]\n"),
        "hosts",
        "exactly two different nodes",
    );
    rejects(
        &with("\n[[resource.r0.connection]]\nhosts = [\"alpha\", \"zeta\"]\n"),
        "hosts",
        "zeta is not a node",
    );
    let text = with(
        "\n[[resource.r0.connection]]\nhosts = [\"alpha\", \"beta\"]\n\n[[resource.r0.connection]]\nhosts = [\"beta\", \"alpha\"]\n",
    );
    let p = problem(&text);
    assert_eq!(
        p.line,
        Some(line_of(
            &text,
            "[[resource.r0.connection]]",
            line_of(&text, "[[resource.r0.connection]]", 1) + 1
        ))
    );
    assert!(
        p.message.contains("the connection alpha - beta appears twice"),
        "{p}"
    );
}

#[test]
fn two_resources_on_this_node_may_not_share_an_address_or_a_disk() {
    let r1 = BASE
        .replace("this-node = \"alpha\"\n", "")
        .replace("r0", "r1")
        .replace("/run/replbd/r1.nbd", "/run/replbd/r1-other.nbd");
    let text = format!("{BASE}\n{r1}");
    let p = problems(&text);
    let messages: Vec<&str> = p.iter().map(|p| p.message.as_str()).collect();
    assert!(
        messages.contains(
            &"resource r1: replication address 127.0.0.1:7000 is also used by resource r0 on this node"
        ),
        "{messages:#?}"
    );
    assert!(
        messages
            .contains(&"resource r1: disk /var/lib/replbd/r1.img is also used by resource r0 on this node")
            || messages
                .iter()
                .all(|m| !m.contains("disk /var/lib/replbd/r0.img")),
        "{messages:#?}"
    );
    assert!(
        p.iter()
            .all(|p| p.line == Some(line_of(&text, "[resource.r1]", 1))),
        "{p:#?}"
    );
}

#[test]
fn every_problem_is_reported_in_file_order() {
    let text = BASE.replace("id = 2", "id = 99").replace("\"s3cret\"", "\"\"");
    let p = problems(&text);
    assert_eq!(p.len(), 2, "{p:#?}");
    assert!(p[0].line < p[1].line);
    let e = parse_text(&text).unwrap_err().to_string();
    assert_eq!(e.lines().count(), 2, "{e}");
    assert!(e.lines().all(|l| l.starts_with("replbd.toml:")), "{e}");
}

#[test]
fn the_documented_example_is_valid() {
    let doc = include_str!("../../../docs/node-config.md");
    let start = doc.find("```toml\n").unwrap() + "```toml\n".len();
    let end = start + doc[start..].find("```").unwrap();
    let example = &doc[start..end];
    let c = parse(example, Path::new("replbd.toml"), None).unwrap_or_else(|e| panic!("{e}"));
    assert!(!c.resources.is_empty());
}

#[test]
fn a_missing_file_is_a_read_error() {
    let e = load(Path::new("/nonexistent/replbd.toml")).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("cannot read the configuration /nonexistent/replbd.toml:"),
        "{e}"
    );
}
