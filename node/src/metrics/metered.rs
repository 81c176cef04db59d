//! A [`BlockVolume`] wrapper that measures the I/O a front end sends to a volume: requests, bytes,
//! errors and latency per kind of request, and requests in flight.
//!
//! The front end serves the wrapper instead of the engine's resource, so the metrics describe
//! exactly what applications asked for and how long they waited, whatever the engine does
//! underneath. The metric handles are looked up once, when the meter is made, so counting a
//! request touches only atomics.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use replbd_replication::{BlockVolume, VolumeResult, WriteFlags};

use super::{IoFamilies, IoLabels, Op, VolumeLabels};

/// The metrics of one kind of request.
#[derive(Clone)]
struct OpMeter {
    requests: Counter,
    bytes: Counter,
    errors: Counter,
    latency: Histogram,
}

/// The I/O metrics of one volume.
#[derive(Clone)]
pub struct IoMeter {
    ops: [OpMeter; 5],
    in_flight: Gauge,
}

/// Decrements the in-flight gauge when a request ends, also when its future is dropped.
struct InFlight<'a>(&'a Gauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl IoMeter {
    pub(super) fn new(f: &IoFamilies, resource: &str, volume: u32) -> IoMeter {
        let op = |op: Op| {
            let l = IoLabels {
                resource: resource.to_owned(),
                volume,
                op,
            };
            OpMeter {
                requests: f.requests.get_or_create_owned(&l),
                bytes: f.bytes.get_or_create_owned(&l),
                errors: f.errors.get_or_create_owned(&l),
                latency: f.latency.get_or_create_owned(&l),
            }
        };
        IoMeter {
            ops: Op::ALL.map(op),
            in_flight: f.in_flight.get_or_create_owned(&VolumeLabels {
                resource: resource.to_owned(),
                volume,
            }),
        }
    }

    /// Runs `request` of kind `op` moving `bytes`, counting it.
    async fn measure<T>(
        &self,
        op: Op,
        bytes: u64,
        request: impl Future<Output = VolumeResult<T>>,
    ) -> VolumeResult<T> {
        let m = &self.ops[op as usize];
        self.in_flight.inc();
        let _guard = InFlight(&self.in_flight);
        let start = Instant::now();
        let result = request.await;
        m.latency.observe(start.elapsed().as_secs_f64());
        m.requests.inc();
        match &result {
            Ok(_) => {
                m.bytes.inc_by(bytes);
            }
            Err(_) => {
                m.errors.inc();
            }
        }
        result
    }
}

/// A volume whose I/O is measured by an [`IoMeter`].
pub struct MeteredVolume<V> {
    inner: Arc<V>,
    meter: IoMeter,
}

impl<V> MeteredVolume<V> {
    /// Measures `inner` with `meter`.
    pub fn new(inner: Arc<V>, meter: IoMeter) -> MeteredVolume<V> {
        MeteredVolume { inner, meter }
    }

    /// The measured volume.
    pub fn inner(&self) -> &Arc<V> {
        &self.inner
    }
}

impl<V: BlockVolume> BlockVolume for MeteredVolume<V> {
    fn size(&self) -> u64 {
        self.inner.size()
    }

    async fn read(&self, offset: u64, len: u32) -> VolumeResult<Bytes> {
        self.meter
            .measure(Op::read, u64::from(len), self.inner.read(offset, len))
            .await
    }

    async fn write(&self, offset: u64, data: Bytes, flags: WriteFlags) -> VolumeResult<()> {
        let len = data.len() as u64;
        self.meter
            .measure(Op::write, len, self.inner.write(offset, data, flags))
            .await
    }

    async fn flush(&self) -> VolumeResult<()> {
        self.meter.measure(Op::flush, 0, self.inner.flush()).await
    }

    async fn discard(&self, offset: u64, len: u64) -> VolumeResult<()> {
        self.meter
            .measure(Op::discard, len, self.inner.discard(offset, len))
            .await
    }

    async fn write_zeroes(&self, offset: u64, len: u64, flags: WriteFlags) -> VolumeResult<()> {
        self.meter
            .measure(Op::write_zeroes, len, self.inner.write_zeroes(offset, len, flags))
            .await
    }
}

#[cfg(test)]
mod tests {
    use replbd_replication::MemVolume;

    use super::super::Metrics;
    use super::*;

    #[tokio::test]
    async fn requests_bytes_errors_and_latency_are_counted() {
        let metrics = Metrics::new("alpha");
        let v = MeteredVolume::new(Arc::new(MemVolume::new(1 << 20)), metrics.io_meter("r0", 0));
        v.write(0, Bytes::from(vec![1u8; 8192]), WriteFlags::default())
            .await
            .unwrap();
        v.read(0, 4096).await.unwrap();
        v.flush().await.unwrap();
        assert!(v.read(1 << 20, 4096).await.is_err());
        let text = metrics.encode().unwrap();
        for line in [
            "replbd_io_requests_total{resource=\"r0\",volume=\"0\",op=\"write\"} 1",
            "replbd_io_bytes_total{resource=\"r0\",volume=\"0\",op=\"write\"} 8192",
            "replbd_io_requests_total{resource=\"r0\",volume=\"0\",op=\"read\"} 2",
            "replbd_io_bytes_total{resource=\"r0\",volume=\"0\",op=\"read\"} 4096",
            "replbd_io_errors_total{resource=\"r0\",volume=\"0\",op=\"read\"} 1",
            "replbd_io_requests_total{resource=\"r0\",volume=\"0\",op=\"flush\"} 1",
            "replbd_io_latency_seconds_count{resource=\"r0\",volume=\"0\",op=\"write\"} 1",
            "replbd_io_in_flight{resource=\"r0\",volume=\"0\"} 0",
            "replbd_node_info{node=\"alpha\",version=\"0.1.0\"} 1",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
    }
}
