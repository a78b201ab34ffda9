//! The window: a model picker with a load bar, the conversation with its reply streaming in,
//! Send / Stop / New chat, the sampling options, and a status line (adapter, tokens/s, GPU
//! memory). Everything the model does happens on the worker thread; this only draws and
//! sends commands, so a frame never waits on the model (the pacer bounds how much model
//! work is queued ahead of each frame on the shared queue).

use crate::Args;
use crate::frames::{FrameStats, Phase};
use crate::worker::{self, Command, Event};
use eframe::egui::{self, Color32, RichText};
use egui_file_dialog::FileDialog;
use kiln::generate::{Finish, GenerateOptions, Message};
use kiln::{Gpu, Pacer, Sampling};
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::Instant;

/// Prompt tokens per prefill step: each is one model step between frames.
const PREFILL_CHUNK: usize = 16;

pub struct ChatApp {
    args: Args,
    commands: Sender<Command>,
    events: Receiver<Event>,
    adapter: String,
    pacer: Option<Pacer>,
    model: Model,
    system: String,
    turns: Vec<Message>,
    input: String,
    reply: Option<Reply>,
    sampling: Sampling,
    max_tokens: usize,
    /// The last reply's decode speed and how it ended.
    last: Option<(f64, Option<Finish>)>,
    error: Option<String>,
    dialog: FileDialog,
    frames: FrameStats,
    screenshot_pending: bool,
}

#[derive(Default)]
struct Model {
    name: Option<String>,
    /// What loading is doing, and the upload's fraction done.
    loading: Option<(String, f32)>,
    weight_bytes: u64,
    gpu_bytes: u64,
}

/// The reply being generated.
struct Reply {
    cancel: Arc<AtomicBool>,
    first: Option<Instant>,
    pieces: usize,
}

