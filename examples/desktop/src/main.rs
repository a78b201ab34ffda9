//! kiln-desktop: a chat app on eframe/egui whose model runs on the very wgpu device the UI
//! renders with. It shows what an app that embeds kiln does:
//!
//! - open the device with what kiln asks for ([`kiln::gpu::device_descriptor`]) and hand it
//!   over ([`kiln::Gpu::from_device`]);
//! - run the model on a worker thread and stream its text into widgets;
//! - keep frames smooth while the model shares the queue ([`kiln::Pacer`]: a few model
//!   steps per frame, and long prompts prefilled in chunks);
//! - stop a reply, start a new chat.
//!
//!     cargo run --release -p kiln-desktop [-- --model PATH]
//!
//! See docs/embedding.md.

mod app;
mod frames;
mod worker;

use clap::Parser;
use eframe::egui_wgpu::{WgpuConfiguration, WgpuSetup, WgpuSetupCreateNew};
use std::path::PathBuf;
use std::sync::Arc;

/// A chat app that runs kiln on the device it renders with.
#[derive(Parser, Debug, Clone)]
#[command(version, about)]
pub struct Args {
    /// A model folder (config.json, tokenizer.json, *.safetensors) or a .gguf file; the
    /// default model (SmolLM2-135M-Instruct, fetched once into kiln's cache) if omitted.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Which adapter renders and runs the model: auto, an index, a backend (vulkan, gl,
    /// metal, dx12) or part of its name.
    #[arg(long, default_value = "auto")]
    pub adapter: String,
    /// Sampling temperature to start with (0: greedy).
    #[arg(long, default_value_t = 0.7)]
    pub temperature: f32,
    /// The most tokens a reply may have, to start with.
    #[arg(long, default_value_t = 1024)]
    pub max_tokens: usize,
    /// The system prompt to start with.
    #[arg(long, default_value = "You are a helpful assistant.")]
    pub system: String,
    /// Model submissions allowed per UI frame: fewer keeps frames smoother, more generates
    /// faster. Default: 1 on a CPU adapter, 4 on a GPU.
    #[arg(long)]
    pub per_frame: Option<usize>,
    /// Cut each model step into this many submissions, so a frame waits behind only part of
    /// one. Default: 4 on a CPU adapter (a step takes longer than a frame), 1 on a GPU.
    #[arg(long)]
    pub parts: Option<usize>,
    /// Let the model submit freely, without waiting for frames (to compare frame times).
    #[arg(long)]
    pub no_pacing: bool,
    /// Print each finished turn ("user: ..." / "assistant: ...") on stdout.
    #[arg(long)]
    pub print_transcript: bool,
    /// Save a PNG of the window here after each reply.
    #[arg(long)]
    pub screenshot: Option<PathBuf>,
    /// Redraw continuously and print frame-time percentiles (idle and while generating) on
    /// stderr at exit.
    #[arg(long)]
    pub frame_stats: bool,
}

fn main() -> anyhow::Result<()> {
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("warn,winit=error,egui_wgpu=error"),
    )
    .init();
    let args = Args::parse();
    let choice: kiln::AdapterChoice = args.adapter.parse()?;
    // eframe opens the device: with the adapter kiln would pick, and what kiln asks of it.
    let setup = WgpuSetupCreateNew {
        native_adapter_selector: Some(Arc::new(move |adapters, surface| {
            let usable: Vec<_> = adapters
                .iter()
                .filter(|a| surface.is_none_or(|s| a.is_surface_supported(s)))
                .cloned()
                .collect();
            choice.pick(usable).map_err(|e| e.to_string())
        })),
        device_descriptor: Arc::new(kiln::gpu::device_descriptor),
        ..WgpuSetupCreateNew::without_display_handle()
    };
    let options = eframe::NativeOptions {
        renderer: eframe::Renderer::Wgpu,
        viewport: eframe::egui::ViewportBuilder::default()
            .with_title("kiln")
            .with_inner_size([900.0, 640.0]),
        wgpu_options: WgpuConfiguration {
            wgpu_setup: WgpuSetup::CreateNew(setup),
            ..Default::default()
        },
        ..Default::default()
    };
    eframe::run_native(
        "kiln",
        options,
        Box::new(move |cc| Ok(Box::new(app::ChatApp::new(cc, args)?))),
    )
    .map_err(|e| anyhow::anyhow!("the window could not run: {e}"))
}
