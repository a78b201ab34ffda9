//! `kiln serve`: an OpenAI-compatible HTTP server (axum on tokio) in front of a
//! continuously batching engine ([`kiln::generate::Batcher`]).
//!
//! Handlers parse and check a request, tokenize it, and queue it on a bounded channel
//! (full: 429 with Retry-After). One engine thread owns the GPU session: it admits queued
//! requests while slots are free, runs batch steps while any request is being served, and
//! sleeps on the channel when none is. Each request's text comes back on a channel of its
//! own; a client that disconnects drops it, and its slot is freed at the next step.

mod api;
mod metrics;
mod request;

use anyhow::{Context, Result};
use api::{ApiError, Job, Kind};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt;
use kiln::generate::{Batcher, Finish, TextModel, Update};
use metrics::Metrics;
use serde_json::json;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

/// Bodies over this are refused with 413.
const BODY_LIMIT: usize = 4 << 20;

struct Shared {
    model: Arc<TextModel>,
    name: String,
    context: usize,
    queue: mpsc::Sender<Queued>,
    metrics: Metrics,
    api_key: Option<String>,
    ready: std::sync::atomic::AtomicBool,
}

impl Shared {
    /// Which of the model's GPU devices was lost, and why, once one has been: requests then
    /// fail with 503 and `/health` reports it, so that a supervisor restarts the server.
    fn lost(&self) -> Option<String> {
        self.model.stages().iter().find_map(|stage| {
            let why = stage.gpu.lost()?;
            Some(format!(
                "the GPU device on {} was lost ({why})",
                stage.gpu.describe()
            ))
        })
    }

    /// 503 naming the loss.
    fn lost_error(&self, why: &str) -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{why}; the server must be restarted"),
        )
    }
}

/// A request on its way to the engine.
struct Queued {
    job: Job,
    arrived: Instant,
    updates: mpsc::UnboundedSender<Update>,
}

pub fn serve(args: &crate::cli::Serve) -> Result<()> {
    let host = args.host.clone();
    let port = args.port;
    let (slots, queue, chunk) = (args.slots, args.queue, args.chunk);
    anyhow::ensure!(slots >= 1, "--slots must be at least 1");
    anyhow::ensure!(queue >= 1, "--queue must be at least 1");
    // Few blocking threads (they tokenize): each would keep a malloc arena of its own, and
    // the server's memory would not return to its idle level after a burst.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(4)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    // Bind first, so a taken port fails before minutes of loading, and answer 503 while
    // loading (a router's health probe then sees "not yet" rather than a hung connection).
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind((host.as_str(), port)))
        .with_context(|| format!("listening on {host}:{port}"))?;
    let (listener, loading) = answer_while_loading(&runtime, listener)?;
    let loaded = crate::text::load(&args.model);
    let listener = loading.finish(&runtime, listener)?;
    let loaded = loaded?;
    let model = loaded.model.clone();
    let session = pollster::block_on(model.batch_session(loaded.context, slots))?;
    let batcher = Batcher::new(session, chunk)?;
    let name = model_name(&model);
    let (tx, rx) = mpsc::channel(queue);
    let shared = Arc::new(Shared {
        metrics: Metrics::new(&model.gpu().describe(), &name, slots),
        model,
        name,
        context: loaded.context,
        queue: tx,
        api_key: args.api_key.clone(),
        ready: false.into(),
    });
    let engine = {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("kiln-engine".into())
            .spawn(move || run_engine(batcher, rx, &shared))?
    };
    shared
        .ready
        .store(true, std::sync::atomic::Ordering::SeqCst);
    eprintln!(
        "serving {} on http://{host}:{port} ({slots} slots of {} tokens, queue {queue})",
        shared.name, shared.context
    );
    let app = router(shared.clone());
    runtime.block_on(async {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
    })?;
    drop(shared);
    let _ = engine.join();
    Ok(())
}

