//! TLS between peers: with certificates from the cluster's CA the nodes connect and replicate over
//! TLS (the files loaded as the node daemon loads them); a node whose certificate comes from another
//! CA, or one without TLS, is refused — it never connects and the reason names TLS.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};
use replbd_quorum::{ConnectionState, Protocol};
use replbd_replication::BlockVolume;
use replbd_replication::engine::{Event, Resource};
use replbd_replication::tls::PeerTls;
use support::{Node, config, disk_with_meta, free_ports, in_sync, same_data, write_blocks};

const MIB: u64 = 1 << 20;

/// A CA in `dir` and a function that writes a certificate it signs for a node name.
struct Ca {
    dir: PathBuf,
    path: PathBuf,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new(dir: &Path, name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        let path = dir.join(format!("{name}.pem"));
        std::fs::write(&path, cert.pem()).unwrap();
        Ca {
            dir: dir.to_path_buf(),
            path,
            issuer: Issuer::new(params, key),
        }
    }

    /// This node's TLS identity: a certificate for `node` from this CA, trusting `trust`.
    fn identity(&self, node: &str, trust: &Ca) -> PeerTls {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec![node.to_owned()]).unwrap();
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        let tag = self.path.file_stem().unwrap().to_string_lossy().into_owned();
        let c = self.dir.join(format!("{node}-{tag}.crt"));
        let k = self.dir.join(format!("{node}-{tag}.key"));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        PeerTls::from_pem_files(&c, &k, &trust.path).unwrap()
    }
}

/// Two nodes with the given TLS settings, started without waiting for them to connect.
async fn pair(tls: [Option<PeerTls>; 2]) -> Vec<Node> {
    support::init_logging();
    let addrs = free_ports(2);
    let mut nodes = Vec::new();
    for (i, t) in tls.into_iter().enumerate() {
        let mut cfg = config(i, &addrs, Protocol::C, &[]);
        cfg.tls = t;
        let (d, store, meta) = disk_with_meta(16 * MIB, 1, i as u8, true);
        let res = Resource::start(cfg.clone(), Some(d)).await.unwrap();
        nodes.push(Node {
            id: i as u8,
            res,
            store: Some(store),
            addr: addrs[i],
            meta: Some(meta),
            cfg,
        });
    }
    nodes
}

/// Waits a while and checks the two nodes never connected; returns node 0's reasons.
async fn never_connect(nodes: &[Node]) -> Vec<String> {
    let mut events = nodes[0].res.events();
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (i, n) in nodes.iter().enumerate() {
        let st = n.res.status();
        assert_ne!(
            st.peer(1 - i as u8).unwrap().connection,
            ConnectionState::Connected,
            "node {i} connected: {st}"
        );
    }
    let mut reasons = Vec::new();
    while let Ok(e) = events.try_recv() {
        if let Event::Connection { reason: Some(r), .. } = e {
            reasons.push(r);
        }
    }
    reasons
}

async fn down(nodes: &[Node]) {
    for n in nodes {
        n.res.down().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_with_certificates_from_the_cluster_ca_replicate_over_tls() {
    let dir = tempdir();
    let ca = Ca::new(&dir, "ca");
    let nodes = pair([Some(ca.identity("node0", &ca)), Some(ca.identity("node1", &ca))]).await;
    support::wait_connected(&nodes[0], 1).await;
    let p = nodes[0].res.clone();
    p.primary(false).await.unwrap();
    write_blocks(&p, 0..64).await;
    p.flush().await.unwrap();
    in_sync(&nodes[1], 0).await;
    same_data(&[&nodes[0], &nodes[1]]);
    down(&nodes).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Node 1 presents the certificate `node1` makes; the two must never connect, for a TLS reason.
async fn refused(node1: impl FnOnce(&Path, &Ca) -> PeerTls) {
    let dir = tempdir();
    let ca = Ca::new(&dir, "ca");
    let nodes = pair([Some(ca.identity("node0", &ca)), Some(node1(&dir, &ca))]).await;
    let reasons = never_connect(&nodes).await;
    assert!(
        reasons.iter().any(|r| r.contains("TLS")),
        "no reason names TLS: {reasons:?}"
    );
    down(&nodes).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_ca_is_refused() {
    // Signed by a CA the cluster does not trust (node 1 itself trusts the cluster CA).
    refused(|dir, ca| Ca::new(dir, "rogue").identity("node1", ca)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_for_another_node_name_is_refused() {
    // A valid certificate, but for a name that is not node 1's.
    refused(|_, ca| ca.identity("intruder", ca)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_tls_cannot_connect_to_one_with_tls() {
    let dir = tempdir();
    let ca = Ca::new(&dir, "ca");
    let nodes = pair([Some(ca.identity("node0", &ca)), None]).await;
    never_connect(&nodes).await;
    down(&nodes).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unusable_files_are_named_in_the_error() {
    let dir = tempdir();
    let missing = dir.join("missing.pem");
    let e = PeerTls::from_pem_files(&missing, &missing, &missing).unwrap_err();
    assert!(e.to_string().starts_with("tls-certificate "), "{e}");
    let empty = dir.join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let e = PeerTls::from_pem_files(&empty, &empty, &empty).unwrap_err();
    assert!(e.to_string().contains("no PEM certificate"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempdir() -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let d = std::env::temp_dir().join(format!(
        "replbd-tls-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}