impl ChatApp {
    pub fn new(cc: &eframe::CreationContext<'_>, args: Args) -> anyhow::Result<ChatApp> {
        let rs = cc
            .wgpu_render_state
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("eframe is not rendering with wgpu"))?;
        // kiln runs on the device the UI renders with.
        let gpu = Gpu::from_device(rs.device.clone(), rs.queue.clone());
        let adapter = gpu.describe();
        let cpu = gpu.info().device_type == eframe::wgpu::DeviceType::Cpu;
        let pacer = Pacer::new(args.per_frame.unwrap_or(if cpu { 1 } else { 4 }))
            .with_parts(args.parts.unwrap_or(if cpu { 4 } else { 1 }));
        eprintln!("kiln-desktop: {pacer:?}");
        eprintln!("kiln-desktop: rendering and running the model on {adapter}");
        let (commands, from_ui) = channel();
        let (to_ui, events) = channel();
        let ctx = cc.egui_ctx.clone();
        worker::spawn(gpu, from_ui, to_ui, move || ctx.request_repaint());
        let _ = commands.send(Command::Load(args.model.clone()));
        Ok(ChatApp {
            pacer: (!args.no_pacing).then_some(pacer),
            system: args.system.clone(),
            sampling: Sampling {
                temperature: args.temperature,
                ..Sampling::default()
            },
            max_tokens: args.max_tokens.max(1),
            args,
            commands,
            events,
            adapter,
            model: Model {
                loading: Some(("starting".into(), 0.0)),
                ..Model::default()
            },
            turns: Vec::new(),
            input: String::new(),
            reply: None,
            last: None,
            error: None,
            dialog: FileDialog::new(),
            frames: FrameStats::default(),
            screenshot_pending: false,
        })
    }

    fn busy(&self) -> bool {
        self.reply.is_some() || self.model.loading.is_some()
    }

    fn load(&mut self, path: Option<std::path::PathBuf>) {
        if let Some(r) = &self.reply {
            r.cancel.store(true, Ordering::Relaxed);
        }
        // The worker drops the old model first: until the new one is ready there is none.
        self.model = Model {
            loading: Some(("starting".into(), 0.0)),
            ..Model::default()
        };
        self.turns.clear();
        self.error = None;
        let _ = self.commands.send(Command::Load(path));
    }

    fn send(&mut self) {
        let text = self.input.trim().to_string();
        if text.is_empty() || self.reply.is_some() || self.model.name.is_none() {
            return;
        }
        self.input.clear();
        self.error = None;
        self.turns.push(Message::new("user", &text));
        let mut messages = vec![Message::new("system", &self.system)];
        messages.extend(self.turns.iter().cloned());
        self.turns.push(Message::new("assistant", ""));
        let cancel = Arc::new(AtomicBool::new(false));
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let options = GenerateOptions {
            max_tokens: self.max_tokens,
            sampling: Sampling {
                seed,
                ..self.sampling
            },
            cancel: Some(cancel.clone()),
            prefill_chunk: Some(PREFILL_CHUNK),
            pacer: self.pacer.clone(),
            ..Default::default()
        };
        self.reply = Some(Reply {
            cancel,
            first: None,
            pieces: 0,
        });
        let _ = self.commands.send(Command::Reply { messages, options });
    }

    fn new_chat(&mut self) {
        if let Some(r) = &self.reply {
            r.cancel.store(true, Ordering::Relaxed);
        }
        self.turns.clear();
        self.last = None;
        let _ = self.commands.send(Command::Reset);
        eprintln!("kiln-desktop: new chat");
    }

    /// Take what the model's thread reported since the last frame.
    fn drain(&mut self, ctx: &egui::Context) {
        while let Ok(e) = self.events.try_recv() {
            match e {
                Event::Note(n) => {
                    eprintln!("kiln-desktop: {n}");
                    self.model.loading = Some((n, 0.0));
                }
                Event::Progress { done, total } => {
                    let f = if total == 0 {
                        1.0
                    } else {
                        done as f32 / total as f32
                    };
                    let note = format!("{:.0} / {:.0} MB", done as f64 / 1e6, total as f64 / 1e6);
                    self.model.loading = Some((note, f));
                }
                Event::Loaded { name, weight_bytes } => {
                    eprintln!("kiln-desktop: ready: {name}");
                    self.model = Model {
                        name: Some(name),
                        loading: None,
                        weight_bytes,
                        gpu_bytes: 0,
                    };
                    self.turns.clear();
                    self.last = None;
                }
                Event::Text(t) => {
                    if let Some(r) = self.reply.as_mut() {
                        if r.first.is_none() {
                            eprintln!("kiln-desktop: replying");
                            r.first = Some(Instant::now());
                        }
                        r.pieces += 1;
                    }
                    if let Some(m) = self.turns.last_mut() {
                        m.content.push_str(&t);
                    }
                }
                Event::Done {
                    stats,
                    finish,
                    gpu_bytes,
                } => {
                    self.reply = None;
                    self.model.gpu_bytes = gpu_bytes;
                    self.last = Some((stats.decode_tokens_per_sec(), finish));
                    self.print_turn();
                    // Stopped before a token: the turn leaves no empty reply behind.
                    let last = self.turns.last();
                    if last.is_some_and(|m| m.role == "assistant" && m.content.is_empty()) {
                        self.turns.truncate(self.turns.len().saturating_sub(2));
                    }
                    eprintln!(
                        "kiln-desktop: reply done ({} tokens, {:.1} tok/s, {finish:?})",
                        stats.generated_tokens,
                        stats.decode_tokens_per_sec()
                    );
                    if self.args.screenshot.is_some() {
                        ctx.send_viewport_cmd(
                            egui::ViewportCommand::Screenshot(Default::default()),
                        );
                        self.screenshot_pending = true;
                    }
                }
                Event::Error(e) => {
                    eprintln!("kiln-desktop: error: {e}");
                    if self.reply.take().is_some() {
                        // The failed turn leaves the conversation.
                        self.turns.truncate(self.turns.len().saturating_sub(2));
                    }
                    self.model.loading = None;
                    self.error = Some(e);
                }
            }
        }
    }

    fn print_turn(&self) {
        if !self.args.print_transcript {
            return;
        }
        let n = self.turns.len();
        let mut out = std::io::stdout().lock();
        for m in &self.turns[n.saturating_sub(2)..] {
            let _ = writeln!(out, "{}: {}", m.role, m.content);
        }
        let _ = out.flush();
    }

    fn save_screenshot(&mut self, ctx: &egui::Context) {
        let Some(path) = &self.args.screenshot else {
            return;
        };
        let images: Vec<Arc<egui::ColorImage>> = ctx.input(|i| {
            i.raw
                .events
                .iter()
                .filter_map(|e| match e {
                    egui::Event::Screenshot { image, .. } => Some(image.clone()),
                    _ => None,
                })
                .collect()
        });
        for image in images {
            let [w, h] = image.size;
            let rgba: Vec<u8> = image.pixels.iter().flat_map(|p| p.to_array()).collect();
            let saved = image::RgbaImage::from_raw(w as u32, h as u32, rgba)
                .ok_or_else(|| "the screenshot's size does not match its pixels".to_string())
                .and_then(|img| img.save(path).map_err(|e| e.to_string()));
            self.screenshot_pending = false;
            match saved {
                Ok(()) => eprintln!("kiln-desktop: screenshot saved to {}", path.display()),
                Err(e) => eprintln!("kiln-desktop: screenshot not saved: {e}"),
            }
        }
    }
}

