//! The GPU runtime: adapter discovery and choice, device creation with the adapter's own
//! limits and kiln's optional features, buffers, and asynchronous readback.
//!
//! A [`Gpu`] is a device and queue plus what kiln learned about them. Build one with
//! [`Gpu::new`] (kiln picks or is told which adapter), or hand kiln a device you already own
//! with [`Gpu::from_device`], e.g. the render device of a desktop app.

mod adapter;
mod memory;
mod signal;

pub use adapter::{
    AdapterChoice, AdapterSummary, INSTALL_HINT, adapter_rank, enumerate, group_all, summarize,
};
pub use memory::Buffer;
pub(crate) use memory::bytes_text;
pub(crate) use signal::oneshot;

use crate::error::{Error, Result};
use memory::Ledger;
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
    /// The bytes of the buffers alive, their peak and the limit.
    ledger: Arc<Ledger>,
    /// Why the device was lost, once it has been (set by wgpu's device-lost callback, or
    /// by kiln when it destroys the device itself).
    lost: Arc<Mutex<Option<String>>>,
    /// Submissions to go before an injected device loss (0: none injected).
    lose_in: Mutex<u64>,
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
    /// The most bytes of GPU buffers kiln may hold on the device at once: an allocation
    /// past it fails with [`Error::OutOfMemory`], as running out of the device's memory
    /// does. `None`: only the device's own memory limits.
    pub memory_limit: Option<u64>,
}

impl Gpu {
    /// Open the chosen adapter with its own limits and kiln's optional features.
    pub async fn new(options: &GpuOptions) -> Result<Gpu> {
        let instance = adapter::instance();
        let adapters = adapter::enumerate_adapters(&instance).await;
        let adapter = options.adapter.pick(adapters)?;
        Self::open(&adapter, options).await
    }

    /// Open every adapter on the machine (used for testing and benchmarking each one).
    pub async fn all() -> Vec<Result<Gpu>> {
        let instance = adapter::instance();
        let mut out = Vec::new();
        for a in adapter::enumerate_adapters(&instance).await {
            out.push(Self::open(&a, &GpuOptions::default()).await);
        }
        out
    }

    /// Request a device from `adapter` with all of its limits and the optional features
    /// kiln can use, and the bounds checks and memory limit of `options` (its adapter
    /// choice is not used). kiln learns of the device's loss through its device-lost
    /// callback ([`Gpu::lost`]).
    pub async fn open(adapter: &wgpu::Adapter, options: &GpuOptions) -> Result<Gpu> {
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
        let gpu = Self::with_info(device, queue, info, f16_unpack, options);
        let lost = gpu.inner.lost.clone();
        let name = gpu.describe();
        gpu.device()
            .set_device_lost_callback(move |reason, message| {
                let why = match (reason, message.is_empty()) {
                    (wgpu::DeviceLostReason::Destroyed, true) => "the device was destroyed".into(),
                    (_, true) => format!("{reason:?}"),
                    (_, false) => format!("{reason:?}: {message}"),
                };
                log::error!("the GPU device on {name} was lost ({why})");
                let mut lost = lost.lock().unwrap_or_else(|e| e.into_inner());
                lost.get_or_insert(why);
            });
        Ok(gpu)
    }

    /// Use a device the caller owns (say, a desktop app's render device). kiln works within the
    /// device's limits and features as they are; it does not install an error handler or a
    /// device-lost callback (the app keeps its own), so [`Gpu::lost`] knows of a loss once
    /// kiln's own work fails (a readback) or kiln injected it. `unpack2x16float` is assumed available, as WebGPU guarantees.
    pub fn from_device(device: wgpu::Device, queue: wgpu::Queue) -> Gpu {
        let info = device.adapter_info();
        Self::with_info(device, queue, info, true, &GpuOptions::default())
    }

