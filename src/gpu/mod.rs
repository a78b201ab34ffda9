//! The GPU runtime: adapter discovery and choice, device creation with the adapter's own
//! limits and kiln's optional features, buffers, and asynchronous readback.
//!
//! A [`Gpu`] is a device and queue plus what kiln learned about them. Build one with
//! [`Gpu::new`] (kiln picks or is told which adapter), or hand kiln a device you already own
//! with [`Gpu::from_device`], e.g. the render device of a desktop app.

mod adapter;
mod signal;

pub use adapter::{
    AdapterChoice, AdapterSummary, INSTALL_HINT, adapter_rank, enumerate, group_all, summarize,
};
pub(crate) use signal::oneshot;

use crate::error::{Error, Result};
use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Optional features kiln uses when the adapter has them: native f16 loads of F16 weights,
/// subgroup shuffles in reductions, and timestamp queries for profiling
/// ([`Program::profile_into`](crate::exec::Program::profile_into)).
pub const OPTIONAL_FEATURES: wgpu::Features = wgpu::Features::SHADER_F16
    .union(wgpu::Features::SUBGROUP)
    .union(wgpu::Features::TIMESTAMP_QUERY);

/// What kiln asks of an adapter for its device: all of the adapter's limits (large models
/// need its largest buffers and storage bindings) and those of [`OPTIONAL_FEATURES`] it has.
/// An app that opens the device itself (say, a UI's render device) can request this and
/// hand the device to [`Gpu::from_device`]; a device opened with less still works, within
/// its limits (weights larger than a storage binding are stored in parts; an activation or
/// KV cache over them is an [`Error::Limit`] when the session is planned) and without the
/// optional fast paths.
pub fn device_descriptor(adapter: &wgpu::Adapter) -> wgpu::DeviceDescriptor<'static> {
    wgpu::DeviceDescriptor {
        label: Some("kiln"),
        required_features: adapter.features() & OPTIONAL_FEATURES,
        required_limits: adapter.limits(),
        ..Default::default()
    }
}

/// A device and queue, with the limits and features kiln plans against.
#[derive(Clone)]
pub struct Gpu {
    inner: Arc<GpuInner>,
}

struct GpuInner {
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    limits: wgpu::Limits,
    features: wgpu::Features,
    /// Whether shaders may call unpack2x16float (always so on WebGPU; a downlevel flag on
    /// native backends).
    f16_unpack: bool,
    bounds_checks: bool,
    /// Per-device caches of the layers above (compiled pipelines), by type: the runtime
    /// holds them without knowing what they are.
    caches: Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
    /// GPU buffers created through this `Gpu` so far.
    buffers_created: AtomicU64,
    #[cfg(not(target_arch = "wasm32"))]
    poller: signal::Poller,
}

/// How to open a [`Gpu`].
#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    /// Which adapter to use; by default the best-ranked one.
    pub adapter: AdapterChoice,
    /// Keep wgpu's per-access bounds checks in kiln's shaders (slower; for debugging).
    pub bounds_checks: bool,
}

impl Gpu {
    /// Open the chosen adapter with its own limits and kiln's optional features.
    pub async fn new(options: &GpuOptions) -> Result<Gpu> {
        let instance = adapter::instance();
        let adapters = adapter::enumerate_adapters(&instance).await;
        let adapter = options.adapter.pick(adapters)?;
        Self::open(&adapter, options.bounds_checks).await
    }

    /// Open every adapter on the machine (used for testing and benchmarking each one).
    pub async fn all() -> Vec<Result<Gpu>> {
        let instance = adapter::instance();
        let mut out = Vec::new();
        for a in adapter::enumerate_adapters(&instance).await {
            out.push(Self::open(&a, false).await);
        }
        out
    }

    /// Request a device from `adapter` with all of its limits and the optional features
    /// kiln can use. `bounds_checks` keeps wgpu's per-access checks in kiln's shaders.
    pub async fn open(adapter: &wgpu::Adapter, bounds_checks: bool) -> Result<Gpu> {
        let info = adapter.get_info();
        let (device, queue) = adapter
            .request_device(&device_descriptor(adapter))
            .await
            .map_err(|e| {
                Error::Gpu(format!(
                    "could not open a device on adapter '{}' ({:?}): {e}",
                    info.name, info.backend
                ))
            })?;
        // kiln catches its own errors in error scopes; anything else is logged, not a panic.
        device.on_uncaptured_error(Arc::new(|e: wgpu::Error| {
            log::error!("uncaptured wgpu error: {e}");
        }));
        let flags = adapter.get_downlevel_capabilities().flags;
        let f16_unpack = flags.contains(wgpu::DownlevelFlags::SHADER_F16_IN_F32);
        Ok(Self::with_info(
            device,
            queue,
            info,
            f16_unpack,
            bounds_checks,
        ))
    }

