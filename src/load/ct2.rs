//! CTranslate2's `model.bin` (binary version 6), the format faster-whisper's models ship in.
//!
//! Little-endian throughout; a *string* is a u16 length counting a trailing NUL, then that
//! many bytes, the last of which is NUL:
//!
//! ```text
//! u32 version (6), string spec name ("WhisperSpec"), u32 spec revision, u32 variable count
//! per variable: string name, u8 rank, u32 dims[rank] (row-major), u8 dtype, u32 byte count,
//!               the bytes (dtype 0 f32, 1 i8, 2 i16, 3 i32, 4 f16, 5 bf16)
//! u32 alias count, per alias: string alias, string target
//! ```
//!
//! Everything is checked: lengths against the file, byte counts against the dims, names
//! unique, aliases pointing at variables, no bytes after the last alias.

use super::cursor::Cursor;
use crate::error::{Error, Result};
use std::collections::BTreeMap;

/// An element type of a CTranslate2 variable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ct2DType {
    /// 32-bit float (code 0).
    F32,
    /// 8-bit signed integer (code 1).
    I8,
    /// 16-bit signed integer (code 2).
    I16,
    /// 32-bit signed integer (code 3).
    I32,
    /// 16-bit IEEE float (code 4).
    F16,
    /// bfloat16 (code 5).
    BF16,
}

impl Ct2DType {
    fn from_code(code: u8) -> Option<Ct2DType> {
        Some(match code {
            0 => Ct2DType::F32,
            1 => Ct2DType::I8,
            2 => Ct2DType::I16,
            3 => Ct2DType::I32,
            4 => Ct2DType::F16,
            5 => Ct2DType::BF16,
            _ => return None,
        })
    }
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Ct2DType::I8 => 1,
            Ct2DType::I16 | Ct2DType::F16 | Ct2DType::BF16 => 2,
            Ct2DType::F32 | Ct2DType::I32 => 4,
        }
    }
}

/// One variable: its shape (empty for a scalar), type and byte range in the file.
#[derive(Clone, Debug)]
pub struct Ct2Var {
    /// The variable's name (a path such as `encoder/layer_0/ffn/linear_0/weight`).
    pub name: String,
    /// Its dimensions, row-major; empty for a scalar.
    pub shape: Vec<usize>,
    /// Its element type.
    pub dtype: Ct2DType,
    /// Byte offset of its data in the file.
    pub start: usize,
    /// Byte offset just past its data.
    pub end: usize,
}

/// A parsed `model.bin` over its bytes.
pub struct Ct2<'a> {
    /// The spec name ("WhisperSpec").
    pub spec: String,
    /// The spec's revision.
    pub revision: u32,
    /// Every variable, in file order.
    pub vars: Vec<Ct2Var>,
    /// Alias name to the variable it stands for.
    pub aliases: BTreeMap<String, String>,
    index: BTreeMap<String, usize>,
    bytes: &'a [u8],
    path: String,
}

/// A NUL-terminated, u16-length string.
fn string(c: &mut Cursor, what: &str) -> Result<String> {
    let n = c.u16(what)? as usize;
    let b = c.take(n, what)?;
    match b.split_last() {
        Some((0, text)) => String::from_utf8(text.to_vec())
            .map_err(|_| Error::load(c.path, format!("{what} is not UTF-8"))),
        _ => Err(Error::load(
            c.path,
            format!(
                "{what} ending at byte {} is not NUL-terminated (not a CTranslate2 model?)",
                c.pos
            ),
        )),
    }
}

