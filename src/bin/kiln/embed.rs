//! `kiln embed`: one JSON array of floats per input, in input order, on stdout.

use crate::cli;
use crate::progress::{self, Bar};
use anyhow::{Context, Result, bail};
use kiln::embed::EmbeddingModel;
use std::io::{BufRead, Write};
use std::time::Instant;

/// The texts: the positionals, or the lines of `--file` (`-` for stdin), never both.
fn inputs(args: &cli::Embed) -> Result<Vec<String>> {
    let Some(file) = args.file.as_deref() else {
        if args.texts.is_empty() {
            bail!(
                "kiln embed needs texts to embed: TEXT arguments, or --file LINES (one text a line, - for stdin)"
            );
        }
        return Ok(args.texts.clone());
    };
    let lines: Vec<String> = if file == "-" {
        std::io::stdin()
            .lock()
            .lines()
            .collect::<std::io::Result<_>>()
    } else {
        let f = std::fs::File::open(file).with_context(|| format!("--file {file}"))?;
        std::io::BufReader::new(f)
            .lines()
            .collect::<std::io::Result<_>>()
    }
    .with_context(|| format!("--file {file}: not UTF-8 text"))?;
    if lines.is_empty() {
        bail!("--file {file} has no lines to embed");
    }
    Ok(lines)
}

pub fn embed(args: &cli::Embed) -> Result<()> {
    let texts = inputs(args)?;
    let batch = args.batch;
    if batch == 0 {
        bail!("--batch 0: a batch holds at least one input");
    }
    let dir = crate::model_dir(
        args.model.as_deref(),
        &kiln::fetch::ALL_MINILM_L6_V2,
        "a BERT embedding model",
    )?;
    let gpu = crate::open_gpu(args.adapter.as_deref())?;
    let normalize = args.normalize.then_some(true);
    let t0 = Instant::now();
    let mut model = pollster::block_on(EmbeddingModel::load(
        &gpu,
        &dir,
        normalize,
        progress::loading(),
    ))
    .with_context(|| format!("loading {}", dir.display()))?;
    eprintln!(
        "model: {} (width {}, at most {} tokens an input, {}), loaded in {:.2} s",
        dir.display(),
        model.width(),
        model.max_tokens(),
        if model.normalizes() {
            "L2-normalised"
        } else {
            "not normalised"
        },
        t0.elapsed().as_secs_f64()
    );
    let mut tokens = Vec::with_capacity(texts.len());
    for (i, t) in texts.iter().enumerate() {
        let tok = model.tokenize(t)?;
        if tok.truncated {
            eprintln!(
                "warning: input {i} is longer than the model's {} tokens; only its first {} are embedded",
                model.max_tokens(),
                tok.ids.len()
            );
        }
        tokens.push(tok);
    }
    let mut bar = Bar::counting("embedding", "inputs");
    let many = texts.len() > batch;
    let t1 = Instant::now();
    let vectors = pollster::block_on(model.embed(&tokens, batch, &mut |done, all| {
        if many {
            bar.update(done as u64, all as u64, "");
        }
    }))?;
    let secs = t1.elapsed().as_secs_f64();
    let mut out = std::io::stdout().lock();
    for v in &vectors {
        serde_json::to_writer(&mut out, v)?;
        writeln!(out)?;
    }
    out.flush()?;
    let n: usize = tokens.iter().map(|t| t.ids.len()).sum();
    eprintln!(
        "embedded {} inputs ({n} tokens) in {secs:.2} s: {:.1} inputs/s, batches of {batch}",
        texts.len(),
        texts.len() as f64 / secs
    );
    Ok(())
}
