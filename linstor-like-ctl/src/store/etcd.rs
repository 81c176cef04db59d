//! The etcd store and leader election, for highly available controllers.
//!
//! Several controllers share one etcd; the active one holds the key `PREFIX/leader` attached to
//! its lease (a few seconds' TTL, kept alive while the controller runs). A standby campaigns by
//! trying to create the key in a transaction ("create if absent") and retries until the holder's
//! lease expires — when the active controller dies, its key vanishes with its lease and the next
//! standby takes over within about one TTL.
//!
//! Every write of the active controller is one etcd transaction conditional on the leader key
//! still holding *its* lease: a controller that lost the lease (paused, partitioned) can never
//! overwrite the state its successor is writing ([`StoreError::NotLeader`]).
//!
//! Objects live under `PREFIX/objects/KIND/KEY`, error reports under `PREFIX/reports/ID`.
//! The client is replbd's own over etcd's gRPC API (`replbd_proto::etcd`): the published etcd
//! client crates need a system `protoc` to build.

use std::time::Duration;

use replbd_proto::etcd::compare::{CompareResult, CompareTarget, TargetUnion};
use replbd_proto::etcd::kv_client::KvClient;
use replbd_proto::etcd::lease_client::LeaseClient;
use replbd_proto::etcd::request_op::Request as Op;
use replbd_proto::etcd::{
    Compare, DeleteRangeRequest, LeaseGrantRequest, LeaseKeepAliveRequest, LeaseRevokeRequest, PutRequest,
    RangeRequest, RequestOp, TxnRequest,
};
use tokio::sync::watch;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tracing::{info, warn};

use super::StoreError;
use crate::cluster::Row;
use crate::reports::{ErrorReport, KEEP};

/// The smallest key greater than every key starting with `prefix`.
fn range_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// TLS towards etcd: the controller's client certificate and key, and the CA that signs etcd's
/// server certificate (PEM files; etcd's `--cert-file`, `--key-file`, `--trusted-ca-file` and
/// `--client-cert-auth` on its side).
#[derive(Clone, Debug)]
pub struct EtcdTls {
    /// Client certificate.
    pub cert: std::path::PathBuf,
    /// Its private key.
    pub key: std::path::PathBuf,
    /// The CA etcd's certificate must be signed by.
    pub ca: std::path::PathBuf,
}

impl EtcdTls {
    /// The rustls configuration, or which file could not be read.
    fn config(&self) -> Result<ClientTlsConfig, String> {
        let read = |what: &str, p: &std::path::Path| {
            std::fs::read(p).map_err(|e| format!("cannot read the etcd TLS {what} {}: {e}", p.display()))
        };
        Ok(ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read("CA", &self.ca)?))
            .identity(Identity::from_pem(
                read("certificate", &self.cert)?,
                read("key", &self.key)?,
            )))
    }
}

/// A connection to etcd.
#[derive(Clone)]
pub struct Etcd {
    endpoints: String,
    kv: KvClient<Channel>,
    lease: LeaseClient<Channel>,
}

