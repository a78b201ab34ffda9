//! Writing a converted model: `model.safetensors` tensor by tensor (the header first, since
//! every size is known up front, so a model never has to fit in memory), and JSON files.

use crate::error::{Error, Result};
use serde_json::json;
use std::io::Write;
use std::path::Path;

pub(super) fn io(p: &Path, e: std::io::Error) -> Error {
    Error::Io {
        path: p.display().to_string(),
        source: e,
    }
}

/// One tensor of the file: its HF name, safetensors dtype ("F32", "F16", ...), shape and
/// byte length.
pub(super) struct Entry {
    pub name: String,
    pub dtype: &'static str,
    pub shape: Vec<usize>,
    pub bytes: u64,
}

/// Write `out/model.safetensors` from `entries`, whose bytes `data(i, w)` writes in order;
/// `source` goes into the metadata. The file appears whole or not at all.
pub(super) fn safetensors(
    out: &Path,
    source: &str,
    entries: &[Entry],
    progress: &mut super::ConvertProgress,
    data: &mut dyn FnMut(usize, &mut dyn Write) -> Result<()>,
) -> Result<()> {
    let mut header = serde_json::Map::new();
    let mut offset = 0u64;
    for e in entries {
        let end = offset + e.bytes;
        header.insert(
            e.name.clone(),
            json!({"dtype": e.dtype, "shape": e.shape, "data_offsets": [offset, end]}),
        );
        offset = end;
    }
    header.insert(
        "__metadata__".into(),
        json!({"format": "pt", "converted_by": "kiln", "source": source}),
    );
    let mut text = serde_json::to_string(&header).map_err(|e| Error::Invalid(e.to_string()))?;
    while (8 + text.len()) % 8 != 0 {
        text.push(' ');
    }
    let path = out.join("model.safetensors");
    let tmp = out.join("model.safetensors.partial");
    let mut w = std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(|e| io(&tmp, e))?);
    w.write_all(&(text.len() as u64).to_le_bytes())
        .map_err(|e| io(&tmp, e))?;
    w.write_all(text.as_bytes()).map_err(|e| io(&tmp, e))?;
    for (i, e) in entries.iter().enumerate() {
        progress(i, entries.len(), &e.name);
        data(i, &mut w)?;
    }
    progress(entries.len(), entries.len(), "");
    w.flush().map_err(|e| io(&tmp, e))?;
    drop(w);
    std::fs::rename(&tmp, &path).map_err(|e| io(&path, e))
}

/// Write `value` as pretty JSON to `out/name`.
pub(super) fn json_file(out: &Path, name: &str, value: &serde_json::Value) -> Result<()> {
    let p = out.join(name);
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::Invalid(e.to_string()))?;
    std::fs::write(&p, text + "\n").map_err(|e| io(&p, e))
}