    /// Use a device the caller owns (say, a desktop app's render device). kiln works within the
    /// device's limits and features as they are; it does not install an error handler.
    /// `unpack2x16float` is assumed available, as WebGPU guarantees.
    pub fn from_device(device: wgpu::Device, queue: wgpu::Queue) -> Gpu {
        let info = device.adapter_info();
        Self::with_info(device, queue, info, true, false)
    }

    fn with_info(
        device: wgpu::Device,
        queue: wgpu::Queue,
        info: wgpu::AdapterInfo,
        f16_unpack: bool,
        bounds_checks: bool,
    ) -> Gpu {
        let limits = device.limits();
        let features = device.features();
        Gpu {
            inner: Arc::new(GpuInner {
                #[cfg(not(target_arch = "wasm32"))]
                poller: signal::Poller::new(device.clone()),
                caches: Mutex::default(),
                buffers_created: AtomicU64::new(0),
                device,
                queue,
                info,
                limits,
                features,
                f16_unpack,
                bounds_checks,
            }),
        }
    }

    /// The wgpu device.
    pub fn device(&self) -> &wgpu::Device {
        &self.inner.device
    }
    /// The device's queue.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.inner.queue
    }
    /// The adapter's name, vendor, backend and device type, as wgpu reports them.
    pub fn info(&self) -> &wgpu::AdapterInfo {
        &self.inner.info
    }
    /// The limits the device was opened with (the adapter's own, from [`Gpu::new`]).
    pub fn limits(&self) -> &wgpu::Limits {
        &self.inner.limits
    }
    /// The features the device was opened with; kiln uses those of [`OPTIONAL_FEATURES`].
    pub fn features(&self) -> wgpu::Features {
        self.inner.features
    }
    /// The device's cache of type `T`, created empty on first use. Layers above the runtime
    /// keep per-device state here (the compiled pipelines) without the runtime naming them.
    pub fn cache<T: Default + Send + Sync + 'static>(&self) -> Arc<T> {
        let mut caches = self.inner.caches.lock().unwrap_or_else(|e| e.into_inner());
        let entry = caches
            .entry(TypeId::of::<T>())
            .or_insert_with(|| Arc::new(T::default()));
        match entry.clone().downcast::<T>() {
            Ok(cache) => cache,
            // The map is keyed by the type's id, so the entry is always a `T`.
            Err(_) => unreachable!("a cache stored under another type's id"),
        }
    }

    /// How many GPU buffers have been created through this `Gpu` (tests use it to check that
    /// steady-state work allocates nothing).
    pub fn buffers_created(&self) -> u64 {
        self.inner.buffers_created.load(Ordering::Relaxed)
    }
    /// Whether shaders may declare `f16` values (the SHADER_F16 feature).
    pub fn has_f16(&self) -> bool {
        self.inner.features.contains(wgpu::Features::SHADER_F16)
    }
    /// Whether shaders may use subgroup operations (the SUBGROUP feature).
    pub fn has_subgroups(&self) -> bool {
        self.inner.features.contains(wgpu::Features::SUBGROUP)
    }

    /// The largest subgroup the adapter may run (0 without SUBGROUP).
    pub fn subgroup_max_size(&self) -> u32 {
        if self.has_subgroups() {
            self.inner.info.subgroup_max_size
        } else {
            0
        }
    }

    /// The smallest subgroup the adapter may run (0 without SUBGROUP).
    pub fn subgroup_min_size(&self) -> u32 {
        if self.has_subgroups() {
            self.inner.info.subgroup_min_size
        } else {
            0
        }
    }

    /// Whether kiln's pipelines keep wgpu's per-access bounds checks.
    pub fn bounds_checks(&self) -> bool {
        self.inner.bounds_checks
    }

    /// Whether shaders may unpack f16 pairs from u32 words (`unpack2x16float`).
    pub fn has_f16_unpack(&self) -> bool {
        self.inner.f16_unpack
    }
    /// A short description: "name (backend, type)".
    pub fn describe(&self) -> String {
        let i = &self.inner.info;
        format!("{} ({:?}, {:?})", i.name, i.backend, i.device_type)
    }
    /// Bytes of memory the adapter can still hand out, where that can be known: a CPU
    /// adapter's memory is the host's (Linux's `MemAvailable`); wgpu tells nothing of a
    /// GPU's, so for GPUs this is `None` and running out shows as an allocation error.
    pub fn memory_available(&self) -> Option<u64> {
        if self.inner.info.device_type != wgpu::DeviceType::Cpu {
            return None;
        }
        host_memory_available()
    }

    /// The largest range of one buffer that a single storage binding may cover.
    pub fn max_binding(&self) -> u64 {
        self.inner
            .limits
            .max_storage_buffer_binding_size
            .min(self.inner.limits.max_buffer_size)
    }

    /// Create a storage buffer, checking the device's size limit first and catching
    /// out-of-memory as an error instead of a panic.
    pub async fn storage_buffer(&self, label: &str, bytes: u64) -> Result<wgpu::Buffer> {
        let size = bytes.max(4).next_multiple_of(4);
        self.create_buffer(
            label,
            size,
            wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_DST
                | wgpu::BufferUsages::COPY_SRC,
        )
        .await
    }

    pub(crate) async fn create_buffer(
        &self,
        label: &str,
        size: u64,
        usage: wgpu::BufferUsages,
    ) -> Result<wgpu::Buffer> {
        if size > self.inner.limits.max_buffer_size {
            return Err(Error::Limit(format!(
                "buffer '{label}' needs {size} bytes but {} allows at most {} per buffer",
                self.inner.info.name, self.inner.limits.max_buffer_size
            )));
        }
        self.inner.buffers_created.fetch_add(1, Ordering::Relaxed);
        let scope = self
            .device()
            .push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let buffer = self.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage,
            mapped_at_creation: false,
        });
        if let Some(e) = scope.pop().await {
            return Err(Error::Gpu(format!(
                "could not allocate buffer '{label}' of {size} bytes: {e}"
            )));
        }
        Ok(buffer)
    }

    /// Resolves once the GPU has finished all work submitted so far.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::<()>();
        self.queue().on_submitted_work_done(move || tx.send(()));
        self.kick();
        rx.await
    }

    /// Make sure pending callbacks will fire (native: wake the poll thread).
    pub(crate) fn kick(&self) {
        #[cfg(not(target_arch = "wasm32"))]
        self.inner.poller.request();
    }

    /// Copy `size` bytes of `src` from `offset` back to the host. Issues its own submission.
    pub async fn read_bytes(&self, src: &wgpu::Buffer, offset: u64, size: u64) -> Result<Vec<u8>> {
        let padded = size.next_multiple_of(4).max(4);
        let staging = self
            .create_buffer(
                "kiln readback",
                padded,
                wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            )
            .await?;
        let mut enc = self.device().create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(src, offset, &staging, 0, padded);
        self.queue().submit([enc.finish()]);
        self.map_read(&staging, size).await
    }

    /// Map a MAP_READ buffer whose copy has been submitted, and take its first `size` bytes.
    pub(crate) async fn map_read(&self, staging: &wgpu::Buffer, size: u64) -> Result<Vec<u8>> {
        /// Unmaps on every way out, a dropped future included, so the buffer can take the
        /// next copy.
        struct Unmap<'a>(&'a wgpu::Buffer);
        impl Drop for Unmap<'_> {
            fn drop(&mut self) {
                self.0.unmap();
            }
        }
        let (tx, rx) = oneshot();
        staging.map_async(wgpu::MapMode::Read, .., move |r| tx.send(r));
        let _unmap = Unmap(staging);
        self.kick();
        rx.await
            .map_err(|e| Error::Gpu(format!("reading back a buffer failed: {e}")))?;
        let view = staging
            .get_mapped_range(..)
            .map_err(|e| Error::Gpu(format!("mapping a readback buffer failed: {e}")))?;
        let bytes = view.get(..size as usize).map(<[u8]>::to_vec);
        drop(view);
        bytes.ok_or_else(|| Error::Gpu(format!("a readback of {size} bytes from a smaller buffer")))
    }

    /// Read back `count` f32 values from the start of `src`.
    pub async fn read_f32(&self, src: &wgpu::Buffer, count: usize) -> Result<Vec<f32>> {
        let bytes = self.read_bytes(src, 0, count as u64 * 4).await?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// The host's available memory in bytes (Linux), read from `/proc/meminfo`.
fn host_memory_available() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        let text = std::fs::read_to_string("/proc/meminfo").ok()?;
        let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}