impl Etcd {
    /// Connects to the first reachable of `endpoints` (comma separated `host:port` or URLs;
    /// `host:port` means `https://` with `tls`, else `http://`).
    pub async fn connect(endpoints: &str, tls: Option<&EtcdTls>) -> Result<Etcd, StoreError> {
        let fail = |message: String| StoreError::Etcd {
            endpoints: endpoints.to_owned(),
            message,
        };
        let tls = tls.map(EtcdTls::config).transpose().map_err(fail)?;
        let mut last = String::from("no endpoint given");
        for ep in endpoints.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let url = match (ep.contains("://"), &tls) {
                (true, _) => ep.to_owned(),
                (false, Some(_)) => format!("https://{ep}"),
                (false, None) => format!("http://{ep}"),
            };
            if url.starts_with("http://") && tls.is_some() {
                last = format!("{ep}: an http:// endpoint with the etcd TLS options (use https://)");
                continue;
            }
            if url.starts_with("https://") && tls.is_none() {
                last = format!(
                    "{ep}: an https:// endpoint needs --etcd-tls-cert, --etcd-tls-key and --etcd-tls-ca"
                );
                continue;
            }
            let endpoint = match Channel::from_shared(url) {
                Ok(e) => e.connect_timeout(Duration::from_secs(3)),
                Err(e) => {
                    last = format!("{ep}: {e}");
                    continue;
                }
            };
            let endpoint = match &tls {
                Some(cfg) => match endpoint.tls_config(cfg.clone()) {
                    Ok(e) => e,
                    Err(e) => {
                        last = format!("{ep}: TLS: {e}");
                        continue;
                    }
                },
                None => endpoint,
            };
            match endpoint.connect().await {
                Ok(ch) => {
                    return Ok(Etcd {
                        endpoints: endpoints.to_owned(),
                        kv: KvClient::new(ch.clone()),
                        lease: LeaseClient::new(ch),
                    });
                }
                Err(e) => {
                    let cause = std::error::Error::source(&e)
                        .map(|s| format!(": {s}"))
                        .unwrap_or_default();
                    last = format!("{ep}: {e}{cause}");
                }
            }
        }
        Err(fail(format!("cannot connect ({last})")))
    }

    fn err(&self, what: &str, e: impl std::fmt::Display) -> StoreError {
        StoreError::Etcd {
            endpoints: self.endpoints.clone(),
            message: format!("{what}: {e}"),
        }
    }

    /// Every key/value under `prefix`.
    async fn range(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let resp = self
            .kv
            .clone()
            .range(RangeRequest {
                key: prefix.as_bytes().to_vec(),
                range_end: range_end(prefix.as_bytes()),
                ..Default::default()
            })
            .await
            .map_err(|e| self.err("range", e.message()))?
            .into_inner();
        Ok(resp
            .kvs
            .into_iter()
            .map(|kv| (String::from_utf8_lossy(&kv.key).into_owned(), kv.value))
            .collect())
    }
}

/// Campaigning for and holding the leader key.
pub struct Election {
    etcd: Etcd,
    key: String,
    id: String,
    lease: i64,
    lost: watch::Receiver<bool>,
}

impl Election {
    /// Grants a lease of `ttl` and keeps it alive in the background.
    async fn lease(etcd: &Etcd, ttl: Duration) -> Result<(i64, watch::Receiver<bool>), StoreError> {
        let ttl_s = ttl.as_secs().max(2) as i64;
        let grant = etcd
            .lease
            .clone()
            .lease_grant(LeaseGrantRequest { ttl: ttl_s, id: 0 })
            .await
            .map_err(|e| etcd.err("lease grant", e.message()))?
            .into_inner();
        if !grant.error.is_empty() {
            return Err(etcd.err("lease grant", grant.error));
        }
        let lease = grant.id;
        let (lost_tx, lost) = watch::channel(false);
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let mut client = etcd.lease.clone();
        let period = Duration::from_millis((ttl_s as u64 * 1000) / 3);
        tokio::spawn(async move {
            // The first request goes out before the call: etcd answers the call only once it has
            // a request to answer.
            if tx.send(LeaseKeepAliveRequest { id: lease }).await.is_err() {
                return;
            }
            let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
            let call =
                tokio::time::timeout(Duration::from_secs(ttl_s as u64), client.lease_keep_alive(stream));
            let mut responses = match call.await {
                Ok(Ok(r)) => r.into_inner(),
                Ok(Err(e)) => {
                    warn!(lease, error = %e.message(), "etcd lease keep-alive could not start");
                    lost_tx.send_replace(true);
                    return;
                }
                Err(_) => {
                    warn!(lease, "etcd lease keep-alive did not start in time");
                    lost_tx.send_replace(true);
                    return;
                }
            };
            let mut first = true;
            loop {
                if !first && tx.send(LeaseKeepAliveRequest { id: lease }).await.is_err() {
                    break;
                }
                first = false;
                match tokio::time::timeout(Duration::from_secs(ttl_s as u64), responses.message()).await {
                    Ok(Ok(Some(r))) if r.ttl > 0 => {}
                    other => {
                        warn!(lease, result = ?other.map(|r| r.map(|m| m.map(|m| m.ttl))), "etcd lease lost");
                        lost_tx.send_replace(true);
                        break;
                    }
                }
                tokio::time::sleep(period).await;
            }
        });
        Ok((lease, lost))
    }

