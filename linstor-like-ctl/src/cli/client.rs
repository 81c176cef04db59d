//! Finding the active controller: the `--controllers` list is tried in order; a controller that
//! cannot be reached, or answers that it is a standby, is skipped.

use std::path::PathBuf;
use std::time::Duration;

use replbd_proto::controller::Empty;
use replbd_proto::controller::controller_client::ControllerClient;
use thiserror::Error;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// Why no controller could be used.
#[derive(Debug, Error)]
pub enum ConnectError {
    /// None answered as the active controller.
    #[error(
        "no active controller at {tried}: {reasons} (is replbd-controller running? set --controllers or REPLBD_CONTROLLERS)"
    )]
    NoController {
        /// The addresses tried.
        tried: String,
        /// Why each failed.
        reasons: String,
    },
    /// A TLS file cannot be read.
    #[error("TLS: cannot read {path}: {source}")]
    Tls {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// TLS settings of the CLI.
#[derive(Clone, Debug, Default)]
pub struct Tls {
    /// Certificate, key and CA.
    pub files: Option<(PathBuf, PathBuf, PathBuf)>,
    /// The server name to verify.
    pub server_name: Option<String>,
}

fn read(p: &PathBuf) -> Result<Vec<u8>, ConnectError> {
    std::fs::read(p).map_err(|source| ConnectError::Tls {
        path: p.display().to_string(),
        source,
    })
}

/// Connects to the first active controller of `controllers` (comma separated HOST[:PORT]).
pub async fn connect(controllers: &str, tls: &Tls) -> Result<ControllerClient<Channel>, ConnectError> {
    let mut reasons = Vec::new();
    for c in controllers.split(',').map(str::trim).filter(|c| !c.is_empty()) {
        let hostport = if c.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
            c.to_owned()
        } else {
            format!("{c}:{}", replbd_proto::DEFAULT_CONTROLLER_PORT)
        };
        let host = hostport
            .rsplit_once(':')
            .map_or(hostport.as_str(), |(h, _)| h)
            .to_owned();
        let scheme = if tls.files.is_some() { "https" } else { "http" };
        let mut endpoint = match Channel::from_shared(format!("{scheme}://{hostport}")) {
            Ok(e) => e
                .connect_timeout(Duration::from_secs(3))
                .timeout(Duration::from_secs(600)),
            Err(e) => {
                reasons.push(format!("{c}: {e}"));
                continue;
            }
        };
        if let Some((cert, key, ca)) = &tls.files {
            let cfg = ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(read(ca)?))
                .identity(Identity::from_pem(read(cert)?, read(key)?))
                .domain_name(tls.server_name.clone().unwrap_or(host));
            endpoint = match endpoint.tls_config(cfg) {
                Ok(e) => e,
                Err(e) => {
                    reasons.push(format!("{c}: TLS: {e}"));
                    continue;
                }
            };
        }
        let channel = match endpoint.connect().await {
            Ok(ch) => ch,
            Err(e) => {
                let cause = std::error::Error::source(&e)
                    .map(ToString::to_string)
                    .unwrap_or_default();
                reasons.push(format!("{c}: {e} ({cause})"));
                continue;
            }
        };
        let mut client = ControllerClient::new(channel);
        match client.version(Empty {}).await {
            Ok(_) => return Ok(client),
            Err(s) => reasons.push(format!("{c}: {}", s.message())),
        }
    }
    Err(ConnectError::NoController {
        tried: controllers.to_owned(),
        reasons: reasons.join("; "),
    })
}
