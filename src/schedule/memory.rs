//! Buffer planning from liveness: each intermediate value lives from the op that writes it to
//! the last op that reads it; values whose lifetimes do not overlap share a buffer. Values are
//! placed greedily, largest first, into the best-fitting free buffer (the greedy-by-size
//! heuristic of TFLite's and ratchet's planners). Graph outputs get buffers of their own.

use std::fmt;

/// One value to place: its byte size and the span of op positions it is live over.
#[derive(Clone, Debug)]
pub(crate) struct Interval {
    pub bytes: u64,
    pub first: usize,
    pub last: usize,
    /// Outputs are read back after the run, so nothing may reuse their buffer.
    pub pinned: bool,
}

/// What the planner achieved.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MemoryReport {
    /// Bytes allocated for activations (the sum of the planned buffers).
    pub activation_bytes: u64,
    /// Bytes if every intermediate (and every op's scratch) had its own buffer.
    pub unshared_bytes: u64,
    /// The most bytes live at any one op: a lower bound for any plan.
    pub live_peak_bytes: u64,
    /// Activation buffers allocated.
    pub buffers: usize,
    /// Values placed, ops' scratch buffers included.
    pub values: usize,
    /// Elementwise ops folded into their producers.
    pub fused_ops: usize,
}

impl fmt::Display for MemoryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mib = |b: u64| {
            if b >= 1 << 20 {
                format!("{:.2} MiB", b as f64 / (1u64 << 20) as f64)
            } else if b >= 1024 {
                format!("{:.1} KiB", b as f64 / 1024.0)
            } else {
                format!("{b} B")
            }
        };
        write!(
            f,
            "activations {} in {} buffers for {} values (unshared {}, live peak {}); {} ops fused",
            mib(self.activation_bytes),
            self.buffers,
            self.values,
            mib(self.unshared_bytes),
            mib(self.live_peak_bytes),
            self.fused_ops
        )
    }
}

/// Assign each interval a slot. Returns (slot of each interval, size of each slot).
pub(crate) fn assign(intervals: &[Interval]) -> (Vec<usize>, Vec<u64>) {
    let mut by_size: Vec<usize> = (0..intervals.len()).collect();
    by_size.sort_by_key(|&i| (std::cmp::Reverse(intervals[i].bytes), intervals[i].first));
    let mut slot_of = vec![usize::MAX; intervals.len()];
    let mut slot_sizes: Vec<u64> = Vec::new();
    let mut slot_members: Vec<Vec<usize>> = Vec::new();
    let mut slot_pinned: Vec<bool> = Vec::new();
    for i in by_size {
        let iv = &intervals[i];
        let fits = |s: usize| {
            !iv.pinned
                && !slot_pinned[s]
                && slot_members[s].iter().all(|&j| {
                    let o = &intervals[j];
                    iv.last < o.first || o.last < iv.first
                })
        };
        // Largest-first means every slot already holds a value at least this big; take the
        // smallest such slot that is free for this lifetime.
        let best = (0..slot_sizes.len())
            .filter(|&s| fits(s))
            .min_by_key(|&s| slot_sizes[s]);
        let s = match best {
            Some(s) => s,
            None => {
                slot_sizes.push(0);
                slot_members.push(Vec::new());
                slot_pinned.push(iv.pinned);
                slot_sizes.len() - 1
            }
        };
        slot_sizes[s] = slot_sizes[s].max(iv.bytes);
        slot_members[s].push(i);
        slot_of[i] = s;
    }
    (slot_of, slot_sizes)
}

/// The most bytes live at once over the op positions.
pub(crate) fn live_peak(intervals: &[Interval], positions: usize) -> u64 {
    (0..positions)
        .map(|p| {
            intervals
                .iter()
                .filter(|iv| iv.first <= p && p <= iv.last)
                .map(|iv| iv.bytes)
                .sum()
        })
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iv(bytes: u64, first: usize, last: usize) -> Interval {
        Interval {
            bytes,
            first,
            last,
            pinned: false,
        }
    }

    #[test]
    fn disjoint_lifetimes_share_and_overlapping_ones_do_not() {
        // a chain x0 -> x1 -> x2 -> x3: neighbours overlap, alternate ones can share.
        let ivs = vec![iv(100, 0, 1), iv(50, 1, 2), iv(80, 2, 3), iv(10, 3, 4)];
        let (slot, sizes) = assign(&ivs);
        for (i, a) in ivs.iter().enumerate() {
            for (j, b) in ivs.iter().enumerate() {
                let overlap = !(a.last < b.first || b.last < a.first);
                if i != j && overlap {
                    assert_ne!(slot[i], slot[j], "{i} and {j} overlap but share a slot");
                }
            }
        }
        assert_eq!(sizes.len(), 2);
        assert_eq!(sizes.iter().sum::<u64>(), 150);
        assert_eq!(live_peak(&ivs, 5), 150);
    }

    #[test]
    fn pinned_values_get_their_own_buffer() {
        let mut ivs = vec![iv(100, 0, 1), iv(100, 2, 3)];
        ivs[1].pinned = true;
        let (slot, sizes) = assign(&ivs);
        assert_ne!(slot[0], slot[1]);
        assert_eq!(sizes, vec![100, 100]);
    }
}