/// The server of the loading phase: 503 to every request, until `finish`.
struct Loading {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Serve 503s on a clone of `listener`'s socket while the model loads; returns the socket
/// to serve on afterwards.
fn answer_while_loading(
    runtime: &tokio::runtime::Runtime,
    listener: tokio::net::TcpListener,
) -> Result<(std::net::TcpListener, Loading)> {
    let socket = listener.into_std().context("taking the listening socket")?;
    let clone = socket.try_clone().context("sharing the listening socket")?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let _in_runtime = runtime.enter();
    let during = tokio::net::TcpListener::from_std(clone).context("listening while loading")?;
    let app = Router::new().fallback(|| async {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the model is still loading",
        )
    });
    let task = runtime.spawn(async move {
        axum::serve(during, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });
    Ok((socket, Loading { stop, task }))
}

impl Loading {
    /// Stop answering 503s (requests in flight finish) and hand back the listener.
    fn finish(
        self,
        runtime: &tokio::runtime::Runtime,
        socket: std::net::TcpListener,
    ) -> Result<tokio::net::TcpListener> {
        let _ = self.stop.send(());
        runtime
            .block_on(self.task)
            .context("the loading-phase server")?
            .context("the loading-phase server")?;
        let _in_runtime = runtime.enter();
        Ok(tokio::net::TcpListener::from_std(socket)?)
    }
}

/// The id `/v1/models` lists: the model's folder or file name.
fn model_name(model: &TextModel) -> String {
    let origin = model.origin().trim_end_matches('/');
    let base = origin.rsplit('/').next().unwrap_or(origin);
    base.trim_end_matches(".gguf").to_string()
}

fn router(shared: Arc<Shared>) -> Router {
    let v1 = Router::new()
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(chat))
        .route("/v1/models", get(models))
        .route_layer(middleware::from_fn_with_state(shared.clone(), authorize));
    Router::new()
        .merge(v1)
        .route("/health", get(health))
        .route("/metrics", get(metrics_text))
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed here")
        })
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint") })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(shared)
}

async fn authorize(State(s): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    if let Some(key) = &s.api_key {
        let given = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(key.as_str()) {
            return ApiError::new(StatusCode::UNAUTHORIZED, "a valid API key is required")
                .into_response();
        }
    }
    next.run(req).await
}

async fn health(State(s): State<Arc<Shared>>) -> Response {
    if let Some(why) = s.lost() {
        return (StatusCode::SERVICE_UNAVAILABLE, why).into_response();
    }
    match s.ready.load(std::sync::atomic::Ordering::SeqCst) {
        true => (StatusCode::OK, "ok").into_response(),
        false => (StatusCode::SERVICE_UNAVAILABLE, "loading").into_response(),
    }
}

async fn metrics_text(State(s): State<Arc<Shared>>) -> Response {
    let waiting = s.queue.max_capacity() - s.queue.capacity();
    s.metrics.waiting.set(waiting as i64);
    let held: u64 = s
        .model
        .stages()
        .iter()
        .map(|st| st.gpu.memory_in_use())
        .sum();
    s.metrics.gpu_memory.set(held as i64);
    s.metrics.device_lost.set(i64::from(s.lost().is_some()));
    (
        [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
        s.metrics.render(),
    )
        .into_response()
}

async fn models(State(s): State<Arc<Shared>>) -> Response {
    axum::Json(json!({
        "object": "list",
        "data": [{"id": s.name, "object": "model", "created": 0, "owned_by": "kiln"}],
    }))
    .into_response()
}

async fn completions(
    State(s): State<Arc<Shared>>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    respond(s, body, Kind::Completion).await
}

async fn chat(
    State(s): State<Arc<Shared>>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    respond(s, body, Kind::Chat).await
}

async fn respond(
    s: Arc<Shared>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
    kind: Kind,
) -> Response {
    let endpoint = match kind {
        Kind::Completion => "completions",
        Kind::Chat => "chat",
    };
    let r = match answer(s.clone(), body, kind).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    s.metrics.answered(endpoint, r.status().as_u16());
    r
}

async fn answer(
    s: Arc<Shared>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
    kind: Kind,
) -> Result<Response, ApiError> {
    let bytes = body.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    if let Some(why) = s.lost() {
        return Err(s.lost_error(&why));
    }
    let model = s.model.clone();
    let (name, context) = (s.name.clone(), s.context);
    // Tokenizing a long prompt is real work: off the async threads.
    let job =
        tokio::task::spawn_blocking(move || api::parse(&bytes, kind, &*model, &name, context))
            .await
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    let (updates, mut rx) = mpsc::unbounded_channel();
    let (stream, include_usage) = (job.stream, job.include_usage);
    let prompt_tokens = job.prompt.len();
    let queued = Queued {
        job,
        arrived: Instant::now(),
        updates,
    };
    s.queue.try_send(queued).map_err(|e| match e {
        mpsc::error::TrySendError::Full(_) => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "the server's queue is full; retry shortly",
        ),
        mpsc::error::TrySendError::Closed(_) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the engine has stopped")
        }
    })?;
    let id = format!(
        "{}-{}",
        if kind == Kind::Chat {
            "chatcmpl"
        } else {
            "cmpl"
        },
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let head =
        json!({"id": id, "object": kind.object(stream), "created": created, "model": s.name});
    if !stream {
        let mut text = String::new();
        let mut end = None;
        while let Some(u) = rx.recv().await {
            match u {
                Update::Text(t) => text.push_str(&t),
                Update::Done(why, stats) => end = Some((why, stats)),
            }
        }
        let (why, stats) = end.ok_or_else(|| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the request ended without an answer",
            )
        })?;
        if why == Finish::Error {
            if let Some(lost) = s.lost() {
                return Err(s.lost_error(&lost));
            }
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "generation failed on the GPU",
            ));
        }
        let mut body = head;
        body["choices"] = json!([api::choice(kind, false, &text, Some(why), true)]);
        body["usage"] = api::usage(prompt_tokens, stats.generated_tokens);
        return Ok(axum::Json(body).into_response());
    }
    let mut first = true;
    let events = async_stream(rx).map(move |u| {
        let mut chunk = head.clone();
        let data = match u {
            Some(Update::Text(t)) => {
                chunk["choices"] = json!([api::choice(kind, true, &t, None, first)]);
                first = false;
                chunk.to_string()
            }
            Some(Update::Done(why, stats)) => {
                chunk["choices"] = json!([api::choice(kind, true, "", Some(why), first)]);
                if include_usage {
                    chunk["usage"] = api::usage(prompt_tokens, stats.generated_tokens);
                }
                chunk.to_string()
            }
            None => "[DONE]".to_string(),
        };
        Ok::<_, std::convert::Infallible>(Event::default().data(data))
    });
    Ok(Sse::new(events).into_response())
}

