//! Request bodies of the OpenAI API as clients send them (unknown fields ignored), checked
//! into what kiln generates, with OpenAI-style errors. Free of the HTTP server and of the
//! GPU, so that the fuzz target `request` (fuzz/checks.rs) runs it as `kiln serve` does.

use http::StatusCode;
use kiln::Sampling;
use kiln::generate::{GenerateOptions, Message, TextModel};
use serde::Deserialize;
use serde_json::{Value, json};
/// An OpenAI-style error: `{"error": {"message", "type", "param", "code"}}` with its status.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub param: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            param: None,
        }
    }
    pub fn bad(param: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            param: Some(param),
        }
    }
    fn kind(&self) -> &'static str {
        match self.status {
            StatusCode::UNAUTHORIZED => "authentication_error",
            StatusCode::NOT_FOUND => "not_found_error",
            StatusCode::TOO_MANY_REQUESTS => "rate_limit_error",
            s if s.is_server_error() => "server_error",
            _ => "invalid_request_error",
        }
    }
    pub fn body(&self) -> Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind(),
            "param": self.param,
            "code": self.status.as_u16(),
        }})
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Deserialize)]
struct Part {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize)]
struct ChatMessage {
    role: String,
    content: Option<Content>,
}

#[derive(Deserialize, Default)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

/// `/v1/completions` and `/v1/chat/completions` bodies: the fields kiln reads.
#[derive(Deserialize)]
pub struct Body {
    model: Option<String>,
    prompt: Option<OneOrMany>,
    messages: Option<Vec<ChatMessage>>,
    max_tokens: Option<u64>,
    max_completion_tokens: Option<u64>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    top_k: Option<i64>,
    min_p: Option<f32>,
    repetition_penalty: Option<f32>,
    seed: Option<u64>,
    stop: Option<OneOrMany>,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
    n: Option<u64>,
}

/// A checked request, ready for the engine.
pub struct Job {
    pub prompt: Vec<u32>,
    pub options: GenerateOptions,
    pub stream: bool,
    pub include_usage: bool,
}

/// Which endpoint a body came to.
#[derive(Copy, Clone, PartialEq, Eq)]
pub enum Kind {
    Completion,
    Chat,
}

impl Kind {
    pub fn object(self, chunk: bool) -> &'static str {
        match (self, chunk) {
            (Kind::Completion, _) => "text_completion",
            (Kind::Chat, false) => "chat.completion",
            (Kind::Chat, true) => "chat.completion.chunk",
        }
    }
}

/// What parsing needs of the model: its chat template, tokenizer and sampling limits.
pub trait Prompter {
    /// The conversation through the model's chat template.
    fn render_chat(&self, messages: &[Message]) -> kiln::Result<String>;
    /// Text to token ids.
    fn encode(&self, text: &str) -> kiln::Result<Vec<u32>>;
    /// Whether the model can sample so.
    fn check_sampling(&self, sampling: &Sampling) -> kiln::Result<()>;
}

impl Prompter for TextModel {
    fn render_chat(&self, messages: &[Message]) -> kiln::Result<String> {
        TextModel::render_chat(self, messages)
    }
    fn encode(&self, text: &str) -> kiln::Result<Vec<u32>> {
        TextModel::encode(self, text)
    }
    fn check_sampling(&self, sampling: &Sampling) -> kiln::Result<()> {
        TextModel::check_sampling(self, sampling)
    }
}

