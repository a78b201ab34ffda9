//! Sharing a queue with a UI: a [`Pacer`] lets a render loop bound how many generation
//! steps are submitted per frame, and a [`Progress`] callback reports a long prompt's
//! prefill as it goes.
//!
//! On one queue, work runs in submission order: a frame submitted behind a decode step (or a
//! whole prompt's prefill) waits for it. With a pacer, each submission of a generation (a
//! prefill chunk, or a decode step) waits for a permit, and the UI hands out
//! `steps_per_frame` permits each frame. Unused permits do not pile up, so a frame never
//! waits behind more than that much model work. Pair it with
//! [`GenerateOptions::prefill_chunk`](super::GenerateOptions::prefill_chunk) so that a long
//! prompt's prefill is cut into steps of bounded size too.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

/// Hands out submission permits to generations, a few per UI frame. Clone it freely: the
/// clones share their permits.
#[derive(Clone)]
pub struct Pacer {
    inner: Arc<Mutex<Permits>>,
}

struct Permits {
    per_frame: usize,
    left: usize,
    waiting: Vec<Waker>,
}

impl Pacer {
    /// A pacer that allows `steps_per_frame` submissions (at least 1) after each call of
    /// [`Pacer::frame`]. It starts with one frame's permits.
    pub fn new(steps_per_frame: usize) -> Pacer {
        let per_frame = steps_per_frame.max(1);
        Pacer {
            inner: Arc::new(Mutex::new(Permits {
                per_frame,
                left: per_frame,
                waiting: Vec::new(),
            })),
        }
    }

    /// A frame began: reset the permits to `steps_per_frame` (unused ones are dropped) and
    /// wake the generations waiting for one. Call it once per frame from the render loop.
    pub fn frame(&self) {
        let wakers = {
            let mut p = self.lock();
            p.left = p.per_frame;
            std::mem::take(&mut p.waiting)
        };
        for w in wakers {
            w.wake();
        }
    }

    /// Wait for a permit to submit one step, and take it.
    pub async fn permit(&self) {
        Permit { pacer: self }.await
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Permits> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for Pacer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.lock();
        write!(f, "Pacer({} of {} per frame left)", p.left, p.per_frame)
    }
}

struct Permit<'a> {
    pacer: &'a Pacer,
}

impl Future for Permit<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut p = self.pacer.lock();
        if p.left > 0 {
            p.left -= 1;
            return Poll::Ready(());
        }
        if !p.waiting.iter().any(|w| w.will_wake(cx.waker())) {
            p.waiting.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// Called with `(done, total)` prompt tokens as a chunked prefill advances (see
/// [`GenerateOptions::prefill_chunk`](super::GenerateOptions::prefill_chunk)); `done`
/// counts tokens reused from the conversation so far too.
#[derive(Clone)]
pub struct Progress(pub Arc<dyn Fn(usize, usize) + Send + Sync>);

impl Progress {
    /// Wrap a callback.
    pub fn new(f: impl Fn(usize, usize) + Send + Sync + 'static) -> Progress {
        Progress(Arc::new(f))
    }
}

impl fmt::Debug for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Progress(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Wake;

    struct Count(std::sync::atomic::AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    #[test]
    fn permits_per_frame_do_not_pile_up() {
        let woken = Arc::new(Count(Default::default()));
        let waker = Waker::from(woken.clone());
        let mut cx = Context::from_waker(&waker);
        let pacer = Pacer::new(2);
        let mut poll = || Pin::new(&mut Box::pin(pacer.permit())).poll(&mut cx);
        assert!(poll().is_ready());
        assert!(poll().is_ready());
        assert!(poll().is_pending(), "a third step in one frame must wait");
        pacer.frame();
        assert_eq!(woken.0.load(std::sync::atomic::Ordering::Relaxed), 1);
        pacer.frame(); // an idle frame: still only two permits
        assert!(poll().is_ready());
        assert!(poll().is_ready());
        assert!(poll().is_pending());
    }
}
