//! TLS on replication connections (rustls, mutual authentication).
//!
//! The shared secret proves a node belongs to the resource; it does not hide the data, which
//! crosses the network in the clear. With TLS every connection is encrypted and both ends show a
//! certificate signed by the cluster's CA: the connecting node checks that the listening one's
//! certificate names the peer it meant to reach (its node name as a DNS name, or, when the name is
//! not a valid DNS name, its replication IP address), and the listening node refuses a client
//! without a certificate from that CA. The secret's challenge–response still runs inside the TLS
//! session, so a certificate alone does not admit a node to a resource.
//!
//! Both ends of a connection must agree: a node with TLS cannot talk to one without, and the
//! failed handshake is logged on both sides with what to check.

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// The reading half of a peer connection (plain TCP or TLS).
pub type PeerRead = Box<dyn AsyncRead + Unpin + Send>;
/// The writing half of a peer connection (plain TCP or TLS).
pub type PeerWrite = Box<dyn AsyncWrite + Unpin + Send>;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{what} {path}: {message}")]
    File {
        /// Which file (certificate, key, CA).
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The certificates and key do not form a usable configuration.
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// This node's TLS identity and trust, ready for both directions of a connection.
#[derive(Clone)]
pub struct PeerTls {
    acceptor: TlsAcceptor,
    connector: TlsConnector,
}

impl fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PeerTls")
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn config_error(e: impl fmt::Display) -> TlsError {
    TlsError::Config(e.to_string())
}

impl PeerTls {
    /// From PEM files: this node's certificate chain, its private key, and the CA certificates
    /// peers' certificates must be signed by.
    pub fn from_pem_files(certificate: &Path, key: &Path, ca: &Path) -> Result<PeerTls, TlsError> {
        let file_error = |what, path: &Path, message: String| TlsError::File {
            what,
            path: path.to_path_buf(),
            message,
        };
        let certs = |what, path: &Path| -> Result<Vec<CertificateDer<'static>>, TlsError> {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| file_error(what, path, e.to_string()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| file_error(what, path, e.to_string()))?;
            if certs.is_empty() {
                return Err(file_error(what, path, "no PEM certificate in the file".into()));
            }
            Ok(certs)
        };
        let chain = certs("tls-certificate", certificate)?;
        let ca_certs = certs("tls-ca", ca)?;
        let key = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| file_error("tls-key", key, format!("no usable PEM private key: {e}")))?;
        PeerTls::new(chain, key, ca_certs)
    }

    /// From DER: this node's certificate chain and key, and the CA certificates to trust.
    pub fn new(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        ca: Vec<CertificateDer<'static>>,
    ) -> Result<PeerTls, TlsError> {
        let mut roots = RootCertStore::empty();
        for c in ca {
            roots.add(c).map_err(config_error)?;
        }
        let roots = Arc::new(roots);
        let clients = WebPkiClientVerifier::builder_with_provider(Arc::clone(&roots), provider())
            .build()
            .map_err(config_error)?;
        let server = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(config_error)?
            .with_client_cert_verifier(clients)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|e| TlsError::Config(format!("this node's certificate and key do not match: {e}")))?;
        let client = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(config_error)?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(config_error)?;
        Ok(PeerTls {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            connector: TlsConnector::from(Arc::new(client)),
        })
    }
}

fn plain(stream: TcpStream) -> (PeerRead, PeerWrite) {
    let (r, w) = stream.into_split();
    (Box::new(r), Box::new(w))
}

/// The name a peer's certificate must carry: its node name, or its IP address when the name is
/// not a DNS name.
fn server_name(node_name: &str, ip: IpAddr) -> ServerName<'static> {
    ServerName::try_from(node_name.to_owned()).unwrap_or_else(|_| ServerName::IpAddress(ip.into()))
}

/// The connecting side: plain, or a TLS session with the peer named `node_name` at `ip`.
pub(crate) async fn connect(
    tls: Option<&PeerTls>,
    stream: TcpStream,
    node_name: &str,
    ip: IpAddr,
) -> io::Result<(PeerRead, PeerWrite)> {
    let Some(tls) = tls else {
        return Ok(plain(stream));
    };
    let session = tls.connector.connect(server_name(node_name, ip), stream).await?;
    let (r, w) = tokio::io::split(session);
    Ok((Box::new(r), Box::new(w)))
}

/// The listening side: plain, or a TLS session with a client certificate from the CA.
pub(crate) async fn accept(tls: Option<&PeerTls>, stream: TcpStream) -> io::Result<(PeerRead, PeerWrite)> {
    let Some(tls) = tls else {
        return Ok(plain(stream));
    };
    let session = tls.acceptor.accept(stream).await?;
    let (r, w) = tokio::io::split(session);
    Ok((Box::new(r), Box::new(w)))
}
