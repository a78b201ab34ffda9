//! One error type for the library. Every variant carries enough context (file, tensor,
//! adapter, limit) for the message alone to say what went wrong and where.

use std::fmt;

/// What went wrong.
#[derive(Debug)]
pub enum Error {
    /// No GPU adapter matched, or none exists.
    NoAdapter(String),
    /// The device could not be created, or reported an error.
    Gpu(String),
    /// A weights file is malformed, or does not hold what was asked of it.
    Load {
        /// The file (or other origin) being read.
        path: String,
        /// The tensor concerned, where there is one.
        tensor: Option<String>,
        /// What is wrong with it.
        reason: String,
    },
    /// Reading a file failed.
    Io {
        /// The file being read.
        path: String,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// Shapes that do not fit together, or a graph used the wrong way.
    Shape(String),
    /// A buffer, binding or dispatch beyond what the device allows.
    Limit(String),
    /// A bad argument from the caller.
    Invalid(String),
    /// A buffer could not be allocated: the device is out of memory, or kiln would pass
    /// [`GpuOptions::memory_limit`](crate::GpuOptions::memory_limit). What was being built
    /// is dropped, and its memory freed, before the error is returned.
    OutOfMemory(String),
    /// The GPU device was lost (a driver reset, a removed GPU, `Device::destroy`). It stays
    /// lost: open a new [`Gpu`](crate::Gpu) and load the model again.
    DeviceLost(String),
}

/// `Result` with kiln's [`Error`] by default.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn load(path: impl fmt::Display, reason: impl Into<String>) -> Self {
        Error::Load {
            path: path.to_string(),
            tensor: None,
            reason: reason.into(),
        }
    }

    pub(crate) fn tensor(
        path: impl fmt::Display,
        tensor: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Error::Load {
            path: path.to_string(),
            tensor: Some(tensor.into()),
            reason: reason.into(),
        }
    }
}

impl Error {
    /// The same error, its message prefixed with `what` was being done (`Io` keeps its
    /// path and gets the prefix there).
    pub(crate) fn context(self, what: impl fmt::Display) -> Self {
        match self {
            Error::NoAdapter(m) => Error::NoAdapter(format!("{what}: {m}")),
            Error::Gpu(m) => Error::Gpu(format!("{what}: {m}")),
            Error::Load {
                path,
                tensor,
                reason,
            } => Error::Load {
                path: format!("{what}: {path}"),
                tensor,
                reason,
            },
            Error::Io { path, source } => Error::Io {
                path: format!("{what}: {path}"),
                source,
            },
            Error::Shape(m) => Error::Shape(format!("{what}: {m}")),
            Error::Limit(m) => Error::Limit(format!("{what}: {m}")),
            Error::Invalid(m) => Error::Invalid(format!("{what}: {m}")),
            Error::OutOfMemory(m) => Error::OutOfMemory(format!("{what}: {m}")),
            Error::DeviceLost(m) => Error::DeviceLost(format!("{what}: {m}")),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoAdapter(m) => write!(f, "no GPU adapter: {m}"),
            Error::Gpu(m) => write!(f, "GPU error: {m}"),
            Error::Load {
                path,
                tensor: Some(t),
                reason,
            } => write!(f, "{path}: tensor '{t}': {reason}"),
            Error::Load {
                path,
                tensor: None,
                reason,
            } => write!(f, "{path}: {reason}"),
            Error::Io { path, source } => write!(f, "{path}: {source}"),
            Error::Shape(m) => write!(f, "shape error: {m}"),
            Error::Limit(m) => write!(f, "device limit exceeded: {m}"),
            Error::Invalid(m) => write!(f, "invalid argument: {m}"),
            Error::OutOfMemory(m) => write!(f, "out of GPU memory: {m}"),
            Error::DeviceLost(m) => write!(f, "GPU device lost: {m}"),
        }
    }
}

// The messages already include any underlying I/O error, so no `source()` chain: printing
// the chain (as anyhow's `{:#}` does) would repeat it.
impl std::error::Error for Error {}
