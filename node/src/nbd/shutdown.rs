//! Graceful shutdown: one handle that triggers it, any number of signals that observe it.
//!
//! A `tokio::sync::watch` channel rather than a one-shot, because the listener and every connection
//! each wait for it, and a connection started after the trigger must see it at once.

use std::sync::Arc;

use tokio::sync::watch;

/// Triggers a graceful shutdown: the server stops accepting, connections stop reading new requests,
/// in-flight requests finish and are answered, then connections close. Cloning shares the trigger.
#[derive(Clone, Debug)]
pub struct ShutdownHandle {
    tx: Arc<watch::Sender<bool>>,
}

impl Default for ShutdownHandle {
    fn default() -> ShutdownHandle {
        ShutdownHandle::new()
    }
}

impl ShutdownHandle {
    /// A handle that has not been triggered.
    pub fn new() -> ShutdownHandle {
        ShutdownHandle {
            tx: Arc::new(watch::channel(false).0),
        }
    }

    /// Starts the shutdown. Idempotent.
    pub fn shutdown(&self) {
        self.tx.send_replace(true);
    }

    /// Whether the shutdown was triggered.
    pub fn is_shutdown(&self) -> bool {
        *self.tx.borrow()
    }

    /// A signal that observes this handle.
    pub fn signal(&self) -> ShutdownSignal {
        ShutdownSignal {
            rx: self.tx.subscribe(),
        }
    }
}

/// Observes a [`ShutdownHandle`].
#[derive(Clone, Debug)]
pub struct ShutdownSignal {
    rx: watch::Receiver<bool>,
}

impl ShutdownSignal {
    /// Waits until the shutdown is triggered (returns at once if it already was). If every handle
    /// is dropped without triggering, it waits forever. Cancel-safe.
    pub async fn wait(&mut self) {
        if self.rx.wait_for(|triggered| *triggered).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Whether the shutdown was triggered.
    pub fn is_shutdown(&self) -> bool {
        *self.rx.borrow()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn signals_see_the_trigger_even_when_created_after_it() {
        let handle = ShutdownHandle::new();
        let mut early = handle.signal();
        assert!(!early.is_shutdown());
        handle.shutdown();
        early.wait().await;
        let mut late = handle.signal();
        late.wait().await;
        assert!(late.is_shutdown() && handle.is_shutdown());
    }
}
