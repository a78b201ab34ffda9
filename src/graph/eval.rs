//! The context an op's CPU twin runs in: the values computed so far, the step, and the
//! persistent states, as the reference evaluator (`crate::reference::graph`) holds them.

use super::{Node, Step, Value};
use crate::error::{Error, Result};
use std::collections::HashMap;

/// The context an op's CPU twin evaluates in; see the module docs.
pub struct Eval<'a> {
    pub(crate) nodes: &'a [Node],
    pub(crate) values: &'a [Vec<f32>],
    pub(crate) this: Value,
    /// The step being evaluated.
    pub step: &'a Step,
    pub(crate) states: &'a mut HashMap<String, Vec<f32>>,
    /// The state each value refers to (states, and ops that update one).
    pub(crate) state_of: &'a HashMap<Value, String>,
}

impl Eval<'_> {
    /// The value of an input (token ids as f32, exact below 2^24).
    pub fn value(&self, v: Value) -> &[f32] {
        &self.values[v.0]
    }

    /// The shape of `v`.
    pub fn shape(&self, v: Value) -> &[usize] {
        &self.nodes[v.0].shape
    }

    /// The result's shape.
    pub fn out_shape(&self) -> &[usize] {
        &self.nodes[self.this.0].shape
    }

    /// The name of the state behind `v`.
    pub fn state_name(&self, v: Value) -> Result<String> {
        self.state_of
            .get(&v)
            .cloned()
            .ok_or_else(|| Error::Invalid(format!("reference: value #{} is not a state", v.0)))
    }

    /// A state's values, to update in place.
    pub fn state_mut(&mut self, name: &str) -> Result<&mut Vec<f32>> {
        self.states
            .get_mut(name)
            .ok_or_else(|| Error::Invalid(format!("reference: no state '{name}'")))
    }
}
