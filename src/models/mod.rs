//! Model files: each builds a graph that reads like the model's equations.

pub mod config;
pub mod llama;

pub use config::Config;
pub use llama::{Llama, Logits};
