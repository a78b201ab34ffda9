//! The OpenAI API's responses: the JSON of answers, chunks and errors. Requests are read in
//! `request.rs`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kiln::generate::Finish;
use serde_json::{Value, json};

pub use super::request::{ApiError, Job, Kind, parse};

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, axum::Json(self.body())).into_response();
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            r.headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from_static("1"));
        }
        r
    }
}

/// OpenAI's finish_reason.
pub fn finish_reason(f: Finish) -> &'static str {
    match f {
        Finish::Eos | Finish::Stop | Finish::Cancelled => "stop",
        Finish::MaxTokens | Finish::Context => "length",
        Finish::Error => "error",
    }
}

/// The text part of a choice: `text`, or a chat message or delta.
pub fn choice(kind: Kind, chunk: bool, text: &str, finish: Option<Finish>, first: bool) -> Value {
    let reason = finish.map(finish_reason);
    match (kind, chunk) {
        (Kind::Completion, _) => {
            json!({"index": 0, "text": text, "logprobs": null, "finish_reason": reason})
        }
        (Kind::Chat, false) => json!({
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "logprobs": null,
            "finish_reason": reason,
        }),
        (Kind::Chat, true) => {
            let delta = match (first, text.is_empty()) {
                (true, _) => json!({"role": "assistant", "content": text}),
                (false, false) => json!({"content": text}),
                (false, true) => json!({}),
            };
            json!({"index": 0, "delta": delta, "logprobs": null, "finish_reason": reason})
        }
    }
}

pub fn usage(prompt: usize, completion: usize) -> Value {
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    })
}