/// The request's updates, then `None` once: the stream's `data: [DONE]`.
fn async_stream(
    rx: mpsc::UnboundedReceiver<Update>,
) -> impl futures_util::Stream<Item = Option<Update>> {
    tokio_stream::wrappers::UnboundedReceiverStream::new(rx)
        .map(Some)
        .chain(futures_util::stream::once(async { None }))
}

/// The engine loop (its own thread): admit while slots are free, step while anything runs,
/// sleep on the queue when nothing does. Ends when every sender is gone.
fn run_engine(mut batcher: Batcher, mut rx: mpsc::Receiver<Queued>, s: &Shared) {
    loop {
        while batcher.free() > 0 {
            match rx.try_recv() {
                Ok(q) => admit(&mut batcher, q, s),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) if batcher.running() == 0 => return,
                Err(mpsc::error::TryRecvError::Disconnected) => break,
            }
        }
        if batcher.running() == 0 {
            s.metrics.running.set(0);
            s.metrics.kv_usage.set(0.0);
            match rx.blocking_recv() {
                Some(q) => {
                    admit(&mut batcher, q, s);
                    continue;
                }
                None => return,
            }
        }
        s.metrics.running.set(batcher.running() as i64);
        s.metrics.kv_usage.set(batcher.kv_usage());
        match pollster::block_on(batcher.step()) {
            Ok(r) => {
                s.metrics.prompt_tokens.inc_by(r.prompt_tokens as u64);
                s.metrics
                    .generation_tokens
                    .inc_by(r.generated_tokens as u64);
                s.metrics.batch.observe((r.prefilling + r.decoding) as f64);
                s.metrics.step.observe(r.secs);
            }
            Err(e) => eprintln!("a batch step failed: {e}"),
        }
        s.metrics.running.set(batcher.running() as i64);
        s.metrics.kv_usage.set(batcher.kv_usage());
    }
}

fn admit(batcher: &mut Batcher, q: Queued, s: &Shared) {
    let Queued {
        job,
        arrived,
        updates,
    } = q;
    let (ttft, itl, e2e) = (
        s.metrics.ttft.clone(),
        s.metrics.itl.clone(),
        s.metrics.e2e.clone(),
    );
    let mut last: Option<Instant> = None;
    let sink = Box::new(move |u: Update| {
        let now = Instant::now();
        match &u {
            Update::Text(_) => {
                match last {
                    None => ttft.observe((now - arrived).as_secs_f64()),
                    Some(t) => itl.observe((now - t).as_secs_f64()),
                }
                last = Some(now);
            }
            Update::Done(..) => e2e.observe((now - arrived).as_secs_f64()),
        }
        updates.send(u).is_ok()
    });
    let request = kiln::generate::Request {
        prompt: job.prompt,
        options: job.options,
        sink,
    };
    if let Err((mut r, e)) = batcher.admit(request) {
        // Checked before queueing, so this is rare (a sampling option the model refuses).
        eprintln!("a request was refused: {e}");
        (r.sink)(Update::Done(Finish::Error, Default::default()));
    }
}