    fn with_info(
        device: wgpu::Device,
        queue: wgpu::Queue,
        info: wgpu::AdapterInfo,
        f16_unpack: bool,
        options: &GpuOptions,
    ) -> Gpu {
        let limits = device.limits();
        let features = device.features();
        Gpu {
            inner: Arc::new(GpuInner {
                #[cfg(not(target_arch = "wasm32"))]
                poller: signal::Poller::new(device.clone()),
                caches: Mutex::default(),
                buffers_created: AtomicU64::new(0),
                ledger: Ledger::new(options.memory_limit),
                lost: Arc::default(),
                lose_in: Mutex::new(0),
                device,
                queue,
                info,
                limits,
                features,
                f16_unpack,
                bounds_checks: options.bounds_checks,
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
    /// A short description: "name (backend, type)" ("an unnamed adapter" where the
    /// name is empty, as WebGPU in a browser may leave it).
    pub fn describe(&self) -> String {
        let i = &self.inner.info;
        let name = match i.name.is_empty() {
            true => "an unnamed adapter",
            false => &i.name,
        };
        format!("{name} ({:?}, {:?})", i.backend, i.device_type)
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
    pub async fn storage_buffer(&self, label: &str, bytes: u64) -> Result<Buffer> {
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
    ) -> Result<Buffer> {
        if size > self.inner.limits.max_buffer_size {
            return Err(Error::Limit(format!(
                "buffer '{label}' needs {size} bytes but {} allows at most {} per buffer",
                self.inner.info.name, self.inner.limits.max_buffer_size
            )));
        }
        self.check_lost()?;
        let lease = self
            .inner
            .ledger
            .reserve(label, size)
            .map_err(|e| e.context(self.describe()))?;
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
            if let lost @ Error::DeviceLost(_) = self.failure(String::new()) {
                return Err(lost);
            }
            return Err(Error::OutOfMemory(format!(
                "{} could not allocate buffer '{label}' of {}: {e}",
                self.describe(),
                bytes_text(size)
            )));
        }
        Ok(Buffer::new(buffer, lease))
    }

    /// Bytes of GPU buffers kiln holds on this device now: weights, KV caches, activations
    /// and staging, each counted until its last handle is dropped.
    pub fn memory_in_use(&self) -> u64 {
        self.inner.ledger.in_use()
    }
    /// The most bytes kiln has held on this device at once.
    pub fn memory_peak(&self) -> u64 {
        self.inner.ledger.peak()
    }
    /// The limit of [`GpuOptions::memory_limit`], if one was set.
    pub fn memory_limit(&self) -> Option<u64> {
        self.inner.ledger.limit()
    }

    /// Why the device was lost, once kiln knows it has been; `None` while it works. wgpu
    /// reports a loss from its poll, so kiln learns of it at the latest when work on the
    /// device fails. A lost device stays lost: open a new [`Gpu`] (and load the model
    /// again) to go on.
    pub fn lost(&self) -> Option<String> {
        self.inner
            .lost
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Take the device as lost, for `why` (unless it already is, for another reason).
    fn mark_lost(&self, why: String) {
        let mut lost = self.inner.lost.lock().unwrap_or_else(|e| e.into_inner());
        lost.get_or_insert(why);
    }

    /// [`Error::DeviceLost`] once the device is known to be lost.
    pub(crate) fn check_lost(&self) -> Result<()> {
        match self.lost() {
            Some(why) => Err(Error::DeviceLost(format!(
                "the device on {} was lost ({why}); open a new Gpu and load the model again to \
                 go on",
                self.describe()
            ))),
            None => Ok(()),
        }
    }

    /// `message`, from work on the device that failed, as an error: [`Error::DeviceLost`]
    /// if the device has been lost (the likely cause), else [`Error::Gpu`].
    pub(crate) fn failure(&self, message: String) -> Error {
        // A loss shows in wgpu's poll once the queue has drained: poll once (without
        // waiting) so that one that has happened is known now. Only here, on an error: a
        // poll on the GL backend takes the adapter's context.
        #[cfg(not(target_arch = "wasm32"))]
        if self.lost().is_none() {
            let _ = self.device().poll(wgpu::PollType::Poll);
        }
        match self.check_lost() {
            Err(lost) => lost,
            Ok(()) => Error::Gpu(message),
        }
    }

    /// For testing how an app copes with a lost GPU: destroy the device just before the
    /// `submissions`-th submission kiln makes from now on (1: the next). What follows is
    /// what a real loss looks like: the submission and every later use of the device fail
    /// with [`Error::DeviceLost`]. kiln's CLI and server read `KILN_INJECT_DEVICE_LOSS=N`.
    pub fn inject_device_loss(&self, submissions: u64) {
        *self.inner.lose_in.lock().unwrap_or_else(|e| e.into_inner()) = submissions;
    }

    /// Submit command buffers to the queue: the one way kiln submits work, where an
    /// injected device loss ([`Gpu::inject_device_loss`]) strikes.
    pub(crate) fn submit<I: IntoIterator<Item = wgpu::CommandBuffer>>(&self, buffers: I) {
        let strike = {
            let mut n = self.inner.lose_in.lock().unwrap_or_else(|e| e.into_inner());
            let strike = *n == 1;
            *n = n.saturating_sub(1);
            strike
        };
        if strike {
            log::warn!(
                "injected device loss: destroying the device on {}",
                self.describe()
            );
            self.mark_lost("injected by Gpu::inject_device_loss".into());
            self.device().destroy();
        }
        self.queue().submit(buffers);
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
        self.submit([enc.finish()]);
        self.map_read(&staging, size).await
    }

    /// Map a MAP_READ buffer whose copy has been submitted, and take its first `size` bytes.
    pub(crate) async fn map_read(&self, staging: &wgpu::Buffer, size: u64) -> Result<Vec<u8>> {
        /// Unmaps on every way out, a dropped future included, so the buffer can take the
        /// next copy; not after a map that failed (the device lost), which left nothing
        /// mapped.
        struct Unmap<'a>(&'a wgpu::Buffer, bool);
        impl Drop for Unmap<'_> {
            fn drop(&mut self) {
                if self.1 {
                    self.0.unmap();
                }
            }
        }
        let (tx, rx) = oneshot();
        staging.map_async(wgpu::MapMode::Read, .., move |r| tx.send(r));
        let mut unmap = Unmap(staging, true);
        self.kick();
        if let Err(e) = rx.await {
            unmap.1 = false;
            // kiln's staging buffers are neither destroyed nor unmapped while a map is
            // pending: a map that fails means the device is gone, whether or not wgpu has
            // said so yet (it does once the queue drains).
            if let lost @ Error::DeviceLost(_) = self.failure(String::new()) {
                return Err(lost);
            }
            log::error!(
                "a readback on {} failed ({e}): kiln takes the device as lost",
                self.describe()
            );
            self.mark_lost(format!("a readback failed: {e}"));
            return Err(self.failure(String::new()));
        }
        let view = staging
            .get_mapped_range(..)
            .map_err(|e| self.failure(format!("mapping a readback buffer failed: {e}")))?;
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
