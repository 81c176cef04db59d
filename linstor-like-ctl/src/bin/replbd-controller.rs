//! `replbd-controller`: the cluster controller. It keeps the cluster state (SQLite by default,
//! etcd for several controllers of which one is active), connects out to every node's agent and
//! serves the API the `replbd` CLI uses (default port 3370).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use replbd_ctl::controller::core::{ClientTls, Settings};
use replbd_ctl::controller::evict::parse_duration;
use replbd_ctl::controller::run::{Options, StoreChoice, TlsFiles, run};
use replbd_ctl::store::etcd::EtcdTls;

/// replbd's cluster controller.
#[derive(Parser)]
#[command(name = "replbd-controller", version, about)]
struct Cli {
    /// The API address.
    #[arg(long, env = "REPLBD_CONTROLLER_LISTEN", default_value = "0.0.0.0:3370")]
    listen: SocketAddr,
    /// Serve `/metrics` and `/health` on this address (e.g. 0.0.0.0:3371).
    #[arg(long, value_name = "ADDR")]
    http: Option<SocketAddr>,
    /// The SQLite database (ignored with --etcd).
    #[arg(
        long,
        env = "REPLBD_CONTROLLER_DB",
        default_value = "/var/lib/replbd/controller.db"
    )]
    db: PathBuf,
    /// Keep the state in etcd instead (comma-separated endpoints); several controllers may share
    /// it, one active at a time.
    #[arg(long, value_name = "ENDPOINTS")]
    etcd: Option<String>,
    /// TLS towards etcd: the controller's client certificate (PEM); needs --etcd-tls-key and
    /// --etcd-tls-ca. Endpoints given as host:port are then reached with https.
    #[arg(long, requires_all = ["etcd", "etcd_tls_key", "etcd_tls_ca"])]
    etcd_tls_cert: Option<PathBuf>,
    /// The key of --etcd-tls-cert (PEM).
    #[arg(long, requires = "etcd_tls_cert")]
    etcd_tls_key: Option<PathBuf>,
    /// The CA that signs etcd's server certificate (PEM).
    #[arg(long, requires = "etcd_tls_cert")]
    etcd_tls_ca: Option<PathBuf>,
    /// The etcd key prefix.
    #[arg(long, default_value = "/replbd")]
    etcd_prefix: String,
    /// The etcd leader lease TTL: how fast a standby takes over from a dead controller.
    #[arg(long, default_value = "5s", value_parser = duration)]
    lease_ttl: Duration,
    /// This controller's id (default: HOSTNAME-PID).
    #[arg(long)]
    id: Option<String>,
    /// Re-place the replicas of a node offline longer than this (LINSTOR's auto-evict).
    #[arg(long, default_value = "60m", value_parser = duration)]
    auto_evict_after: Duration,
    /// TLS on the API: the controller's certificate (PEM); needs --tls-key and --tls-ca.
    #[arg(long, requires_all = ["tls_key", "tls_ca"])]
    tls_cert: Option<PathBuf>,
    /// TLS on the API: the private key.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// TLS on the API: the CA that signs the clients' certificates.
    #[arg(long, requires = "tls_cert")]
    tls_ca: Option<PathBuf>,
    /// TLS towards the agents: the controller's client certificate; needs --agent-tls-key and
    /// --agent-tls-ca.
    #[arg(long, requires_all = ["agent_tls_key", "agent_tls_ca"])]
    agent_tls_cert: Option<PathBuf>,
    /// TLS towards the agents: the client key.
    #[arg(long, requires = "agent_tls_cert")]
    agent_tls_key: Option<PathBuf>,
    /// TLS towards the agents: the CA that signs the agents' certificates.
    #[arg(long, requires = "agent_tls_cert")]
    agent_tls_ca: Option<PathBuf>,
    /// The name the agents' certificates are issued for (default: each node's address).
    #[arg(long)]
    agent_tls_server_name: Option<String>,
}

fn duration(s: &str) -> Result<Duration, String> {
    parse_duration(s).ok_or_else(|| format!("invalid duration {s:?}: use e.g. 90s, 5m, 1h"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("REPLBD_LOG").unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let store = match cli.etcd {
        Some(endpoints) => StoreChoice::Etcd {
            endpoints,
            prefix: cli.etcd_prefix.trim_end_matches('/').to_owned(),
            lease_ttl: cli.lease_ttl,
            tls: match (cli.etcd_tls_cert, cli.etcd_tls_key, cli.etcd_tls_ca) {
                (Some(cert), Some(key), Some(ca)) => Some(EtcdTls { cert, key, ca }),
                _ => None,
            },
        },
        None => StoreChoice::Sqlite(cli.db),
    };
    let tls = match (cli.tls_cert, cli.tls_key, cli.tls_ca) {
        (Some(cert), Some(key), Some(ca)) => Some(TlsFiles { cert, key, ca }),
        _ => None,
    };
    let agent_files = match (cli.agent_tls_cert, cli.agent_tls_key, cli.agent_tls_ca) {
        (Some(c), Some(k), Some(a)) => Some((c, k, a)),
        _ => None,
    };
    let id = cli.id.unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    });
    let opts = Options {
        listen: cli.listen,
        http: cli.http,
        store,
        tls,
        settings: Settings {
            auto_evict_after: cli.auto_evict_after,
            agent_tls: ClientTls {
                files: agent_files,
                server_name: cli.agent_tls_server_name,
            },
            id,
        },
        evict_period: Duration::from_secs(2),
    };
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    let stop = async {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    match rt.block_on(run(opts, stop)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "replbd-controller failed");
            eprintln!("replbd-controller: {e}");
            ExitCode::FAILURE
        }
    }
}
