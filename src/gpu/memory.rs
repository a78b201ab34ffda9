//! What kiln holds on a device: every buffer it creates carries a lease on the device's
//! ledger, returned when the last handle to the buffer is dropped (when wgpu frees it too).
//! The ledger gives the bytes in use and their peak, and enforces an optional limit: an
//! allocation past it is [`Error::OutOfMemory`], as a driver's own out-of-memory is.

use crate::error::{Error, Result};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes in buffers kiln created on one device and has not yet dropped.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    in_use: AtomicU64,
    peak: AtomicU64,
    limit: Option<u64>,
}

impl Ledger {
    pub(crate) fn new(limit: Option<u64>) -> Arc<Ledger> {
        Arc::new(Ledger {
            limit,
            ..Default::default()
        })
    }

    pub(crate) fn in_use(&self) -> u64 {
        self.in_use.load(Ordering::Relaxed)
    }
    pub(crate) fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }
    pub(crate) fn limit(&self) -> Option<u64> {
        self.limit
    }

    /// Reserve `bytes` for buffer `label`, or fail naming the request, what is held and the
    /// limit. The reservation is returned when the lease drops.
    pub(crate) fn reserve(self: &Arc<Self>, label: &str, bytes: u64) -> Result<Lease> {
        // Reserve only what fits: two allocations near the limit cannot both fail where one
        // would fit.
        let limit = self.limit.unwrap_or(u64::MAX);
        let mut held = self.in_use.load(Ordering::Relaxed);
        let after = loop {
            let Some(after) = held.checked_add(bytes).filter(|&after| after <= limit) else {
                return Err(Error::OutOfMemory(format!(
                    "buffer '{label}' needs {} but kiln already holds {} of its {} memory limit",
                    bytes_text(bytes),
                    bytes_text(held),
                    bytes_text(limit)
                )));
            };
            match self.in_use.compare_exchange_weak(
                held,
                after,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break after,
                Err(now) => held = now,
            }
        };
        self.peak.fetch_max(after, Ordering::Relaxed);
        Ok(Lease {
            ledger: self.clone(),
            bytes,
        })
    }
}

/// `bytes` for people: "1.50 MiB (1572864 bytes)".
pub(crate) fn bytes_text(bytes: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    if bytes < 1024 * 1024 {
        format!("{bytes} bytes")
    } else {
        format!("{:.2} MiB ({bytes} bytes)", bytes as f64 / MIB)
    }
}

/// Bytes of the ledger held by one buffer.
#[derive(Debug)]
pub(crate) struct Lease {
    ledger: Arc<Ledger>,
    bytes: u64,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.ledger.in_use.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// A GPU buffer kiln created: a `wgpu::Buffer` (it derefs to one) that counts toward
/// [`Gpu::memory_in_use`](super::Gpu::memory_in_use) until its last clone is dropped.
#[derive(Clone, Debug)]
pub struct Buffer {
    raw: wgpu::Buffer,
    _lease: Arc<Lease>,
}

impl Buffer {
    pub(crate) fn new(raw: wgpu::Buffer, lease: Lease) -> Buffer {
        Buffer {
            raw,
            _lease: Arc::new(lease),
        }
    }
}

impl std::ops::Deref for Buffer {
    type Target = wgpu::Buffer;
    fn deref(&self) -> &wgpu::Buffer {
        &self.raw
    }
}
