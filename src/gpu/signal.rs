//! Turning wgpu's callbacks into futures, without blocking the caller.
//!
//! wgpu reports finished work (buffer mapping, queue completion) through callbacks. In the
//! browser the event loop fires them. On native, someone must call `Device::poll`; kiln does
//! that on a small background thread per device (the [`Poller`]), so library futures never
//! block the thread that awaits them, and any executor (pollster, tokio, a UI loop) can drive them.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

struct State<T> {
    value: Option<T>,
    waker: Option<Waker>,
}

/// The sending half of a one-shot signal; handed to a wgpu callback.
pub(crate) struct Sender<T>(Arc<Mutex<State<T>>>);

/// The receiving half: a future that resolves when the callback fires.
pub(crate) struct Receiver<T>(Arc<Mutex<State<T>>>);

pub(crate) fn oneshot<T>() -> (Sender<T>, Receiver<T>) {
    let state = Arc::new(Mutex::new(State {
        value: None,
        waker: None,
    }));
    (Sender(state.clone()), Receiver(state))
}

impl<T> Sender<T> {
    pub(crate) fn send(self, value: T) {
        let waker = {
            let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
            s.value = Some(value);
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> Future for Receiver<T> {
    type Output = T;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match s.value.take() {
            Some(v) => Poll::Ready(v),
            None => {
                s.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// Drives `Device::poll` on a background thread whenever kiln waits for the GPU (native only).
/// Dropping it ends the thread and waits for it, so the device's last reference is released
/// before the `Gpu` is gone: a driver torn down on a thread that outlives `main` can crash the
/// process as it exits (seen with SwiftShader).
#[cfg(not(target_arch = "wasm32"))]
pub(crate) struct Poller {
    tx: Mutex<Option<std::sync::mpsc::Sender<()>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

#[cfg(not(target_arch = "wasm32"))]
impl Poller {
    pub(crate) fn new(device: wgpu::Device) -> Self {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let spawned = std::thread::Builder::new()
            .name("kiln-gpu-poll".into())
            .spawn(move || {
                // Each request means "some callback is pending": wait until the queue drains,
                // which fires every callback registered so far. Ends when the Gpu is dropped.
                while rx.recv().is_ok() {
                    while rx.try_recv().is_ok() {}
                    if let Err(e) = device.poll(wgpu::PollType::wait_indefinitely()) {
                        log::error!("device poll failed: {e}");
                    }
                }
            });
        let thread = match spawned {
            Ok(handle) => Some(handle),
            Err(e) => {
                log::error!("could not start the GPU poll thread: {e}");
                None
            }
        };
        Poller {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(thread),
        }
    }

    /// Ask the poll thread to wait for the work submitted so far.
    pub(crate) fn request(&self) {
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = tx.as_ref() {
            let _ = tx.send(());
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl Drop for Poller {
    fn drop(&mut self) {
        // Closing the channel ends the thread's loop once its current poll returns.
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = thread
            && t.join().is_err()
        {
            log::error!("the GPU poll thread panicked");
        }
    }
}