impl<'a> Ct2<'a> {
    /// Parse and check a `model.bin` held in `bytes`.
    pub fn parse(path: &str, bytes: &'a [u8]) -> Result<Ct2<'a>> {
        let mut c = Cursor::new(bytes, path);
        let version = c.u32("the binary version")?;
        if version != 6 {
            return Err(Error::load(
                path,
                format!(
                    "binary version {version}: not a CTranslate2 model.bin of version 6, the \
                     one kiln reads"
                ),
            ));
        }
        let spec = string(&mut c, "the spec name")?;
        let revision = c.u32("the spec revision")?;
        let count = c.u32("the variable count")? as usize;
        // A variable takes at least 2 + 1 + 1 + 1 + 4 bytes.
        if count.saturating_mul(9) > c.left() {
            return Err(Error::load(
                path,
                format!("{count} variables cannot fit in the rest of the file (truncated?)"),
            ));
        }
        let mut vars = Vec::with_capacity(count);
        let mut index = BTreeMap::new();
        for _ in 0..count {
            let name = string(&mut c, "a variable name")?;
            let rank = c.u8(&name)? as usize;
            if rank > 8 {
                return Err(Error::tensor(
                    path,
                    &name,
                    format!("has rank {rank} (at most 8)"),
                ));
            }
            let shape = (0..rank)
                .map(|_| c.u32(&name).map(|d| d as usize))
                .collect::<Result<Vec<_>>>()?;
            let code = c.u8(&name)?;
            let dtype = Ct2DType::from_code(code).ok_or_else(|| {
                Error::tensor(
                    path,
                    &name,
                    format!("has dtype code {code}, which is not 0-5"),
                )
            })?;
            let nbytes = c.u32(&name)? as usize;
            let want = shape
                .iter()
                .try_fold(dtype.size(), |a, &d| a.checked_mul(d));
            if want != Some(nbytes) {
                return Err(Error::tensor(
                    path,
                    &name,
                    format!(
                        "holds {nbytes} bytes, but shape {shape:?} of {dtype:?} needs {want:?}"
                    ),
                ));
            }
            let start = c.pos;
            c.take(nbytes, &name)?;
            if index.insert(name.clone(), vars.len()).is_some() {
                return Err(Error::tensor(path, &name, "appears twice"));
            }
            vars.push(Ct2Var {
                name,
                shape,
                dtype,
                start,
                end: c.pos,
            });
        }
        let n_aliases = c.u32("the alias count")? as usize;
        if n_aliases.saturating_mul(4) > c.left() {
            return Err(Error::load(
                path,
                format!("{n_aliases} aliases cannot fit in the rest of the file (truncated?)"),
            ));
        }
        let mut aliases = BTreeMap::new();
        for _ in 0..n_aliases {
            let alias = string(&mut c, "an alias")?;
            let target = string(&mut c, &alias)?;
            if !index.contains_key(&target) {
                return Err(Error::tensor(
                    path,
                    &alias,
                    format!("is an alias of {target}, which the file does not hold"),
                ));
            }
            if index.contains_key(&alias) || aliases.insert(alias.clone(), target).is_some() {
                return Err(Error::tensor(path, &alias, "is defined twice"));
            }
        }
        if c.left() != 0 {
            return Err(Error::load(
                path,
                format!(
                    "{} bytes follow the last alias (not a CTranslate2 model.bin?)",
                    c.left()
                ),
            ));
        }
        Ok(Ct2 {
            spec,
            revision,
            vars,
            aliases,
            index,
            bytes,
            path: path.to_string(),
        })
    }

    /// The file's path, as errors name it.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The variable `name`, through an alias if it is one.
    pub fn get(&self, name: &str) -> Option<&Ct2Var> {
        let name = self.aliases.get(name).map_or(name, String::as_str);
        self.index.get(name).map(|&i| &self.vars[i])
    }

    /// The variable `name`, or an error naming it.
    pub fn var(&self, name: &str) -> Result<&Ct2Var> {
        self.get(name)
            .ok_or_else(|| Error::tensor(&self.path, name, "is missing"))
    }

    /// The bytes of `v`.
    pub fn data(&self, v: &Ct2Var) -> &'a [u8] {
        &self.bytes[v.start..v.end]
    }

