//! What each command does: the daemon runs in-process; every other command is one request to the
//! daemon's admin socket and prints its answer.

use std::io::Write;
use std::path::Path;

use replbd_node::admin::client::{AdminClient, ClientError};
use replbd_node::admin::protocol::{Reply, Request};
use replbd_node::admin::render::status_text;
use replbd_node::config;
use replbd_node::daemon::run::{AgentOptions, DaemonOptions, Exit, run as run_daemon};

use crate::cli::{Cli, Command};

/// A failed command: the message and the exit status.
pub struct Failure {
    pub message: String,
    pub code: u8,
}

impl Failure {
    fn new(message: impl ToString) -> Failure {
        Failure {
            message: message.to_string(),
            code: 1,
        }
    }
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Failure {
        let code = if matches!(e, ClientError::Unreachable { .. }) {
            3
        } else {
            1
        };
        Failure {
            message: e.to_string(),
            code,
        }
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Failure {
        Failure::new(e)
    }
}

/// Runs the command line.
pub fn run(cli: Cli) -> Result<(), Failure> {
    let socket = cli.admin_socket;
    let request = match cli.command {
        Command::Daemon {
            config,
            metrics,
            up_all,
            agent,
            node_name,
            state_dir,
            agent_tls_cert,
            agent_tls_key,
            agent_tls_ca,
        } => {
            let tls = match (agent_tls_cert, agent_tls_key, agent_tls_ca) {
                (Some(cert), Some(key), Some(ca)) => {
                    Some(replbd_node::agent::tls::TlsFiles { cert, key, ca })
                }
                _ => None,
            };
            return daemon(DaemonOptions {
                config,
                admin_socket: socket,
                metrics,
                up_all,
                agent: agent.map(|listen| AgentOptions {
                    listen,
                    node_name,
                    state_dir,
                    tls,
                }),
            });
        }
        Command::CheckConfig { config } => return check_config(&config),
        Command::Status { resource, json } => return status(&socket, resource, json),
        Command::Events { json } => return events(&socket, json),
        Command::Up { resource } => Request::Up { resource },
        Command::Down { resource } => Request::Down { resource },
        Command::Primary { resource, force } => Request::Primary { resource, force },
        Command::Secondary { resource } => Request::Secondary { resource },
        Command::Connect {
            resource,
            peer,
            discard_my_data,
        } => Request::Connect {
            resource,
            peer,
            discard_my_data,
        },
        Command::Disconnect { resource, peer } => Request::Disconnect { resource, peer },
        Command::Verify { resource } => Request::Verify { resource },
        Command::Invalidate { resource } => Request::Invalidate { resource },
        Command::Adjust { resource } => Request::Adjust { resource },
        Command::ResumeIo { resource } => Request::ResumeIo { resource },
        Command::Outdate { resource } => Request::Outdate { resource },
        Command::InvalidateRemote { resource, peer } => Request::InvalidateRemote { resource, peer },
        Command::NewCurrentUuid {
            resource,
            clear_bitmap,
            uuid,
        } => Request::NewCurrentUuid {
            resource,
            clear_bitmap,
            uuid,
        },
    };
    let reply = AdminClient::connect(&socket)?.request(&request)?;
    let mut out = std::io::stdout().lock();
    match reply {
        Reply::Done { message } => writeln!(out, "{message}")?,
        other => writeln!(out, "{}", serde_json::to_string(&other).unwrap_or_default())?,
    }
    Ok(())
}

fn daemon(opts: DaemonOptions) -> Result<(), Failure> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("replbd-node")
        .build()
        .map_err(|e| Failure::new(format!("cannot start the runtime: {e}")))?;
    match runtime.block_on(run_daemon(opts)).map_err(Failure::new)? {
        Exit::Stopped => Ok(()),
        // End the process here, before the runtime is dropped (see `Exit::Detached`).
        Exit::Detached => std::process::exit(DETACHED_EXIT_STATUS),
    }
}

/// Exit status after SIGUSR1: not 0, so that a service manager configured to restart on it
/// (systemd's `RestartForceExitStatus=75`) starts the next daemon at once.
pub const DETACHED_EXIT_STATUS: i32 = 75;

fn check_config(path: &Path) -> Result<(), Failure> {
    let c = config::load(path).map_err(|e| Failure::new(format!("the configuration is invalid:\n{e}")))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}: valid; this node is {}", path.display(), c.this_node)?;
    for r in &c.resources {
        let peers: Vec<String> = r
            .peers
            .iter()
            .map(|p| {
                format!(
                    "{} (id {}, {}, protocol {})",
                    p.node.name, p.node.id, p.node.address, p.options.protocol
                )
            })
            .collect();
        writeln!(
            out,
            "  {}: node id {}, listens on {}, {}, front end {}\n    peers: {}",
            r.name,
            r.this.id,
            r.this.address,
            match &r.volume.disk {
                Some(d) => format!("disk {}", d.display()),
                None => "diskless".to_owned(),
            },
            r.front_end,
            if peers.is_empty() {
                "none".to_owned()
            } else {
                peers.join(", ")
            }
        )?;
    }
    Ok(())
}

fn status(socket: &Path, resource: Option<String>, json: bool) -> Result<(), Failure> {
    let reply = AdminClient::connect(socket)?.request(&Request::Status { resource })?;
    let Reply::Status { resources } = reply else {
        return Err(Failure::new("the daemon answered status with something else"));
    };
    let mut out = std::io::stdout().lock();
    if json {
        let text = serde_json::to_string_pretty(&resources).map_err(Failure::new)?;
        writeln!(out, "{text}")?;
    } else {
        write!(out, "{}", status_text(&resources))?;
    }
    Ok(())
}

fn events(socket: &Path, json: bool) -> Result<(), Failure> {
    let mut client = AdminClient::connect(socket)?;
    let mut out = std::io::stdout().lock();
    let mut failed = None;
    client.events(|event| {
        let line = if json {
            serde_json::to_string(event).unwrap_or_default()
        } else {
            event.to_string()
        };
        // A closed stdout (e.g. `| head`) ends the stream.
        match writeln!(out, "{line}").and_then(|()| out.flush()) {
            Ok(()) => true,
            Err(e) => {
                failed = Some(e);
                false
            }
        }
    })?;
    match failed {
        Some(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}
