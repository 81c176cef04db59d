//! Highly available controllers on a real etcd server (started here on loopback with a temporary
//! data directory), failover when the active controller dies; and TLS with client certificates
//! on both control connections (CLI → controller, controller → agent): a client without a
//! certificate from the cluster's CA is refused by the controller and by the node agents.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::{Proc, controller_bin, free_port, replbd};

fn etcd_binary() -> Option<PathBuf> {
    ["/usr/bin/etcd", "/usr/local/bin/etcd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

fn cli(controllers: &str, args: &[&str]) -> std::process::Output {
    Command::new(replbd())
        .arg("--controllers")
        .arg(controllers)
        .args(args)
        .output()
        .unwrap()
}

fn wait(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting until {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn active_id(controllers: &str) -> Option<String> {
    let o = cli(controllers, &["-m", "controller", "version"]);
    if !o.status.success() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).ok()?;
    Some(v["controller_id"].as_str()?.to_owned())
}

fn controller(dir: &Path, id: &str, listen: &str, etcd: &str) -> Proc {
    Proc::spawn(
        &controller_bin(),
        [
            "--listen",
            listen,
            "--etcd",
            etcd,
            "--lease-ttl",
            "2s",
            "--id",
            id,
            "--etcd-prefix",
            "/replbd-test",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect(),
        &dir.join(format!("{id}.log")),
    )
}

/// The etcd binary, or `None` after saying why the test is skipped (a failure in CI instead).
fn etcd_or_skip() -> Option<PathBuf> {
    let etcd = etcd_binary();
    if etcd.is_none() {
        // scripts/test.sh sets REPLBD_REQUIRE_ETCD=1: in CI a missing etcd is a failure, not a skip.
        assert!(
            std::env::var_os("REPLBD_REQUIRE_ETCD").is_none(),
            "etcd is not installed and REPLBD_REQUIRE_ETCD is set (Debian's etcd-server; scripts/install-deps.sh installs it)"
        );
        println!(
            "SKIPPED: etcd is not installed (Debian's etcd-server; scripts/install-deps.sh installs it)"
        );
    }
    etcd
}

/// Starts a one-member etcd on loopback in `dir`, with TLS and client-certificate authentication
/// when `tls` gives its certificate, key and CA; returns it and its client address `host:port`.
fn start_etcd(etcd: &Path, dir: &Path, tls: Option<&(PathBuf, PathBuf, PathBuf)>) -> (Proc, String) {
    let (client_port, peer_port) = (free_port(), free_port());
    let scheme = if tls.is_some() { "https" } else { "http" };
    let client_url = format!("{scheme}://127.0.0.1:{client_port}");
    let peer_url = format!("http://127.0.0.1:{peer_port}");
    let mut args: Vec<String> = vec![
        "--name".into(),
        "t".into(),
        "--data-dir".into(),
        dir.join("etcd").display().to_string(),
        "--listen-client-urls".into(),
        client_url.clone(),
        "--advertise-client-urls".into(),
        client_url,
        "--listen-peer-urls".into(),
        peer_url.clone(),
        "--initial-advertise-peer-urls".into(),
        peer_url.clone(),
        "--initial-cluster".into(),
        format!("t={peer_url}"),
    ];
    if let Some((cert, key, ca)) = tls {
        for (flag, path) in [
            ("--cert-file", cert),
            ("--key-file", key),
            ("--trusted-ca-file", ca),
        ] {
            args.push(flag.into());
            args.push(path.display().to_string());
        }
        args.push("--client-cert-auth".into());
    }
    let proc = Proc::spawn(etcd, args, &dir.join("etcd.log"));
    let ep = format!("127.0.0.1:{client_port}");
    wait(Duration::from_secs(20), "etcd listens", || {
        std::net::TcpStream::connect(&ep).is_ok()
    });
    (proc, ep)
}

#[test]
fn etcd_store_and_failover_between_two_controllers() {
    let Some(etcd) = etcd_or_skip() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (_etcd, etcd_ep) = start_etcd(&etcd, dir.path(), None);

    let (a1, a2) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let both = format!("{a1},{a2}");
    let mut c1 = controller(dir.path(), "c1", &a1, &etcd_ep);
    wait(Duration::from_secs(20), "c1 is active", || {
        active_id(&a1).as_deref() == Some("c1")
    });
    let _c2 = controller(dir.path(), "c2", &a2, &etcd_ep);
    // The standby refuses with a clear reason, and clients move on to the active one.
    wait(Duration::from_secs(10), "c2 answers as a standby", || {
        let o = cli(&a2, &["node", "list"]);
        String::from_utf8_lossy(&o.stderr).contains("not the active controller (the active one is c1)")
    });
    assert_eq!(active_id(&both).as_deref(), Some("c1"));
    for args in [
        &["node", "create", "n1", "127.0.0.1", "--port", "1"][..],
        &["resource-definition", "create", "r0"][..],
        &["volume-definition", "create", "r0", "16MiB"][..],
    ] {
        let o = cli(&both, args);
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    // The active controller dies without a word: c2 takes over within the lease TTL, with the state.
    c1.kill();
    wait(Duration::from_secs(20), "c2 is active", || {
        active_id(&both).as_deref() == Some("c2")
    });
    let o = cli(&both, &["-m", "resource-definition", "list"]);
    let rds: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(rds[0]["name"], "r0");
    let o = cli(&both, &["-m", "volume-definition", "list"]);
    let vds: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(vds[0]["size_bytes"], 16 << 20);
    let o = cli(&both, &["-m", "node", "list"]);
    let nodes: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(nodes[0]["name"], "n1");
    let v = cli(&both, &["controller", "version"]);
    assert!(
        String::from_utf8_lossy(&v.stdout).contains("store: etcd"),
        "{v:?}"
    );

    // c1 comes back as a standby.
    c1.restart();
    wait(Duration::from_secs(10), "c1 answers as a standby", || {
        String::from_utf8_lossy(&cli(&a1, &["node", "list"]).stderr).contains("not the active controller")
    });
    assert_eq!(active_id(&both).as_deref(), Some("c2"));
}

#[test]
fn the_etcd_store_over_tls_with_a_client_certificate() {
    let Some(etcd) = etcd_or_skip() else { return };
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "etcd-ca");
    let (server_cert, server_key) = ca.issue("etcd", true);
    let (client_cert, client_key) = ca.issue("controller", false);
    let ca_path = ca.pem.clone();
    let (_etcd, ep) = start_etcd(
        &etcd,
        dir.path(),
        Some(&(server_cert, server_key, ca_path.clone())),
    );

    // Without the TLS options the controller cannot use this etcd, and says so instead of serving.
    let mut plain = Command::new(controller_bin())
        .args(["--listen", &format!("127.0.0.1:{}", free_port()), "--etcd"])
        .arg(format!("https://{ep}"))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(s) = plain.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = plain.kill();
            panic!("a controller without the etcd TLS options kept running against a TLS-only etcd");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut plain.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success());
    assert!(
        err.contains("needs --etcd-tls-cert, --etcd-tls-key and --etcd-tls-ca"),
        "the error does not say what is missing: {err}"
    );

    // With them: active, and the state goes to etcd.
    let listen = format!("127.0.0.1:{}", free_port());
    let _c = Proc::spawn(
        &controller_bin(),
        [
            "--listen",
            &listen,
            "--etcd",
            &ep,
            "--etcd-tls-cert",
            &client_cert.display().to_string(),
            "--etcd-tls-key",
            &client_key.display().to_string(),
            "--etcd-tls-ca",
            &ca_path.display().to_string(),
            "--id",
            "tls1",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect(),
        &dir.path().join("tls1.log"),
    );
    wait(Duration::from_secs(20), "the controller is active", || {
        active_id(&listen).as_deref() == Some("tls1")
    });
    let o = cli(&listen, &["node", "create", "n1", "127.0.0.1", "--port", "1"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v = cli(&listen, &["controller", "version"]);
    assert!(
        String::from_utf8_lossy(&v.stdout).contains("store: etcd"),
        "{v:?}"
    );
}

/// A CA whose certificate is a PEM file in `dir`, issuing certificates for server and client use.
struct TestCa {
    dir: PathBuf,
    pem: PathBuf,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    fn new(dir: &Path, name: &str) -> TestCa {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let pem = dir.join(format!("{name}.pem"));
        std::fs::write(&pem, params.self_signed(&key).unwrap().pem()).unwrap();
        TestCa {
            dir: dir.to_path_buf(),
            pem,
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate for DNS name `name` (and 127.0.0.1 with `loopback_ip`) and its key.
    fn issue(&self, name: &str, loopback_ip: bool) -> (PathBuf, PathBuf) {
        use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, KeyPair, SanType};
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec![name.to_owned()]).unwrap();
        if loopback_ip {
            p.subject_alt_names
                .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
        }
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let (c, k) = (
            self.dir.join(format!("{name}.pem")),
            self.dir.join(format!("{name}.key")),
        );
        std::fs::write(&c, p.signed_by(&key, &self.issuer).unwrap().pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }
}

/// A CA and certificates it signs, as PEM files in `dir`.
fn make_certs(dir: &Path) -> (PathBuf, [(PathBuf, PathBuf); 3]) {
    let ca = TestCa::new(dir, "ca");
    let certs = [
        ca.issue("replbd-controller", false),
        ca.issue("replbd-node", false),
        ca.issue("admin", false),
    ];
    (ca.pem, certs)
}

#[test]
fn tls_with_client_certificates_on_every_control_connection() {
    let certs = tempfile::tempdir().unwrap();
    let (
        ca,
        [
            (ctl_cert, ctl_key),
            (node_cert, node_key),
            (admin_cert, admin_key),
        ],
    ) = make_certs(certs.path());
    let s = |p: &PathBuf| p.display().to_string();
    let controller_extra = [
        "--tls-cert".to_owned(),
        s(&ctl_cert),
        "--tls-key".into(),
        s(&ctl_key),
        "--tls-ca".into(),
        s(&ca),
        "--agent-tls-cert".into(),
        s(&ctl_cert),
        "--agent-tls-key".into(),
        s(&ctl_key),
        "--agent-tls-ca".into(),
        s(&ca),
        "--agent-tls-server-name".into(),
        "replbd-node".into(),
    ];
    let node_extra = [
        "--agent-tls-cert".to_owned(),
        s(&node_cert),
        "--agent-tls-key".into(),
        s(&node_key),
        "--agent-tls-ca".into(),
        s(&ca),
    ];
    let ce: Vec<&str> = controller_extra.iter().map(String::as_str).collect();
    let ne: Vec<&str> = node_extra.iter().map(String::as_str).collect();
    let tls_args = [
        "--tls-cert".to_owned(),
        s(&admin_cert),
        "--tls-key".into(),
        s(&admin_key),
        "--tls-ca".into(),
        s(&ca),
        "--tls-server-name".into(),
        "replbd-controller".into(),
    ];
    let ta: Vec<&str> = tls_args.iter().map(String::as_str).collect();
    let c = StartTls::start(&ce, &ne, &ta);
    let (name, addr) = (c.node_name.clone(), c.node_addr.clone());
    let ok = |args: &[&str]| {
        let o = Command::new(replbd())
            .args(["--controllers", &c.controller_addr])
            .args(&ta)
            .args(args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    ok(&["node", "create", &name, &addr]);
    wait(Duration::from_secs(30), "the node is Online over TLS", || {
        ok(&["node", "list"]).contains("Online")
    });
    // Without a client certificate the controller cannot be used, and the CLI says why.
    let o = cli(&c.controller_addr, &["node", "list"]);
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("no active controller"));

    // The node agent refuses clients without a certificate from the cluster's CA: plain TCP, TLS
    // without a client certificate, and a certificate from another CA (a would-be controller).
    let strangers = tempfile::tempdir().unwrap();
    let (_, [(other_cert, other_key), ..]) = make_certs(strangers.path());
    let agent = format!("{addr}:3366");
    let rt = tokio::runtime::Runtime::new().unwrap();
    // A client with a certificate from the CA reaches the agent's code, which answers its
    // (deliberately wrong) version: the probe itself works and changes nothing.
    let reached = rt.block_on(agent_probe(&agent, &ca, Some(Some((&admin_cert, &admin_key)))));
    assert!(reached.contains("VERSION MISMATCH"), "{reached}");
    let attempts = [
        ("plain TCP", None),
        ("TLS without a client certificate", Some(None)),
        (
            "a certificate from another CA",
            Some(Some((&other_cert, &other_key))),
        ),
    ];
    for (what, tls) in attempts {
        let refused = rt.block_on(agent_probe(&agent, &ca, tls));
        assert!(
            !refused.contains("VERSION MISMATCH"),
            "{what} reached the agent: {refused}"
        );
        println!("the agent refused {what}: {refused}");
    }
    // The controller's own connection is unaffected.
    assert!(ok(&["node", "list"]).contains("Online"));
}

/// Connects to a node agent at `agent` the way a controller does and says hello with a version of
/// another major (which the agent refuses without changing anything); returns the error. `tls` is
/// `None` for plain TCP, else the client certificate and key to present (if any), with the server
/// verified against `ca`.
async fn agent_probe(agent: &str, ca: &Path, tls: Option<Option<(&PathBuf, &PathBuf)>>) -> String {
    use replbd_proto::agent::HelloRequest;
    use replbd_proto::agent::node_agent_client::NodeAgentClient;
    use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint = Channel::from_shared(format!("{scheme}://{agent}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(10));
    if let Some(identity) = tls {
        let mut cfg = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(std::fs::read(ca).unwrap()))
            .domain_name("replbd-node");
        if let Some((cert, key)) = identity {
            cfg = cfg.identity(Identity::from_pem(
                std::fs::read(cert).unwrap(),
                std::fs::read(key).unwrap(),
            ));
        }
        endpoint = endpoint.tls_config(cfg).unwrap();
    }
    let channel = match endpoint.connect().await {
        Ok(c) => c,
        Err(e) => return format!("connect: {e:?}"),
    };
    match NodeAgentClient::new(channel)
        .hello(HelloRequest {
            node_name: "n1".into(),
            controller_version: "999.0.0".into(),
        })
        .await
    {
        Ok(_) => "the agent accepted a hello from another major version".into(),
        Err(s) => format!("hello: {s}"),
    }
}

/// A controller and one node with TLS, waited for with certificates.
struct StartTls {
    _dir: tempfile::TempDir,
    controller_addr: String,
    node_name: String,
    node_addr: String,
    _procs: Vec<Proc>,
}

impl StartTls {
    fn start(controller_extra: &[&str], node_extra: &[&str], tls: &[&str]) -> StartTls {
        let dir = tempfile::tempdir().unwrap();
        let controller_addr = format!("127.0.0.1:{}", free_port());
        let mut args = vec![
            "--listen".to_owned(),
            controller_addr.clone(),
            "--db".into(),
            dir.path().join("c.db").display().to_string(),
        ];
        args.extend(controller_extra.iter().map(|s| (*s).to_owned()));
        let ctl = Proc::spawn(&controller_bin(), args, &dir.path().join("controller.log"));
        let node_addr = format!("{}.1", support::loopback_prefix());
        let nd = dir.path().join("n1");
        std::fs::create_dir_all(&nd).unwrap();
        let mut nargs: Vec<String> = vec![
            "--admin-socket".into(),
            nd.join("admin.sock").display().to_string(),
            "daemon".into(),
            "--config".into(),
            nd.join("none.toml").display().to_string(),
            "--agent".into(),
            format!("{node_addr}:3366"),
            "--state-dir".into(),
            nd.join("run").display().to_string(),
        ];
        nargs.extend(node_extra.iter().map(|s| (*s).to_owned()));
        let node = Proc::spawn(&support::node_bin(), nargs, &dir.path().join("n1.log"));
        wait(Duration::from_secs(20), "the TLS controller answers", || {
            Command::new(replbd())
                .args(["--controllers", &controller_addr])
                .args(tls)
                .args(["controller", "version"])
                .status()
                .unwrap()
                .success()
        });
        StartTls {
            _dir: dir,
            controller_addr,
            node_name: "n1".into(),
            node_addr,
            _procs: vec![ctl, node],
        }
    }
}