    /// Campaigns for leadership under `prefix` as `id`; returns once this controller is the
    /// leader. `on_wait` is told the current leader's id while waiting.
    pub async fn campaign(
        etcd: Etcd,
        prefix: &str,
        id: &str,
        ttl: Duration,
        on_wait: impl Fn(&str),
    ) -> Result<Election, StoreError> {
        let key = format!("{prefix}/leader");
        let (lease, lost) = Self::lease(&etcd, ttl).await?;
        loop {
            if *lost.borrow() {
                return Err(etcd.err("campaign", "the lease expired while waiting"));
            }
            let txn = TxnRequest {
                compare: vec![Compare {
                    result: CompareResult::Equal as i32,
                    target: CompareTarget::Create as i32,
                    key: key.as_bytes().to_vec(),
                    target_union: Some(TargetUnion::CreateRevision(0)),
                }],
                success: vec![RequestOp {
                    request: Some(Op::RequestPut(PutRequest {
                        key: key.as_bytes().to_vec(),
                        value: id.as_bytes().to_vec(),
                        lease,
                        prev_kv: false,
                    })),
                }],
                failure: vec![RequestOp {
                    request: Some(Op::RequestRange(RangeRequest {
                        key: key.as_bytes().to_vec(),
                        ..Default::default()
                    })),
                }],
            };
            let resp = etcd
                .kv
                .clone()
                .txn(txn)
                .await
                .map_err(|e| etcd.err("campaign", e.message()))?
                .into_inner();
            if resp.succeeded {
                info!(id, lease, key = %key, "became the active controller (etcd leader lease)");
                return Ok(Election {
                    etcd,
                    key,
                    id: id.to_owned(),
                    lease,
                    lost,
                });
            }
            let holder = resp
                .responses
                .first()
                .and_then(|r| match &r.response {
                    Some(replbd_proto::etcd::response_op::Response::ResponseRange(rr)) => rr.kvs.first(),
                    _ => None,
                })
                .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
                .unwrap_or_default();
            on_wait(&holder);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Becomes true when the lease is lost: this controller must stop acting as the leader.
    pub fn lost(&self) -> watch::Receiver<bool> {
        self.lost.clone()
    }

    /// This controller's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Gives up leadership (revokes the lease, so a standby takes over at once).
    pub async fn resign(&self) {
        let _ = self
            .etcd
            .lease
            .clone()
            .lease_revoke(LeaseRevokeRequest { id: self.lease })
            .await;
    }

    /// The condition every write of the leader carries: the leader key is on our lease.
    fn guard(&self) -> Compare {
        Compare {
            result: CompareResult::Equal as i32,
            target: CompareTarget::Lease as i32,
            key: self.key.as_bytes().to_vec(),
            target_union: Some(TargetUnion::Lease(self.lease)),
        }
    }
}

/// The etcd store of the active controller.
pub struct EtcdStore {
    election: Election,
    prefix: String,
}

impl EtcdStore {
    /// The store of the leader `election` under `prefix`.
    pub fn new(election: Election, prefix: &str) -> EtcdStore {
        EtcdStore {
            election,
            prefix: prefix.to_owned(),
        }
    }

    /// The etcd endpoints.
    pub fn endpoints(&self) -> &str {
        &self.election.etcd.endpoints
    }

    /// The election this store writes under.
    pub fn election(&self) -> &Election {
        &self.election
    }

    fn objects(&self) -> String {
        format!("{}/objects/", self.prefix)
    }

    fn reports_prefix(&self) -> String {
        format!("{}/reports/", self.prefix)
    }

    /// Every stored object.
    pub async fn load(&self) -> Result<Vec<Row>, StoreError> {
        let base = self.objects();
        let kvs = self.election.etcd.range(&base).await?;
        Ok(kvs
            .into_iter()
            .filter_map(|(k, v)| {
                let rest = k.strip_prefix(&base)?;
                let (kind, key) = rest.split_once('/')?;
                Some(Row {
                    kind: kind.to_owned(),
                    key: key.to_owned(),
                    value: Some(String::from_utf8_lossy(&v).into_owned()),
                })
            })
            .collect())
    }

    async fn guarded(&self, ops: Vec<RequestOp>) -> Result<(), StoreError> {
        let etcd = &self.election.etcd;
        let resp = etcd
            .kv
            .clone()
            .txn(TxnRequest {
                compare: vec![self.election.guard()],
                success: ops,
                failure: Vec::new(),
            })
            .await
            .map_err(|e| etcd.err("write", e.message()))?
            .into_inner();
        if resp.succeeded {
            Ok(())
        } else {
            Err(StoreError::NotLeader)
        }
    }

    /// Persists `rows` in one transaction, if this controller is still the leader.
    pub async fn commit(&self, rows: &[Row]) -> Result<(), StoreError> {
        let base = self.objects();
        let ops = rows
            .iter()
            .map(|r| {
                let key = format!("{base}{}/{}", r.kind, r.key).into_bytes();
                RequestOp {
                    request: Some(match &r.value {
                        Some(v) => Op::RequestPut(PutRequest {
                            key,
                            value: v.clone().into_bytes(),
                            lease: 0,
                            prev_kv: false,
                        }),
                        None => Op::RequestDeleteRange(DeleteRangeRequest {
                            key,
                            range_end: Vec::new(),
                            prev_kv: false,
                        }),
                    }),
                }
            })
            .collect();
        self.guarded(ops).await
    }

    /// Adds an error report, dropping the oldest beyond [`KEEP`].
    pub async fn add_report(&self, report: &ErrorReport) -> Result<(), StoreError> {
        let value = serde_json::to_vec(report).map_err(StoreError::BadReport)?;
        let mut ops = vec![RequestOp {
            request: Some(Op::RequestPut(PutRequest {
                key: format!("{}{}", self.reports_prefix(), report.id).into_bytes(),
                value,
                lease: 0,
                prev_kv: false,
            })),
        }];
        let existing = self.reports().await?;
        if existing.len() >= KEEP {
            for old in &existing[..existing.len() + 1 - KEEP] {
                ops.push(RequestOp {
                    request: Some(Op::RequestDeleteRange(DeleteRangeRequest {
                        key: format!("{}{}", self.reports_prefix(), old.id).into_bytes(),
                        range_end: Vec::new(),
                        prev_kv: false,
                    })),
                });
            }
        }
        self.guarded(ops).await
    }

    /// Every error report, oldest first.
    pub async fn reports(&self) -> Result<Vec<ErrorReport>, StoreError> {
        let kvs = self.election.etcd.range(&self.reports_prefix()).await?;
        let mut out = kvs
            .into_iter()
            .map(|(_, v)| serde_json::from_slice::<ErrorReport>(&v).map_err(StoreError::BadReport))
            .collect::<Result<Vec<_>, _>>()?;
        out.sort_by(|a, b| a.time.cmp(&b.time).then_with(|| a.id.cmp(&b.id)));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_ends() {
        assert_eq!(range_end(b"/a/"), b"/a0".to_vec());
        assert_eq!(range_end(b"a\xff"), b"b".to_vec());
    }
}
