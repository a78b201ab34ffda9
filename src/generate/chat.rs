//! Chat templates: the model's own Jinja template from `tokenizer_config.json`, rendered by
//! minijinja with Python-style string methods, as HF transformers renders it.

use crate::error::{Error, Result};

/// The most steps (and, at about 64 bytes each, memory) one rendering may take: a real
/// template spends tens of steps per message, so this is thousands of messages, and a
/// template that loops without end, or builds huge strings, stops with an error.
pub const FUEL: u64 = 1_000_000;
/// The deepest a template may nest loops, blocks and macro calls.
pub const RECURSION_LIMIT: usize = 200;
/// The largest rendered conversation, in bytes (at about 4 bytes a token, more than the
/// longest context kiln accepts).
pub const MAX_RENDERED_BYTES: usize = 64 << 20;
/// The largest template source, in bytes (real ones are a few KiB).
pub const MAX_TEMPLATE_BYTES: usize = 1 << 20;

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
        if source.len() > MAX_TEMPLATE_BYTES {
            return Err(Error::load(
                origin,
                format!(
                    "chat_template is {} bytes, over the limit of {MAX_TEMPLATE_BYTES}",
                    source.len()
                ),
            ));
        }
        let mut env = minijinja::Environment::new();
        env.set_fuel(Some(FUEL));
        env.set_recursion_limit(RECURSION_LIMIT);
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
        .map_err(|e| {
            let why = if e.kind() == minijinja::ErrorKind::OutOfFuel {
                format!(
                    " (it ran out of its budget of {FUEL} steps: a template that loops without \
                     end, or a conversation far too long)"
                )
            } else {
                String::new()
            };
            Error::Invalid(format!("rendering the chat template failed: {e}{why}"))
        })
        .and_then(|text| {
            if text.len() > MAX_RENDERED_BYTES {
                return Err(Error::Invalid(format!(
                    "the rendered chat is {} bytes, over the limit of {MAX_RENDERED_BYTES}",
                    text.len()
                )));
            }
            Ok(text)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(source: &str) -> ChatTemplate {
        let config = serde_json::json!({"chat_template": source, "eos_token": "</s>"});
        ChatTemplate::from_tokenizer_config("t", &config)
            .expect("compiles")
            .expect("has a template")
    }

    const CHATML: &str = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}\
        <|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

    #[test]
    fn namespaces_still_take_what_templates_assign_them() {
        // As Qwen's and DeepSeek's templates do: flags, counters, lists grown turn by turn.
        let source = "{% set ns = namespace(n=0, seen=[], last=none) %}\
            {% for m in messages %}{% set ns.n = ns.n + 1 %}{% set ns.seen = ns.seen + [m.role] %}\
            {% set ns.last = m %}{% endfor %}{{ ns.n }} {{ ns.seen|join(',') }} {{ ns.last.content }}";
        let messages = [Message::new("user", "hi"), Message::new("assistant", "yo")];
        let text = template(source).render(&messages, true).expect("renders");
        assert_eq!(text, "2 user,assistant yo");
    }

    #[test]
    fn a_long_conversation_renders_within_the_budget() {
        let messages: Vec<Message> = (0..5000)
            .map(|i| Message::new(["user", "assistant"][i % 2], &format!("turn {i}")))
            .collect();
        let text = template(CHATML).render(&messages, true).expect("renders");
        assert_eq!(text.matches("<|im_start|>").count(), 5001);
    }

    #[test]
    fn hostile_templates_stop_with_an_error() {
        let cases = [
            // Endless work: loops over loops.
            (
                "{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}",
                "budget",
            ),
            // A huge string, doubled again and again.
            (
                "{% set s = 'x' * 90000000 %}{{ s ~ s ~ s ~ s }}",
                "rendering the chat template failed",
            ),
            // Recursion without end.
            (
                "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
                "rendering the chat template failed",
            ),
            ("{{ raise_exception('no system role') }}", "no system role"),
            // A namespace made to hold itself, through a list, a map or another namespace:
            // printing it recursed until the stack overflowed (found by the fuzz target;
            // minijinja is patched to refuse the assignment, vendor/minijinja/KILN-PATCH.md).
            (
                "{% set ns = namespace(n=0) %}{% set ns.n = [1, (ns, 2)] %}{{ ns }}",
                "holds the namespace itself",
            ),
            (
                "{% set a = namespace() %}{% set b = namespace(x={'k': a}) %}{% set a.y = b %}{{ a == b }}",
                "holds the namespace itself",
            ),
            // ... and through the lazy sequences of operators and filters.
            (
                "{% set ns = namespace() %}{% set ns.x = [] + [ns] %}{{ ns }}",
                "holds the namespace itself",
            ),
            (
                "{% set ns = namespace() %}{% set ns.x = [ns]|reverse %}{{ ns }}",
                "holds the namespace itself",
            ),
            (
                "{% set ns = namespace() %}{% set ns.x = [1, ns][:] %}{{ ns }}",
                "holds the namespace itself",
            ),
            (
                "{% set ns = namespace() %}{% set ns.x = [ns] * 2 %}{{ ns }}",
                "holds the namespace itself",
            ),
            // The check is charged to the fuel budget: big values assigned again and again
            // run out of fuel instead of working on.
            (
                "{% set ns = namespace() %}{% set big = range(5000)|list %}\
                 {% for i in range(100000) %}{% set ns.x = [big, big] %}{% endfor %}",
                "budget",
            ),
        ];
        for (source, expected) in cases {
            let e = template(source)
                .render(&[Message::new("user", "hi")], true)
                .expect_err(source)
                .to_string();
            assert!(e.contains(expected), "{source}: {e}");
        }
    }

    #[test]
    fn an_oversized_template_is_refused() {
        let source = "x".repeat(MAX_TEMPLATE_BYTES + 1);
        let config = serde_json::json!({ "chat_template": source });
        let e = ChatTemplate::from_tokenizer_config("t", &config)
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains("over the limit"), "{e}");
    }
}