/// Parse `bytes` as a `kind` request for `model` (served as `name`), with KV caches of
/// `context` positions.
pub fn parse(
    bytes: &[u8],
    kind: Kind,
    model: &(impl Prompter + ?Sized),
    name: &str,
    context: usize,
) -> Result<Job, ApiError> {
    let body: Body = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("invalid body: {e}")))?;
    if let Some(m) = &body.model {
        if m != name {
            let msg = format!("the model '{m}' does not exist; this server has '{name}'");
            return Err(ApiError {
                param: Some("model"),
                ..ApiError::new(StatusCode::NOT_FOUND, msg)
            });
        }
    }
    if body.n.is_some_and(|n| n != 1) {
        return Err(ApiError::bad("n", "only n = 1 is supported"));
    }
    let sampling = sampling(&body)?;
    let text = match kind {
        Kind::Completion => match body.prompt {
            Some(OneOrMany::One(p)) => p,
            Some(OneOrMany::Many(mut v)) if v.len() == 1 => v.remove(0),
            Some(OneOrMany::Many(_)) => {
                return Err(ApiError::bad("prompt", "one prompt per request"));
            }
            None => return Err(ApiError::bad("prompt", "'prompt' is required")),
        },
        Kind::Chat => {
            let messages = body
                .messages
                .ok_or_else(|| ApiError::bad("messages", "'messages' is required"))?;
            if messages.is_empty() {
                return Err(ApiError::bad("messages", "'messages' is empty"));
            }
            let mut conv = Vec::with_capacity(messages.len());
            for m in messages {
                let content = match m.content {
                    None => String::new(),
                    Some(Content::Text(t)) => t,
                    Some(Content::Parts(parts)) => {
                        let mut t = String::new();
                        for p in parts {
                            match (p.kind.as_str(), p.text) {
                                ("text", Some(s)) => t.push_str(&s),
                                (other, _) => {
                                    return Err(ApiError::bad(
                                        "messages",
                                        format!(
                                            "content parts of type '{other}' are not supported"
                                        ),
                                    ));
                                }
                            }
                        }
                        t
                    }
                };
                conv.push(Message::new(&m.role, &content));
            }
            model
                .render_chat(&conv)
                .map_err(|e| ApiError::bad("messages", e.to_string()))?
        }
    };
    let prompt = model
        .encode(&text)
        .map_err(|e| ApiError::bad("prompt", e.to_string()))?;
    if prompt.is_empty() {
        return Err(ApiError::bad("prompt", "the prompt is empty"));
    }
    if prompt.len() >= context {
        return Err(ApiError::bad(
            "prompt",
            format!(
                "the prompt has {} tokens, but the context holds {context}",
                prompt.len()
            ),
        ));
    }
    let room = context - prompt.len();
    let max_tokens = match body.max_completion_tokens.or(body.max_tokens) {
        Some(0) => return Err(ApiError::bad("max_tokens", "max_tokens must be at least 1")),
        Some(m) if m as usize > room => {
            return Err(ApiError::bad(
                "max_tokens",
                format!(
                    "max_tokens {m} and the prompt's {} tokens exceed the context of {context}",
                    prompt.len()
                ),
            ));
        }
        Some(m) => m as usize,
        None => room.min(match kind {
            Kind::Completion => 16,
            Kind::Chat => 512,
        }),
    };
    model
        .check_sampling(&sampling)
        .map_err(|e| ApiError::bad("top_k", e.to_string()))?;
    let stop = match body.stop {
        None => vec![],
        Some(OneOrMany::One(s)) => vec![s],
        Some(OneOrMany::Many(v)) => v,
    };
    if stop.iter().any(String::is_empty) {
        return Err(ApiError::bad("stop", "a stop string is empty"));
    }
    Ok(Job {
        prompt,
        options: GenerateOptions {
            max_tokens,
            sampling,
            stop,
            ..GenerateOptions::default()
        },
        stream: body.stream,
        include_usage: body.stream_options.unwrap_or_default().include_usage,
    })
}

/// Sampling from the body; absent fields take kiln's defaults (llama.cpp's).
fn sampling(b: &Body) -> Result<Sampling, ApiError> {
    let d = Sampling::default();
    let temperature = b.temperature.unwrap_or(d.temperature);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(ApiError::bad(
            "temperature",
            format!("temperature {temperature} must be in [0, 2]"),
        ));
    }
    let top_k = match b.top_k {
        None => d.top_k,
        Some(k) if k < 0 => {
            return Err(ApiError::bad(
                "top_k",
                format!("top_k {k} must be 0 or more"),
            ));
        }
        Some(k) => k as usize,
    };
    let s = Sampling {
        temperature,
        top_k,
        top_p: b.top_p.unwrap_or(d.top_p),
        min_p: b.min_p.unwrap_or(d.min_p),
        repetition_penalty: b.repetition_penalty.unwrap_or(d.repetition_penalty),
        seed: b.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0)
        }),
    };
    s.validate().map_err(|e| {
        let param = ["top_p", "min_p", "repetition_penalty"]
            .into_iter()
            .find(|p| e.to_string().starts_with(p))
            .unwrap_or("temperature");
        ApiError::bad(param, e.to_string())
    })?;
    Ok(s)
}
