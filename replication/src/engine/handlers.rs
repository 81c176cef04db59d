//! Running the administrator's handler commands (DRBD's `handlers` section): `fence-peer`,
//! `unfence-peer` ([`super::fencing`]), `quorum-lost` (a Primary lost quorum) and
//! `pri-lost-after-sb` (a Primary lost a split-brain resolution).
//!
//! Each runs with `sh -c` and the environment DRBD's handlers get, under replbd's names and
//! DRBD's: `REPLBD_RESOURCE`/`DRBD_RESOURCE`, and when the event concerns a peer `REPLBD_PEER` (its
//! node name), `REPLBD_PEER_NODE_ID`/`DRBD_PEER_NODE_ID` and `REPLBD_PEER_ADDRESS`. So existing
//! scripts work unchanged.

use super::core::Inner;

impl Inner {
    /// `command` with the handler environment (for `peer`, if the event concerns one).
    fn handler_command(&self, command: &str, peer: Option<u8>) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new("sh");
        cmd.arg("-c")
            .arg(command)
            .env("REPLBD_RESOURCE", &self.cfg.name)
            .env("DRBD_RESOURCE", &self.cfg.name);
        if let Some(node) = peer {
            let address = self
                .peer(node)
                .map(|p| p.cfg.address.to_string())
                .unwrap_or_default();
            cmd.env("REPLBD_PEER", self.node_name(node))
                .env("REPLBD_PEER_NODE_ID", node.to_string())
                .env("REPLBD_PEER_ADDRESS", &address)
                .env("DRBD_PEER_NODE_ID", node.to_string());
        }
        cmd
    }

    /// Runs `command` (for `peer`, if the event concerns one) with the handler environment; its
    /// exit code, or `None` when it could not run (none configured, spawn failure, killed by a
    /// signal).
    pub(crate) async fn run_handler(
        &self,
        command: Option<&str>,
        peer: Option<u8>,
        what: &str,
    ) -> Option<i32> {
        let Some(command) = command else {
            tracing::error!(resource = %self.cfg.name, peer, "no {what} handler is configured");
            return None;
        };
        let status = self.handler_command(command, peer).status().await;
        log_exit(&self.cfg.name, peer, what, command, status)
    }

    /// Starts an optional notification handler in the background (nothing waits for its answer).
    pub(crate) fn notify_handler(&self, command: Option<&String>, peer: Option<u8>, what: &'static str) {
        let (Some(command), Ok(rt)) = (command, tokio::runtime::Handle::try_current()) else {
            return;
        };
        let mut cmd = self.handler_command(command, peer);
        let (name, command) = (self.cfg.name.clone(), command.clone());
        rt.spawn(async move {
            let status = cmd.status().await;
            log_exit(&name, peer, what, &command, status);
        });
    }
}

fn log_exit(
    resource: &str,
    peer: Option<u8>,
    what: &str,
    command: &str,
    status: std::io::Result<std::process::ExitStatus>,
) -> Option<i32> {
    match status {
        Ok(s) if s.code().is_some() => {
            tracing::info!(resource, peer, exit_code = s.code(), "the {what} handler ran");
            s.code()
        }
        Ok(s) => {
            tracing::error!(resource, peer, status = %s, "the {what} handler was killed");
            None
        }
        Err(e) => {
            tracing::error!(resource, peer, command, error = %e, "cannot run the {what} handler");
            None
        }
    }
}