    /// The integer scalar `name` (an i8, i16 or i32 of shape ()).
    pub fn int(&self, name: &str) -> Result<i64> {
        let v = self.var(name)?;
        let d = self.data(v);
        let value = match (v.dtype, d.len()) {
            (Ct2DType::I8, 1) => i64::from(d[0] as i8),
            (Ct2DType::I16, 2) => i64::from(i16::from_le_bytes([d[0], d[1]])),
            (Ct2DType::I32, 4) => i64::from(i32::from_le_bytes([d[0], d[1], d[2], d[3]])),
            _ => {
                return Err(Error::tensor(
                    &self.path,
                    name,
                    format!(
                        "is {:?} of shape {:?}, not an integer scalar",
                        v.dtype, v.shape
                    ),
                ));
            }
        };
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put_string(out: &mut Vec<u8>, s: &str) {
        out.extend(((s.len() + 1) as u16).to_le_bytes());
        out.extend(s.as_bytes());
        out.push(0);
    }

    /// A file of two variables (an f16 matrix and an i16 scalar) and one alias.
    fn tiny() -> Vec<u8> {
        let mut b = 6u32.to_le_bytes().to_vec();
        put_string(&mut b, "WhisperSpec");
        b.extend(3u32.to_le_bytes());
        b.extend(2u32.to_le_bytes());
        put_string(&mut b, "decoder/embeddings/weight");
        b.push(2);
        b.extend(2u32.to_le_bytes());
        b.extend(3u32.to_le_bytes());
        b.push(4);
        b.extend(12u32.to_le_bytes());
        b.extend((0..6u16).flat_map(|i| half::f16::from_f32(i as f32).to_le_bytes()));
        put_string(&mut b, "decoder/num_heads");
        b.push(0);
        b.push(2);
        b.extend(2u32.to_le_bytes());
        b.extend(8i16.to_le_bytes());
        b.extend(1u32.to_le_bytes());
        put_string(&mut b, "decoder/projection/weight");
        put_string(&mut b, "decoder/embeddings/weight");
        b
    }

    #[test]
    fn parses_variables_scalars_and_aliases() {
        let bytes = tiny();
        let m = Ct2::parse("tiny", &bytes).expect("parse");
        assert_eq!(
            (m.spec.as_str(), m.revision, m.vars.len()),
            ("WhisperSpec", 3, 2)
        );
        let e = m.var("decoder/projection/weight").expect("alias");
        assert_eq!(
            (e.shape.as_slice(), e.dtype),
            ([2, 3].as_slice(), Ct2DType::F16)
        );
        let halves: Vec<f32> = m
            .data(e)
            .chunks(2)
            .map(|h| half::f16::from_le_bytes([h[0], h[1]]).to_f32())
            .collect();
        assert_eq!(halves, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(m.int("decoder/num_heads").expect("scalar"), 8);
        assert!(m.int("decoder/embeddings/weight").is_err());
        assert!(m.var("encoder/conv1/weight").is_err());
    }

    #[test]
    fn refuses_damaged_files_by_name() {
        let good = tiny();
        let err = |bytes: &[u8]| match Ct2::parse("bad.bin", bytes) {
            Ok(_) => panic!("parsed a damaged file"),
            Err(e) => e.to_string(),
        };
        // Every truncation fails, with the file's name.
        for n in 0..good.len() {
            let e = err(&good[..n]);
            assert!(e.contains("bad.bin"), "{n}: {e}");
        }
        assert!(err(b"GGUF\x03\0\0\0").contains("binary version"));
        let mut extra = good.clone();
        extra.push(0);
        assert!(err(&extra).contains("follow the last alias"));
        // The matrix's byte count (at offset 4 + 14 + 8 + 28 + 1 + 8 + 1) says 10, not 12.
        let mut short = good.clone();
        let at = 4 + 14 + 8 + 28 + 1 + 8 + 1;
        short[at..at + 4].copy_from_slice(&10u32.to_le_bytes());
        assert!(err(&short).contains("needs"), "{}", err(&short));
        let mut dtype = good.clone();
        dtype[at - 1] = 9;
        assert!(err(&dtype).contains("dtype code 9"));
        let mut nul = good.clone();
        nul[4 + 13] = b'x';
        assert!(err(&nul).contains("NUL"));
    }
}
