//! Sharing a queue with a UI: a [`Pacer`] lets a render loop bound how much model work is
//! queued ahead of each frame.
//!
//! On one queue, work runs in submission order: a frame submitted behind a decode step (or a
//! whole prompt's prefill) waits for all of it. With a pacer, a step is cut into
//! [`Pacer::parts`] submissions of about equal numbers of dispatches
//! ([`Program::submit_paced`](super::Program::submit_paced)), each waiting for a permit, and
//! the UI hands out `per_frame` permits each frame. Unused permits do not pile up, so a
//! frame waits behind at most `per_frame` parts of a step. Pair it with
//! [`GenerateOptions::prefill_chunk`](crate::generate::GenerateOptions::prefill_chunk) so
//! that a long prompt's prefill is cut into steps of bounded size too.

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
    parts: usize,
}

struct Permits {
    per_frame: usize,
    left: usize,
    /// Permits handed out so far.
    taken: u64,
    waiting: Vec<Waker>,
}

impl Pacer {
    /// A pacer that allows `per_frame` submissions (at least 1) after each call of
    /// [`Pacer::frame`], each a whole step. It starts with one frame's permits.
    pub fn new(per_frame: usize) -> Pacer {
        let per_frame = per_frame.max(1);
        Pacer {
            inner: Arc::new(Mutex::new(Permits {
                per_frame,
                left: per_frame,
                taken: 0,
                waiting: Vec::new(),
            })),
            parts: 1,
        }
    }

    /// Cut each step into `parts` submissions (at least 1; at most one per compute pass),
    /// each taking a permit: a frame then waits behind a fraction of a step.
    pub fn with_parts(mut self, parts: usize) -> Pacer {
        self.parts = parts.max(1);
        self
    }

    /// Permits handed out so far: submissions made under this pacer.
    pub fn taken(&self) -> u64 {
        self.lock().taken
    }

    /// Submissions each step is cut into (at most).
    pub fn parts(&self) -> usize {
        self.parts
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
        write!(
            f,
            "Pacer({} of {} per frame left, steps in {} parts)",
            p.left, p.per_frame, self.parts
        )
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
            p.taken += 1;
            return Poll::Ready(());
        }
        if !p.waiting.iter().any(|w| w.will_wake(cx.waker())) {
            p.waiting.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// `passes` cut into at most `parts` consecutive, non-empty ranges with about equal numbers
/// of dispatches: each cut goes at the pass boundary nearest its share (one range for no
/// passes).
pub(super) fn part_ranges(
    passes: &[crate::schedule::Pass],
    parts: usize,
) -> Vec<std::ops::Range<usize>> {
    let n = passes.len();
    // before[c]: dispatches in the passes before boundary c (0..=n).
    let mut before = vec![0usize; n + 1];
    for (i, p) in passes.iter().enumerate() {
        before[i + 1] = before[i] + p.dispatches.len();
    }
    let total = before[n];
    let mut cuts: Vec<usize> = (1..parts.max(1))
        .filter_map(|k| {
            // The inner boundary nearest k/parts of the dispatches (scaled by parts).
            (1..n).min_by_key(|&c| (before[c] * parts).abs_diff(total * k))
        })
        .collect();
    cuts.dedup();
    let mut out = Vec::with_capacity(cuts.len() + 1);
    let mut start = 0;
    for c in cuts {
        out.push(start..c);
        start = c;
    }
    out.push(start..n);
    out
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

    #[test]
    fn parts_split_dispatches_about_evenly() {
        let pass = |a: usize, b: usize| crate::schedule::Pass {
            label: String::new(),
            dispatches: a..b,
        };
        // Dispatch counts 5, 1, 1, 5, 4, 4 (20 in all).
        let passes = [
            pass(0, 5),
            pass(5, 6),
            pass(6, 7),
            pass(7, 12),
            pass(12, 16),
            pass(16, 20),
        ];
        assert_eq!(part_ranges(&passes, 1), vec![0..6]);
        assert_eq!(part_ranges(&passes, 2), vec![0..4, 4..6]);
        assert_eq!(part_ranges(&passes, 4), vec![0..1, 1..4, 4..5, 5..6]);
        // More parts than passes: one pass each.
        assert_eq!(part_ranges(&passes[..2], 9), vec![0..1, 1..2]);
        assert_eq!(part_ranges(&[], 3), vec![0..0]);
        // A heavy last pass: still no empty part.
        assert_eq!(part_ranges(&[pass(0, 1), pass(1, 11)], 2), vec![0..1, 1..2]);
        let heavy = [
            pass(0, 2),
            pass(2, 4),
            pass(4, 6),
            pass(6, 8),
            pass(8, 10),
            pass(10, 40),
        ];
        let parts = part_ranges(&heavy, 4);
        assert!(parts.iter().all(|r| !r.is_empty()), "{parts:?}");
        assert_eq!(parts.last().map(|r| r.end), Some(6));
    }
}
