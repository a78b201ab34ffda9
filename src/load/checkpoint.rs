//! A checkpoint on disk: one safetensors file, or shards listed by
//! `model.safetensors.index.json`, each memory-mapped and validated.

use super::safetensors::{Header, TensorInfo, header_len, parse_header};
use super::{LoadOptions, Weights, upload_all};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

struct File {
    path: PathBuf,
    map: memmap2::Mmap,
    header: Header,
}

/// Validated safetensors files, ready to upload.
pub struct Checkpoint {
    files: Vec<File>,
    /// Tensor name -> (file index, tensor index in that file's header).
    index: HashMap<String, (usize, usize)>,
    origin: String,
}

fn io_err(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        source,
    }
}

fn open_file(path: &Path) -> Result<File> {
    let f = std::fs::File::open(path).map_err(|e| io_err(path, e))?;
    // SAFETY: the map is read-only; kiln never writes through it. If another process
    // truncates the file while it is mapped, reads may fault, as with any mmap reader.
    let map = unsafe { memmap2::Mmap::map(&f) }.map_err(|e| io_err(path, e))?;
    let label = path.display().to_string();
    let n = header_len(&label, &map, map.len() as u64)?;
    let header = parse_header(&label, &map[8..8 + n as usize], map.len() as u64)?;
    Ok(File {
        path: path.to_path_buf(),
        map,
        header,
    })
}

impl Checkpoint {
    /// Open a `.safetensors` file, a `model.safetensors.index.json`, or a folder holding
    /// either (the index is preferred when both exist).
    pub fn open(path: impl AsRef<Path>) -> Result<Checkpoint> {
        let path = path.as_ref();
        if path.is_dir() {
            let index = path.join("model.safetensors.index.json");
            if index.exists() {
                return Self::open_index(&index);
            }
            let single = path.join("model.safetensors");
            if single.exists() {
                return Self::open_files(vec![single], path);
            }
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| io_err(path, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
                .collect();
            found.sort();
            if found.is_empty() {
                return Err(Error::load(
                    path.display(),
                    "no model.safetensors, index or *.safetensors file in this folder",
                ));
            }
            return Self::open_files(found, path);
        }
        if path.to_string_lossy().ends_with(".index.json") {
            return Self::open_index(path);
        }
        Self::open_files(vec![path.to_path_buf()], path)
    }

    fn open_index(index_path: &Path) -> Result<Checkpoint> {
        let label = index_path.display().to_string();
        let text = std::fs::read_to_string(index_path).map_err(|e| io_err(index_path, e))?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::load(&label, format!("not valid JSON: {e}")))?;
        let map = json
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| Error::load(&label, "no 'weight_map' object"))?;
        let dir = index_path.parent().unwrap_or(Path::new("."));
        let mut shards: Vec<String> = Vec::new();
        let mut wanted: Vec<(String, String)> = Vec::new();
        for (name, file) in map {
            let file = file.as_str().ok_or_else(|| {
                Error::tensor(&label, name, "weight_map value is not a file name")
            })?;
            if file.contains('/') || file.contains('\\') || file.contains("..") {
                return Err(Error::tensor(
                    &label,
                    name,
                    format!("shard '{file}' is not a plain file name beside the index"),
                ));
            }
            if !shards.iter().any(|s| s == file) {
                shards.push(file.to_string());
            }
            wanted.push((name.clone(), file.to_string()));
        }
        let paths = shards.iter().map(|s| dir.join(s)).collect();
        let ckpt = Self::open_files(paths, index_path)?;
        for (name, file) in wanted {
            let in_file = ckpt
                .index
                .get(&name)
                .is_some_and(|(f, _)| ckpt.files[*f].path.ends_with(&file));
            if !in_file {
                return Err(Error::tensor(
                    &label,
                    name,
                    format!("the index places it in '{file}', which does not hold it"),
                ));
            }
        }
        Ok(ckpt)
    }

    fn open_files(paths: Vec<PathBuf>, origin: &Path) -> Result<Checkpoint> {
        let mut files = Vec::new();
        let mut index = HashMap::new();
        for (fi, p) in paths.iter().enumerate() {
            let file = open_file(p)?;
            for (ti, t) in file.header.tensors.iter().enumerate() {
                if let Some((other, _)) = index.insert(t.name.clone(), (fi, ti)) {
                    return Err(Error::tensor(
                        p.display(),
                        &t.name,
                        format!("also appears in {}", paths[other].display()),
                    ));
                }
            }
            files.push(file);
        }
        Ok(Checkpoint {
            files,
            index,
            origin: origin.display().to_string(),
        })
    }

    /// Every tensor, shard by shard in file order.
    pub fn tensors(&self) -> impl Iterator<Item = &TensorInfo> {
        self.files.iter().flat_map(|f| f.header.tensors.iter())
    }

    /// Metadata of the first file's header.
    pub fn metadata(&self) -> Option<&std::collections::BTreeMap<String, String>> {
        self.files.first().map(|f| &f.header.metadata)
    }

    /// The directory entry of tensor `name`; an error if no shard holds it.
    pub fn get(&self, name: &str) -> Result<&TensorInfo> {
        let (f, t) = self
            .index
            .get(name)
            .ok_or_else(|| Error::tensor(&self.origin, name, "missing from the checkpoint"))?;
        Ok(&self.files[*f].header.tensors[*t])
    }

    /// The raw bytes of a tensor, straight from the mapped file.
    pub fn bytes(&self, name: &str) -> Result<&[u8]> {
        let (f, _) = self
            .index
            .get(name)
            .ok_or_else(|| Error::tensor(&self.origin, name, "missing from the checkpoint"))?;
        let info = self.get(name)?;
        Ok(&self.files[*f].map[info.start as usize..info.end as usize])
    }

    /// Total bytes of tensor data.
    pub fn data_bytes(&self) -> u64 {
        self.tensors().map(TensorInfo::bytes).sum()
    }

    /// The checkpoint's file or folder, as errors name it.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Upload every tensor to `gpu`.
    pub async fn upload(&self, gpu: &Gpu, options: LoadOptions<'_>) -> Result<Weights> {
        let all: Vec<&TensorInfo> = self.tensors().collect();
        upload_all(gpu, &self.origin, &all, |t| self.bytes(&t.name), options).await
    }
}
