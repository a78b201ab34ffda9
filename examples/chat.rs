//! A chat turn with kiln as a library: the conversation so far, rendered with the model's
//! chat template, and the reply streamed. The README's chat snippet, as a program CI runs.
//!
//!     cargo run --release --example chat -- [MODEL] ["What is the capital of France?"]

use kiln::{GenerateOptions, Gpu, GpuOptions, Message, Sampling, TextModel};
use std::io::Write;
use std::sync::Arc;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let model_path: std::path::PathBuf = match args.next() {
        Some(path) => path.into(),
        None => kiln::fetch::ensure(
            &kiln::fetch::SMOLLM2_135M,
            &kiln::fetch::cache_dir(),
            &mut |m| eprintln!("{m}"),
        )?,
    };
    let question = args
        .next()
        .unwrap_or("What is the capital of France?".into());
    pollster::block_on(async {
        let gpu = Gpu::new(&GpuOptions::default()).await?;
        let model = Arc::new(TextModel::load(&gpu, &model_path, Default::default()).await?);
        kiln::tune::ensure(&gpu, model.matrix_dtypes(), &mut |m| eprintln!("{m}")).await?;
        // README: chat
        let mut session = model.session(2048).await?;
        let mut messages = vec![
            Message::new("system", "You are a helpful assistant."),
            Message::new("user", &question),
        ];
        let options = GenerateOptions {
            max_tokens: 64,
            sampling: Sampling::greedy(),
            ..Default::default()
        };
        let prompt = model.encode_chat(&messages)?; // template, then tokens
        let mut generation = session.generate(&prompt, options).await?;
        let mut reply = String::new();
        while let Some(delta) = generation.next().await {
            let delta = delta?;
            print!("{delta}");
            std::io::stdout().flush()?;
            reply.push_str(&delta);
        }
        println!();
        messages.push(Message::new("assistant", &reply)); // the next turn reuses the cache
        // README: end
        Ok(())
    })
}