impl eframe::App for ChatApp {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        // A frame: the model may submit its next step(s).
        if let Some(p) = &self.pacer {
            p.frame();
        }
        self.drain(ctx);
        // Keys: Ctrl+Q quits, Escape stops the reply, Ctrl+N starts a new chat, Ctrl+O opens
        // a GGUF and Ctrl+Shift+O a folder. While the file dialog is open, its own keys apply
        // (Escape closes it, Ctrl+N makes a folder, / edits the path). Each key press is
        // matched with the modifiers held at that press: when the app is idle, one frame can
        // carry a whole Ctrl+Shift+O, press and release.
        use egui::{Key, Modifiers};
        let dialog = self.dialog_open();
        let (quit, stop, new_chat, open) = ctx.input_mut(|i| {
            let quit = i.consume_key(Modifiers::COMMAND, Key::Q);
            if dialog {
                return (quit, false, false, None);
            }
            let folder = i.consume_key(Modifiers::COMMAND | Modifiers::SHIFT, Key::O);
            let gguf = i.consume_key(Modifiers::COMMAND, Key::O);
            (
                quit,
                i.consume_key(Modifiers::NONE, Key::Escape),
                i.consume_key(Modifiers::COMMAND, Key::N),
                (folder || gguf).then_some(folder),
            )
        });
        if quit {
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
        }
        if stop && let Some(r) = &self.reply {
            r.cancel.store(true, Ordering::Relaxed);
        }
        if new_chat && self.model.name.is_some() {
            self.new_chat();
        }
        if let Some(folder) = open
            && self.model.loading.is_none()
        {
            self.open_dialog(ctx, folder);
        }
        // Redraw at 60 Hz while something changes (or while measuring frame times), as a
        // display's vsync would pace it.
        // (A requested screenshot arrives in a later frame.)
        if self.busy() || self.args.frame_stats || self.screenshot_pending {
            ctx.request_repaint_after(std::time::Duration::from_millis(16));
        }
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let ctx = ui.ctx().clone();
        let phase = if self.model.loading.is_some() {
            Phase::Loading
        } else if self.reply.is_some() {
            Phase::Generating
        } else {
            Phase::Idle
        };
        self.frames.frame(phase);
        self.save_screenshot(&ctx);
        self.dialog.update(&ctx);
        if let Some(path) = self.dialog.take_picked() {
            self.load(Some(path));
        }
        egui::Panel::top("model").show(ui, |ui| self.model_bar(ui));
        egui::Panel::bottom("status").show(ui, |ui| self.status_line(ui));
        egui::Panel::bottom("input").show(ui, |ui| self.input_row(ui));
        egui::Panel::right("options").show(ui, |ui| self.options(ui));
        egui::CentralPanel::default().show(ui, |ui| self.conversation(ui));
    }

    fn on_exit(&mut self) {
        if self.args.frame_stats {
            eprintln!("{}", self.frames.summary());
        }
    }
}

