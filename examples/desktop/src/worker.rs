//! The model's thread: it loads models, holds the conversation's session, and streams
//! replies back as events. kiln's API is async; this thread is the native edge that drives
//! it with `pollster`, so the UI thread never waits on the model.

use kiln::generate::{Finish, GenerateOptions, Message, Stats, TextModel};
use kiln::{Gpu, Session};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender};

/// Tokens of context the conversation's KV cache holds.
const CONTEXT: usize = 2048;

/// What the UI asks for.
pub enum Command {
    /// Load a model folder or GGUF file; `None`: the default model.
    Load(Option<PathBuf>),
    /// Reply to the conversation so far.
    Reply {
        messages: Vec<Message>,
        options: GenerateOptions,
    },
    /// Forget the conversation's cache.
    Reset,
}

/// What the model's thread reports.
pub enum Event {
    /// A line of what loading is doing (fetching, tuning).
    Note(String),
    /// Upload progress in bytes.
    Progress {
        done: u64,
        total: u64,
    },
    Loaded {
        name: String,
        weight_bytes: u64,
    },
    Text(String),
    Done {
        stats: Stats,
        finish: Option<Finish>,
        gpu_bytes: u64,
    },
    Error(String),
}

/// Start the model's thread on `gpu`; `notify` wakes the UI after each event.
pub fn spawn(
    gpu: Gpu,
    commands: Receiver<Command>,
    events: Sender<Event>,
    notify: impl Fn() + Send + 'static,
) {
    std::thread::Builder::new()
        .name("kiln-model".into())
        .spawn(move || {
            let mut worker = Worker {
                gpu,
                model: None,
                session: None,
                events,
                notify: Box::new(notify),
            };
            while let Ok(command) = commands.recv() {
                if let Err(e) = pollster::block_on(worker.run(command)) {
                    worker.send(Event::Error(format!("{e:#}")));
                }
            }
        })
        .expect("spawn the model thread");
}

struct Worker {
    gpu: Gpu,
    model: Option<Arc<TextModel>>,
    session: Option<Session>,
    events: Sender<Event>,
    notify: Box<dyn Fn() + Send>,
}

impl Worker {
    fn send(&self, e: Event) {
        let _ = self.events.send(e);
        (self.notify)();
    }

    async fn run(&mut self, command: Command) -> anyhow::Result<()> {
        match command {
            Command::Load(path) => self.load(path).await,
            Command::Reset => {
                if let Some(s) = self.session.as_mut() {
                    s.reset();
                }
                Ok(())
            }
            Command::Reply { messages, options } => self.reply(&messages, options).await,
        }
    }

    async fn load(&mut self, path: Option<PathBuf>) -> anyhow::Result<()> {
        // The old model's memory goes first.
        self.session = None;
        self.model = None;
        let path = match path {
            Some(p) => p,
            None => {
                let cache = kiln::fetch::cache_dir();
                let mut note = |m: &str| self.send(Event::Note(m.to_string()));
                kiln::fetch::ensure(&kiln::fetch::SMOLLM2_135M, &cache, &mut note)?
            }
        };
        self.send(Event::Note(format!("loading {}", path.display())));
        let events = self.events.clone();
        let options = kiln::load::LoadOptions {
            progress: Some(Box::new(|p: &kiln::load::Progress| {
                let _ = events.send(Event::Progress {
                    done: p.bytes_done,
                    total: p.bytes_total,
                });
                (self.notify)();
            })),
            ..Default::default()
        };
        let model = Arc::new(TextModel::load(&self.gpu, &path, options).await?);
        if !model.has_chat_template() {
            anyhow::bail!(
                "{} has no chat template (tokenizer_config.json); pick a chat model",
                path.display()
            );
        }
        let mut note = |m: &str| self.send(Event::Note(m.to_string()));
        kiln::tune::ensure(&self.gpu, model.matrix_dtypes(), &mut note).await?;
        self.session = Some(model.session(CONTEXT).await?);
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into(),
        );
        self.send(Event::Loaded {
            name,
            weight_bytes: model.weight_bytes(),
        });
        self.model = Some(model);
        Ok(())
    }

    async fn reply(
        &mut self,
        messages: &[Message],
        options: GenerateOptions,
    ) -> anyhow::Result<()> {
        let (Some(model), Some(session)) = (self.model.clone(), self.session.as_mut()) else {
            anyhow::bail!("no model is loaded");
        };
        let prompt = model.encode_chat(messages)?;
        let mut generation = session.generate(&prompt, options).await?;
        while let Some(text) = generation.next().await {
            let text = text?;
            let _ = self.events.send(Event::Text(text));
            (self.notify)();
        }
        let (stats, finish) = (generation.stats(), generation.finish());
        let gpu_bytes = session.gpu_bytes();
        self.send(Event::Done {
            stats,
            finish,
            gpu_bytes,
        });
        Ok(())
    }
}
