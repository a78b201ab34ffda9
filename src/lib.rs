//! kiln: an inference engine that runs neural networks on any GPU through WebGPU.
//!
//! The data path, in processing order:
//! weights file → [`load`] (validate, upload) → model code building a [`graph::Graph`] of
//! [`ops`] → [`schedule`] (order, fuse, plan buffers, group passes) → [`exec`] (one
//! submission per step) → the host loop ([`generate`]).
//!
//! Everything here is async and never blocks the calling thread; native callers drive the
//! futures with any executor (the CLI uses `pollster`).

// Every public item says what it is: a new one without a doc comment fails the build.
#![deny(missing_docs)]

pub mod audio;
#[cfg(not(target_arch = "wasm32"))]
pub mod convert;
pub mod dtype;
pub mod embed;
pub mod encode;
pub mod error;
pub mod exec;
#[cfg(not(target_arch = "wasm32"))]
pub mod fetch;
pub mod generate;
pub mod gpu;
pub mod graph;
pub mod kernels;
pub mod load;
pub mod models;
pub mod ops;
pub mod reference;
pub mod sample;
pub mod schedule;
pub mod split;
pub mod tensor;
pub mod transcribe;
pub mod tune;

pub mod bench;

pub use dtype::{DType, WeightFormat};
pub use error::{Error, Result};
pub use exec::{Feed, Outputs, Program, State, Ticket};
pub use generate::{GenerateOptions, Message, Pacer, Session, TextModel};
pub use gpu::{AdapterChoice, Gpu, GpuOptions};
pub use graph::{Graph, Seq, Step, Value};
pub use kernels::Act;
pub use sample::Sampling;
pub use schedule::{Plan, Target};
pub use tensor::Tensor;