impl ChatApp {
    fn model_bar(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            let name = self.model.name.as_deref().unwrap_or("no model");
            ui.label(RichText::new(format!("Model: {name}")).strong());
            let idle = self.model.loading.is_none();
            if ui
                .add_enabled(idle, egui::Button::new("Default model"))
                .clicked()
            {
                self.load(None);
            }
            let folder = ui
                .add_enabled(idle, egui::Button::new("Open folder…"))
                .on_hover_text("Ctrl+Shift+O")
                .clicked();
            let gguf = ui
                .add_enabled(idle, egui::Button::new("Open GGUF…"))
                .on_hover_text("Ctrl+O")
                .clicked();
            if folder || gguf {
                self.open_dialog(ui.ctx(), folder);
            }
        });
        if let Some((note, f)) = &self.model.loading {
            ui.add(egui::ProgressBar::new(*f).text(note.clone()).animate(true));
        }
        if let Some(e) = &self.error {
            ui.label(RichText::new(e).color(Color32::from_rgb(0xe0, 0x40, 0x40)));
        }
    }

    fn conversation(&mut self, ui: &mut egui::Ui) {
        egui::ScrollArea::vertical()
            .stick_to_bottom(true)
            .auto_shrink(false)
            .show(ui, |ui| {
                if self.turns.is_empty() && self.model.name.is_some() {
                    ui.weak("Ask something below; Enter sends.");
                }
                let n = self.turns.len();
                for (i, m) in self.turns.iter().enumerate() {
                    let (who, color) = if m.role == "user" {
                        ("You", Color32::from_rgb(0x6c, 0xa8, 0xff))
                    } else {
                        ("Assistant", Color32::from_rgb(0x8f, 0xd1, 0x8f))
                    };
                    ui.label(RichText::new(who).color(color).strong());
                    let typing = i + 1 == n && self.reply.is_some();
                    if typing && m.content.is_empty() {
                        ui.horizontal(|ui| {
                            ui.spinner();
                            ui.weak("thinking…");
                        });
                    } else {
                        let text = if typing {
                            format!("{}▌", m.content)
                        } else {
                            m.content.clone()
                        };
                        ui.label(text);
                    }
                    ui.add_space(8.0);
                }
            });
    }

    fn input_row(&mut self, ui: &mut egui::Ui) {
        ui.add_space(4.0);
        ui.horizontal(|ui| {
            let ready = self.model.name.is_some() && self.model.loading.is_none();
            let edit = egui::TextEdit::singleline(&mut self.input)
                .hint_text("Message")
                .desired_width(ui.available_width() - 170.0);
            let field = ui.add_enabled(ready, edit);
            let enter = field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
            if ready && self.reply.is_none() && !field.has_focus() && !self.dialog_open() {
                field.request_focus();
            }
            if let Some(r) = &self.reply {
                if ui.button("Stop").clicked() {
                    r.cancel.store(true, Ordering::Relaxed);
                }
            } else if ui.add_enabled(ready, egui::Button::new("Send")).clicked() || enter {
                self.send();
            }
            if ui
                .add_enabled(ready, egui::Button::new("New chat"))
                .clicked()
            {
                self.new_chat();
            }
        });
        ui.add_space(4.0);
    }

    /// Open the file dialog for a model folder or a GGUF file. The message field gives up
    /// the keyboard, so that the dialog's keys (/ to type a path, arrows, Enter) reach it.
    fn open_dialog(&mut self, ctx: &egui::Context, folder: bool) {
        ctx.memory_mut(|m| m.stop_text_input());
        if folder {
            self.dialog.pick_directory();
        } else {
            self.dialog.pick_file();
        }
        eprintln!(
            "kiln-desktop: file dialog open ({})",
            if folder { "folder" } else { "GGUF" }
        );
    }

    fn dialog_open(&self) -> bool {
        matches!(self.dialog.state(), egui_file_dialog::DialogState::Open)
    }

    fn options(&mut self, ui: &mut egui::Ui) {
        ui.heading("Sampling");
        ui.add(egui::Slider::new(&mut self.sampling.temperature, 0.0..=2.0).text("temperature"));
        ui.add(egui::Slider::new(&mut self.sampling.top_p, 0.05..=1.0).text("top-p"));
        ui.add(egui::Slider::new(&mut self.sampling.top_k, 0..=200).text("top-k"));
        ui.add(egui::Slider::new(&mut self.max_tokens, 1..=2048).text("max tokens"));
        if self.sampling.temperature <= 0.0 {
            ui.weak("temperature 0: greedy");
        }
        ui.separator();
        ui.label("System prompt");
        ui.add(egui::TextEdit::multiline(&mut self.system).desired_rows(3));
    }

    fn status_line(&self, ui: &mut egui::Ui) {
        let mut parts = vec![self.adapter.clone()];
        if let Some(r) = &self.reply {
            if let Some(first) = r.first {
                let secs = first.elapsed().as_secs_f64();
                if r.pieces > 1 && secs > 0.0 {
                    parts.push(format!("{:.1} tok/s", (r.pieces - 1) as f64 / secs));
                }
            } else {
                parts.push("reading the prompt…".into());
            }
        } else if let Some((tps, finish)) = self.last {
            let why = match finish {
                Some(Finish::Eos) => "end of turn",
                Some(Finish::Stop) => "stop text",
                Some(Finish::MaxTokens) => "max tokens",
                Some(Finish::Context) => "context full",
                Some(Finish::Cancelled) => "stopped",
                Some(Finish::Error) | None => "error",
            };
            parts.push(format!("last reply {tps:.1} tok/s ({why})"));
        }
        let mb = |b: u64| b as f64 / 1e6;
        if self.model.name.is_some() {
            parts.push(format!(
                "GPU memory {:.0} MB (weights {:.0} MB)",
                mb(self.model.weight_bytes + self.model.gpu_bytes),
                mb(self.model.weight_bytes)
            ));
        }
        ui.label(RichText::new(parts.join("  ·  ")).small());
    }
}
