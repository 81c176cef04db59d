//! Executing one validated request on the volume.
//!
//! Requests reach here only after [`super::request::parse_request`] accepted them, so ranges are
//! inside the export and aligned. What can still go wrong is the volume's business: its errors are
//! mapped to NBD error values and logged. A read whose buffer has the wrong length is refused with
//! `EIO` instead of being sent, because a short payload would put the client's stream out of step.
//! A panic inside a volume implementation is caught and answered with `EIO`, so a bug there costs
//! one failed request instead of a client waiting forever for a reply.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use replbd_replication::{BlockVolume, VolumeError, WriteFlags};
use tracing::{error, warn};

use crate::nbd::errno::NbdErrno;
use crate::nbd::request::Request;

/// Outcome of one request: data for a successful read, nothing for other successes, or the error to
/// reply.
pub(crate) type Outcome = Result<Option<Bytes>, NbdErrno>;

/// Executes `request` (with its write payload) on `volume`.
pub(crate) async fn execute<V: BlockVolume>(volume: &V, request: Request, payload: Bytes) -> Outcome {
    let result = CatchPanic(Box::pin(run(volume, request, payload))).await;
    match result {
        Ok(Ok(data)) => Ok(data),
        Ok(Err(OpError::Volume(e))) => {
            let errno = NbdErrno::from_volume_error(&e);
            warn!(command = %request.command(), ?request, %errno, error = %e, "volume refused NBD request");
            Err(errno)
        }
        Ok(Err(OpError::ShortRead { expected, got })) => {
            error!(
                ?request,
                expected, got, "volume returned a read buffer of the wrong length"
            );
            Err(NbdErrno::Io)
        }
        Err(Panicked) => {
            error!(?request, "volume panicked while serving an NBD request");
            Err(NbdErrno::Io)
        }
    }
}

enum OpError {
    Volume(VolumeError),
    ShortRead { expected: usize, got: usize },
}

impl From<VolumeError> for OpError {
    fn from(e: VolumeError) -> OpError {
        OpError::Volume(e)
    }
}

async fn run<V: BlockVolume>(volume: &V, request: Request, payload: Bytes) -> Result<Option<Bytes>, OpError> {
    match request {
        Request::Read { offset, len } => {
            let data = volume.read(offset, len).await?;
            if data.len() != len as usize {
                return Err(OpError::ShortRead {
                    expected: len as usize,
                    got: data.len(),
                });
            }
            return Ok(Some(data));
        }
        Request::Write { offset, fua, .. } => volume.write(offset, payload, WriteFlags { fua }).await?,
        Request::Flush => volume.flush().await?,
        Request::Trim { offset, len, fua } => {
            volume.discard(offset, u64::from(len)).await?;
            // A discard has no FUA of its own in the volume interface: make it durable explicitly.
            if fua {
                volume.flush().await?;
            }
        }
        Request::WriteZeroes { offset, len, fua } => {
            volume
                .write_zeroes(offset, u64::from(len), WriteFlags { fua })
                .await?
        }
        // Handled by the transmission loop; never executed.
        Request::Disconnect => {}
    }
    Ok(None)
}

struct Panicked;

/// Polls a future, turning a panic during a poll into `Err(Panicked)`.
struct CatchPanic<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchPanic<F> {
    type Output = Result<F::Output, Panicked>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.0.as_mut();
        // The future is dropped right after a panic and never polled again, so no broken state
        // it might hold is observed.
        match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(_) => Poll::Ready(Err(Panicked)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use replbd_replication::{MemVolume, VolumeResult};

    struct Panicky;

    impl BlockVolume for Panicky {
        fn size(&self) -> u64 {
            1 << 20
        }
        async fn read(&self, _: u64, _: u32) -> VolumeResult<Bytes> {
            panic!("volume bug")
        }
        async fn write(&self, _: u64, _: Bytes, _: WriteFlags) -> VolumeResult<()> {
            Ok(())
        }
        async fn flush(&self) -> VolumeResult<()> {
            Ok(())
        }
        async fn discard(&self, _: u64, _: u64) -> VolumeResult<()> {
            Ok(())
        }
        async fn write_zeroes(&self, _: u64, _: u64, _: WriteFlags) -> VolumeResult<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn panics_become_eio_and_fua_trim_flushes() {
        let read = Request::Read { offset: 0, len: 512 };
        assert_eq!(execute(&Panicky, read, Bytes::new()).await, Err(NbdErrno::Io));
        let mem = MemVolume::new(1 << 20);
        let trim = Request::Trim {
            offset: 0,
            len: 4096,
            fua: true,
        };
        assert_eq!(execute(&mem, trim, Bytes::new()).await, Ok(None));
        assert_eq!((mem.counters().discards, mem.counters().flushes), (1, 1));
    }
}
