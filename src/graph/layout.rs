//! How a value of a model split tensor-parallel is spread over the parts (adapters).
//!
//! Every value carries a [`Layout`], computed as it is built, next to its shape: leaves are
//! whole, except weights cut for one adapter ([`crate::tensor::Tensor::slice`]), which are
//! split along the axis they were cut on. Each op's [`Op::layout`](super::Op::layout) rule
//! says what its inputs' layouts make of its result: a matmul by a weight split by rows
//! gives a result split by columns; one by a weight split by columns (its input split the
//! same way) gives a partial sum. Where a partial sum arises, the graph reduces it across
//! the parts at once ([`Graph::all_reduce`](super::Graph::all_reduce), an exchange), so
//! model code is the same for one adapter and for many: which exchanges a step makes
//! follows from how its weights were cut.

use std::fmt;
use std::ops::Range;

/// How a value is spread over the parts of a model split tensor-parallel.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Layout {
    /// Every part holds all of it (replicated). Everything on one adapter is whole.
    #[default]
    Whole,
    /// This part holds `range` of the value's `total` along `axis`; the parts' ranges, in
    /// part order, tile it.
    Split {
        /// The axis split.
        axis: usize,
        /// The indices along `axis` this part holds.
        range: Range<usize>,
        /// The value's whole length along `axis`.
        total: usize,
    },
    /// Each part holds a summand: the value is the sum over the parts.
    Partial,
}

impl Layout {
    /// The slice `range` of `total` along `axis`: whole when it is all of it.
    pub fn split(axis: usize, range: Range<usize>, total: usize) -> Layout {
        match range == (0..total) {
            true => Layout::Whole,
            false => Layout::Split { axis, range, total },
        }
    }

    /// Where `self` splits `axis`: the range and the whole length.
    pub fn along(&self, axis: usize) -> Option<(Range<usize>, usize)> {
        match self {
            Layout::Split {
                axis: a,
                range,
                total,
            } if *a == axis => Some((range.clone(), *total)),
            _ => None,
        }
    }

    /// The layout every one of `inputs` has (elementwise ops keep it), or why they differ.
    pub fn common(inputs: &[Layout]) -> Result<Layout, String> {
        let first = inputs.first().cloned().unwrap_or_default();
        match inputs.iter().find(|l| **l != first) {
            None => Ok(first),
            Some(other) => Err(format!(
                "inputs laid out differently across the adapters ({first} and {other})"
            )),
        }
    }

    /// The default rule of an op with no rule of its own: whole inputs give a whole
    /// result; anything else is refused, naming it.
    pub fn all_whole(inputs: &[Layout]) -> Result<Layout, String> {
        match inputs.iter().find(|l| **l != Layout::Whole) {
            None => Ok(Layout::Whole),
            Some(l) => Err(format!(
                "needs inputs whole on every adapter, got one {l} (not computed split yet)"
            )),
        }
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Layout::Whole => write!(f, "whole"),
            Layout::Split { axis, range, total } => {
                write!(f, "split along axis {axis} ({range:?} of {total})")
            }
            Layout::Partial => write!(f, "partial sum"),
        }
    }
}
