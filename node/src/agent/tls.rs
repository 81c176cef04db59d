//! TLS with client certificates for the agent's gRPC port: the agent presents its certificate and
//! accepts only clients (controllers) whose certificate is signed by the given CA.

use std::path::PathBuf;

use tonic::transport::{Certificate, Identity, ServerTlsConfig};

/// The PEM files of a TLS setup.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// This side's certificate chain.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// The CA the other side's certificate must be signed by.
    pub ca: PathBuf,
}

fn read(what: &str, p: &PathBuf) -> Result<Vec<u8>, String> {
    std::fs::read(p).map_err(|e| format!("cannot read the TLS {what} {}: {e}", p.display()))
}

impl TlsFiles {
    /// The server configuration: our identity, clients verified against the CA.
    pub fn server(&self) -> Result<ServerTlsConfig, String> {
        let identity = Identity::from_pem(read("certificate", &self.cert)?, read("key", &self.key)?);
        Ok(ServerTlsConfig::new()
            .identity(identity)
            .client_ca_root(Certificate::from_pem(read("CA", &self.ca)?)))
    }
}
