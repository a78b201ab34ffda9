//! The benchmark page's entry points: kiln's benchmark suite on the page's WebGPU adapter,
//! giving the JSON `kiln bench --json` writes natively (schema `kiln-bench/1`, with
//! `host.runtime` = "browser"), so that the two compare with `kiln bench --compare`.

use crate::{adapter_info, err};
use js_sys::Reflect;
use kiln::bench::record::Results;
use kiln::bench::{ModelBench, Size, Sweep};
use kiln::generate::TextModel;
use kiln::load::LoadOptions;
use kiln::{DType, Gpu, GpuOptions};
use wasm_bindgen::prelude::*;

fn field(o: &JsValue, k: &str) -> Option<JsValue> {
    Reflect::get(o, &k.into())
        .ok()
        .filter(|v| !v.is_undefined() && !v.is_null())
}

/// A string option; an empty one counts as not given.
fn text(o: &JsValue, k: &str) -> Option<String> {
    field(o, k)
        .and_then(|v| v.as_string())
        .filter(|s| !s.trim().is_empty())
}

fn number(o: &JsValue, k: &str, default: usize) -> Result<usize, JsError> {
    match field(o, k) {
        None => Ok(default),
        Some(v) => v
            .as_f64()
            .filter(|x| *x >= 0.0 && x.fract() == 0.0)
            .map(|x| x as usize)
            .ok_or_else(|| err(format!("benchmark option {k}: not a whole number"))),
    }
}

fn dtype(name: &str) -> Result<DType, JsError> {
    DType::parse(name).ok_or_else(|| err(format!("'{name}' is not a dtype")))
}

/// Run the suite on this page's adapter; resolves to the results' JSON. Always at the
/// small size (32 MiB copies, 128-row GEMMs), whatever the adapter.
///
/// `options`:
/// - `mode`: `"kernels"` (rooflines, then kernels at the `sweep` presets' shapes in the
///   `dtypes`) or `"model"` (a synthetic `model` measured as `kiln bench --model`: `prompt`,
///   `tokens` and `runs`, matrices in `dtype`).
/// - `sweep`: comma-separated presets or `"none"` (default `smollm2-135m`);
///   `dtypes`: comma-separated formats (default every one).
/// - `model` (default `smollm2-135m`), `dtype` (default F16), `prompt` (512), `tokens`
///   (128), `runs` (5); `profile` (false): GPU time by kernel of one extra decode and
///   prefill step, where the adapter has timestamp queries (`kiln bench --profile`).
///
/// `onLog(line)` hears progress.
#[wasm_bindgen]
pub async fn benchmark(
    options: JsValue,
    on_log: Option<js_sys::Function>,
) -> Result<String, JsError> {
    let mut log = |m: &str| {
        if let Some(f) = &on_log {
            let _ = f.call1(&JsValue::NULL, &m.into());
        }
    };
    let gpu = Gpu::new(&GpuOptions::default())
        .await
        .map_err(|e| err(format!("{e} (no WebGPU adapter is available)")))?;
    let mut results = Results::new();
    let navigator = Reflect::get(&js_sys::global(), &"navigator".into()).unwrap_or_default();
    if let Some(agent) = text(&navigator, "userAgent") {
        results.host.os = agent;
    }
    let mode = text(&options, "mode").unwrap_or_else(|| "kernels".into());
    match mode.as_str() {
        "kernels" => {
            let mut sweep = Sweep::default_for(Size::Small);
            if let Some(list) = text(&options, "dtypes") {
                sweep.dtypes = list.split(',').map(dtype).collect::<Result<_, _>>()?;
            }
            if let Some(list) = text(&options, "sweep") {
                sweep.set_models(&list).map_err(err)?;
            }
            let report = kiln::bench::run(&gpu, Size::Small, &sweep, &mut log)
                .await
                .map_err(err)?;
            let entry = kiln::bench::record::AdapterResults::new(&gpu, &report);
            results.adapters.push(entry);
        }
        "model" => {
            let name = text(&options, "model").unwrap_or_else(|| "smollm2-135m".into());
            let asked = text(&options, "dtype").map(|d| dtype(&d)).transpose()?;
            let bench = ModelBench {
                prompt: number(&options, "prompt", 512)?,
                generate: number(&options, "tokens", 128)?,
                runs: number(&options, "runs", 5)?,
                profile: field(&options, "profile").is_some_and(|v| v.is_truthy()),
            };
            log(&format!("making synthetic:{name}"));
            let load = LoadOptions {
                dtype: asked,
                ..Default::default()
            };
            let model = TextModel::synthetic(&gpu, &name, load).await.map_err(err)?;
            let model = std::sync::Arc::new(model);
            let mut session = model
                .session(bench.prompt + bench.generate + 1)
                .await
                .map_err(err)?;
            let report = kiln::bench::model(&mut session, &bench, &mut log)
                .await
                .map_err(err)?;
            results
                .add_adapter(&gpu)
                .add_model(&gpu, &report, asked.map(DType::name));
        }
        other => return Err(err(format!("benchmark mode '{other}': kernels or model"))),
    }
    // wgpu's browser backend leaves the adapter's name empty: take WebGPU's own words.
    let info = adapter_info(&gpu, &navigator).await;
    if let (Some(name), Some(a)) = (text(&info, "name"), results.adapters.first_mut()) {
        if a.adapter.name.is_empty() {
            a.adapter.name = name;
        }
    }
    Ok(results.to_json())
}

/// The markdown tables `kiln bench` prints, from results' JSON.
#[wasm_bindgen(js_name = benchMarkdown)]
pub fn bench_markdown(json: &str) -> Result<String, JsError> {
    let r = Results::parse(json).map_err(err)?;
    Ok(kiln::bench::to_markdown(&r))
}
