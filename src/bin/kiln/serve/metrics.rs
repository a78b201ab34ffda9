//! `/metrics`: Prometheus text under vLLM's names, which llm-d's endpoint picker and other
//! routers scrape with their default settings, and kiln's own (`kiln_*`).

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

type Labels = Vec<(String, String)>;

pub struct Metrics {
    registry: Registry,
    pub waiting: Gauge,
    pub running: Gauge,
    pub kv_usage: Gauge<f64, AtomicU64>,
    pub prompt_tokens: Counter,
    pub generation_tokens: Counter,
    pub ttft: Histogram,
    pub itl: Histogram,
    pub e2e: Histogram,
    pub batch: Histogram,
    pub step: Histogram,
    pub requests: Family<Labels, Counter>,
    pub gpu_memory: Gauge,
    pub device_lost: Gauge,
}

impl Metrics {
    pub fn new(adapter: &str, model: &str, slots: usize) -> Metrics {
        let mut r = Registry::default();
        let waiting = Gauge::default();
        r.register(
            "vllm:num_requests_waiting",
            "Requests waiting for a slot",
            waiting.clone(),
        );
        let running = Gauge::default();
        r.register(
            "vllm:num_requests_running",
            "Requests being served",
            running.clone(),
        );
        let kv_usage = Gauge::<f64, AtomicU64>::default();
        r.register(
            "vllm:kv_cache_usage_perc",
            "Share of KV-cache slots in use, 0 to 1",
            kv_usage.clone(),
        );
        // Counters are written with the `_total` suffix.
        let prompt_tokens = Counter::default();
        r.register(
            "vllm:prompt_tokens",
            "Prompt tokens computed",
            prompt_tokens.clone(),
        );
        let generation_tokens = Counter::default();
        r.register(
            "vllm:generation_tokens",
            "Tokens generated",
            generation_tokens.clone(),
        );
        let latency = || Histogram::new(exponential_buckets(0.001, 2.0, 18));
        let ttft = latency();
        r.register(
            "vllm:time_to_first_token_seconds",
            "From a request's arrival to its first token",
            ttft.clone(),
        );
        let itl = latency();
        r.register(
            "vllm:inter_token_latency_seconds",
            "Between a request's successive pieces of text",
            itl.clone(),
        );
        let e2e = latency();
        r.register(
            "vllm:e2e_request_latency_seconds",
            "From a request's arrival to its end",
            e2e.clone(),
        );
        let batch = Histogram::new(exponential_buckets(1.0, 2.0, 8));
        r.register(
            "kiln_batch_size",
            "Requests in each step (prefill chunk and decode together)",
            batch.clone(),
        );
        let step = latency();
        r.register(
            "kiln_step_seconds",
            "Wall time of each batch step",
            step.clone(),
        );
        let requests = Family::<Labels, Counter>::default();
        r.register(
            "kiln_requests",
            "Requests answered, by endpoint and status",
            requests.clone(),
        );
        let gpu_memory = Gauge::default();
        r.register(
            "kiln_gpu_memory_bytes",
            "Bytes of GPU buffers kiln holds, on all its adapters: weights, KV cache, activations",
            gpu_memory.clone(),
        );
        let device_lost = Gauge::default();
        r.register(
            "kiln_gpu_device_lost",
            "1 once the GPU device is lost: every request then fails until a restart",
            device_lost.clone(),
        );
        let info = Family::<Labels, Gauge>::default();
        r.register(
            "kiln_info",
            "The adapter, model and slots served",
            info.clone(),
        );
        info.get_or_create(&vec![
            ("adapter".into(), adapter.into()),
            ("model".into(), model.into()),
            ("slots".into(), slots.to_string()),
        ])
        .set(1);
        Metrics {
            registry: r,
            waiting,
            running,
            kv_usage,
            prompt_tokens,
            generation_tokens,
            ttft,
            itl,
            e2e,
            batch,
            step,
            requests,
            gpu_memory,
            device_lost,
        }
    }

    /// Count a response of `endpoint` with `status`.
    pub fn answered(&self, endpoint: &str, status: u16) {
        self.requests
            .get_or_create(&vec![
                ("endpoint".into(), endpoint.into()),
                ("status".into(), status.to_string()),
            ])
            .inc();
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        match encode(&mut out, &self.registry) {
            Ok(()) => out,
            Err(e) => format!("# encoding failed: {e}\n"),
        }
    }
}
