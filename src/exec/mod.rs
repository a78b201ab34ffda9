//! The executor: instantiates a [`Plan`](crate::schedule::Plan) on a device once (buffers,
//! pipelines, bind groups, the uniform arena), then records each forward step into one command
//! buffer with one submission. Nothing is allocated or compiled per step.

mod program;
mod state;

pub use program::{Feed, Outputs, Program, Ticket};
pub use state::State;
