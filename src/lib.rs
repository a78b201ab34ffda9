//! kiln: an inference engine that runs neural networks on any GPU through WebGPU.
//!
//! The data path, in processing order:
//! weights file → [`load`] (validate, upload) → model code building a [`graph::Graph`] of
//! [`ops`] → [`schedule`] (order, fuse, plan buffers, group passes) → [`exec`] (one
//! submission per step) → the host loop ([`generate`]).
//!
//! Everything here is async and never blocks the calling thread; native callers drive the
//! futures with any executor (the CLI uses `pollster`).
//!
//! A chat turn, from a model folder or GGUF file to the reply (`examples/chat.rs` streams it
//! as it comes; `docs/embedding.md` shows an app's own device, pacing and cancellation):
//!
//! ```no_run
//! use kiln::{GenerateOptions, Gpu, GpuOptions, Message, Sampling, TextModel};
//! use std::sync::Arc;
//!
//! async fn ask(model_path: &std::path::Path, question: &str) -> kiln::Result<String> {
//!     let gpu = Gpu::new(&GpuOptions::default()).await?;
//!     let model = Arc::new(TextModel::load(&gpu, model_path, Default::default()).await?);
//!     let mut session = model.session(2048).await?; // one conversation's KV cache
//!     let messages = vec![Message::new("user", question)];
//!     let prompt = model.encode_chat(&messages)?; // the chat template, then tokens
//!     let options = GenerateOptions {
//!         max_tokens: 64,
//!         sampling: Sampling::greedy(),
//!         ..Default::default()
//!     };
//!     let mut generation = session.generate(&prompt, options).await?;
//!     let mut reply = String::new();
//!     while let Some(delta) = generation.next().await {
//!         reply.push_str(&delta?);
//!     }
//!     Ok(reply)
//! }
//!
//! let path = std::path::Path::new("SmolLM2-135M-Instruct.Q4_1.gguf");
//! let reply = pollster::block_on(ask(path, "What is the capital of France?"))?;
//! println!("{reply}");
//! # Ok::<(), kiln::Error>(())
//! ```

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
