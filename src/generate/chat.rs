//! Chat templates: the model's own Jinja template from `tokenizer_config.json`, rendered by
//! minijinja with Python-style string methods, as HF transformers renders it.

use crate::error::{Error, Result};

/// One turn of a conversation.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    /// "system", "user" or "assistant", as the template expects.
    pub role: String,
    /// The turn's text.
    pub content: String,
}

impl Message {
    /// A message of `role` saying `content`.
    pub fn new(role: &str, content: &str) -> Message {
        Message {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// A compiled chat template and the special tokens it may refer to.
pub struct ChatTemplate {
    env: minijinja::Environment<'static>,
    bos: String,
    eos: String,
}

fn token_text(v: Option<&serde_json::Value>) -> String {
    match v {
        Some(serde_json::Value::String(s)) => s.clone(),
        // {"content": "<s>", ...} as older configs write it
        Some(serde_json::Value::Object(o)) => o
            .get("content")
            .and_then(|c| c.as_str())
            .unwrap_or("")
            .to_string(),
        _ => String::new(),
    }
}

impl ChatTemplate {
    /// The template of a `tokenizer_config.json`, if it has one.
    pub fn from_tokenizer_config(
        origin: &str,
        config: &serde_json::Value,
    ) -> Result<Option<ChatTemplate>> {
        let source = match config.get("chat_template") {
            Some(serde_json::Value::String(s)) => s.clone(),
            // A list of named templates: take "default".
            Some(serde_json::Value::Array(list)) => match list
                .iter()
                .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"))
                .and_then(|t| t.get("template"))
                .and_then(|t| t.as_str())
            {
                Some(s) => s.to_string(),
                None => return Ok(None),
            },
            _ => return Ok(None),
        };
        let mut env = minijinja::Environment::new();
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |msg: String| -> std::result::Result<String, minijinja::Error> {
                Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    msg,
                ))
            },
        );
        env.add_template_owned("chat", source)
            .map_err(|e| Error::load(origin, format!("chat_template does not compile: {e}")))?;
        Ok(Some(ChatTemplate {
            env,
            bos: token_text(config.get("bos_token")),
            eos: token_text(config.get("eos_token")),
        }))
    }

    /// Render `messages`, ending with the assistant's turn opened when `add_generation_prompt`.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        let tmpl = self
            .env
            .get_template("chat")
            .map_err(|e| Error::Invalid(format!("chat template: {e}")))?;
        tmpl.render(minijinja::context! {
            messages => messages.iter().map(|m| minijinja::Value::from_pairs([
                ("role", m.role.as_str()),
                ("content", m.content.as_str()),
            ])).collect::<Vec<_>>(),
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos.as_str(),
            eos_token => self.eos.as_str(),
        })
        .map_err(|e| Error::Invalid(format!("rendering the chat template failed: {e}")))
    }
}
