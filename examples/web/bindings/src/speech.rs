//! Speech to text: a WAV file's bytes in, Whisper's transcript out, its text streamed as it
//! decodes, through the same session machinery as `kiln transcribe`.

use crate::{Folder, err};
use js_sys::{Array, Reflect};
use kiln::transcribe::{TranscribeOptions, Transcriber};
use wasm_bindgen::prelude::*;

/// A Whisper model on the GPU.
#[wasm_bindgen]
pub struct Speech {
    inner: Transcriber,
    adapter: JsValue,
}

impl Speech {
    pub(crate) async fn open(f: Folder) -> Result<Speech, JsError> {
        let inner = Transcriber::from_parts(&f.gpu, &f.origin, &f.config, &f.tokenizer, &f.weights)
            .await
            .map_err(err)?;
        Ok(Speech {
            inner,
            adapter: f.adapter,
        })
    }
}

fn set(o: &js_sys::Object, k: &str, v: impl Into<JsValue>) {
    let _ = Reflect::set(o, &k.into(), &v.into());
}

#[wasm_bindgen]
impl Speech {
    /// "transcribe": what this model does (see `loadUrl`).
    #[wasm_bindgen(getter)]
    pub fn kind(&self) -> String {
        "transcribe".into()
    }

    /// The adapter the model runs on, as `Model.adapter`.
    #[wasm_bindgen(getter)]
    pub fn adapter(&self) -> JsValue {
        self.adapter.clone()
    }

    /// Transcribe a WAV file's bytes (PCM 16/24/32-bit or float, mono or stereo, any rate),
    /// 30 seconds at a time. `options`: `{language: "en", timestamps: false}`. `onText(text)`
    /// hears the text as it decodes. Resolves to `{text, segments: [{start, end, text}],
    /// seconds, windows, encodeMs, decodeMs, steps}`.
    pub async fn transcribe(
        &mut self,
        wav: Vec<u8>,
        options: JsValue,
        on_text: Option<js_sys::Function>,
    ) -> Result<JsValue, JsError> {
        let field = |k: &str| Reflect::get(&options, &k.into()).ok();
        let d = TranscribeOptions::default();
        let opts = TranscribeOptions {
            language: field("language")
                .and_then(|v| v.as_string())
                .unwrap_or(d.language),
            timestamps: field("timestamps")
                .and_then(|v| v.as_bool())
                .unwrap_or(d.timestamps),
        };
        let audio = kiln::audio::wav::read("the WAV file", &wav).map_err(err)?;
        let mut hear = |text: &str| {
            if let Some(f) = &on_text {
                let _ = f.call1(&JsValue::NULL, &text.into());
            }
        };
        let t = self
            .inner
            .transcribe(&audio.samples, &opts, &mut hear)
            .await
            .map_err(err)?;
        let segments: Array = t
            .segments
            .iter()
            .map(|s| {
                let o = js_sys::Object::new();
                set(&o, "start", s.start);
                set(&o, "end", s.end);
                set(&o, "text", s.text.trim());
                JsValue::from(o)
            })
            .collect();
        let o = js_sys::Object::new();
        set(&o, "text", t.text.as_str());
        set(&o, "segments", segments);
        set(&o, "seconds", t.seconds);
        set(&o, "windows", t.windows.len() as f64);
        let sum = |f: fn(&kiln::transcribe::Window) -> f64| t.windows.iter().map(f).sum::<f64>();
        set(&o, "encodeMs", sum(|w| w.encode_secs) * 1e3);
        set(&o, "decodeMs", sum(|w| w.decode_secs) * 1e3);
        set(&o, "steps", sum(|w| w.margins.len() as f64));
        Ok(o.into())
    }
}
