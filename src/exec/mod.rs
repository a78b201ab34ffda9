//! The executor: instantiates a [`Plan`](crate::schedule::Plan) on a device once (buffers,
//! pipelines, bind groups, the uniform arena), then records each forward step into one command
//! buffer with one submission. Nothing is allocated or compiled per step.

mod pace;
mod profile;
mod program;
mod reduce;
mod state;

pub use pace::Pacer;
pub use profile::{Entry, Profile};
pub use program::{Feed, Outputs, Program, Ticket};
pub use reduce::AllReduce;
pub use state::State;

/// The tokens per sequence a program is planned for when a step needs `tokens`: the next
/// power of two, at most `most` (the context). Programs sized this way are few (about
/// log2 of the context), and each serves every shorter step.
pub fn bucket(tokens: usize, most: usize) -> usize {
    tokens.next_power_of_two().min(most).max(tokens)
}
