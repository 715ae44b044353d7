//! Reading a GGUF model file: header, metadata and tensors, with errors that name the file and the
//! problem (wrong magic, truncation, an unknown architecture or tensor type, a missing tensor).
//!
//! The byte-level parsing is candle's (`candle_core::quantized::gguf_file`), which bounds-checks
//! every length against the file size; this module turns its messages into ones a user can act on.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use candle_core::Device;
use candle_core::quantized::gguf_file::{Content, Value};

use super::pages::WeightBytes;
use candle_core::quantized::{GgmlDType, QTensor};

/// A model file that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {problem}", path.display())]
pub struct ModelFileError {
    pub path: PathBuf,
    pub problem: String,
}

impl ModelFileError {
    pub fn new(path: impl Into<PathBuf>, problem: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            problem: problem.into(),
        }
    }
}

/// Tensor types this build reads (ggml's numbering, for the messages).
const SUPPORTED_TYPES: &str =
    "F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K";

/// An open GGUF file: its parsed header and a reader for its tensors.
#[derive(Debug)]
pub struct GgufFile {
    path: PathBuf,
    content: Content,
    reader: BufReader<File>,
}

impl GgufFile {
    pub fn open(path: &Path) -> Result<Self, ModelFileError> {
        let file = File::open(path).map_err(|e| {
            let problem = if e.kind() == std::io::ErrorKind::NotFound {
                "no such file".to_string()
            } else {
                format!("cannot open: {e}")
            };
            ModelFileError::new(path, problem)
        })?;
        let mut reader = BufReader::new(file);
        let mut magic = [0u8; 4];
        if let Err(e) = reader.read_exact(&mut magic) {
            let problem = if e.kind() == std::io::ErrorKind::UnexpectedEof {
                "not a GGUF file: shorter than the 4-byte magic".to_string()
            } else {
                format!("cannot read: {e}")
            };
            return Err(ModelFileError::new(path, problem));
        }
        if &magic != b"GGUF" {
            return Err(ModelFileError::new(
                path,
                format!(
                    "not a GGUF file: it starts with {:?}, a GGUF file starts with \"GGUF\"",
                    String::from_utf8_lossy(&magic)
                ),
            ));
        }
        reader
            .seek(SeekFrom::Start(0))
            .map_err(|e| ModelFileError::new(path, format!("cannot read: {e}")))?;
        let content = Content::read(&mut reader).map_err(|e| explain(path, &brief(&e)))?;
        Ok(Self {
            path: path.to_path_buf(),
            content,
            reader,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn metadata(&self) -> &HashMap<String, Value> {
        &self.content.metadata
    }

    pub fn error(&self, problem: impl Into<String>) -> ModelFileError {
        ModelFileError::new(&self.path, problem)
    }

    /// `general.architecture`.
    pub fn architecture(&self) -> Result<&str, ModelFileError> {
        match self.metadata().get("general.architecture") {
            Some(Value::String(arch)) => Ok(arch),
            Some(_) => Err(self.error("general.architecture is not a string")),
            None => Err(self.error("the metadata has no general.architecture")),
        }
    }

    pub fn string(&self, key: &str) -> Result<Option<&str>, ModelFileError> {
        match self.metadata().get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.error(format!(
                "metadata key {key} should be a string, found {:?}",
                other.value_type()
            ))),
        }
    }

    /// An unsigned integer of any width.
    pub fn uint(&self, key: &str) -> Result<Option<u64>, ModelFileError> {
        let value = match self.metadata().get(key) {
            None => return Ok(None),
            Some(v) => v,
        };
        let n = match value {
            Value::U8(v) => Some(u64::from(*v)),
            Value::U16(v) => Some(u64::from(*v)),
            Value::U32(v) => Some(u64::from(*v)),
            Value::U64(v) => Some(*v),
            Value::I8(v) => u64::try_from(*v).ok(),
            Value::I16(v) => u64::try_from(*v).ok(),
            Value::I32(v) => u64::try_from(*v).ok(),
            Value::I64(v) => u64::try_from(*v).ok(),
            _ => None,
        };
        n.map(Some).ok_or_else(|| {
            self.error(format!(
                "metadata key {key} should be a non-negative integer, found {value:?}"
            ))
        })
    }

    pub fn required_usize(&self, key: &str) -> Result<usize, ModelFileError> {
        let n = self
            .uint(key)?
            .ok_or_else(|| self.error(format!("the metadata has no {key}")))?;
        usize::try_from(n).map_err(|_| self.error(format!("metadata key {key} is too large: {n}")))
    }

    pub fn optional_usize(&self, key: &str) -> Result<Option<usize>, ModelFileError> {
        self.uint(key)?
            .map(|n| {
                usize::try_from(n)
                    .map_err(|_| self.error(format!("metadata key {key} is too large: {n}")))
            })
            .transpose()
    }

    pub fn float(&self, key: &str) -> Result<Option<f64>, ModelFileError> {
        match self.metadata().get(key) {
            None => Ok(None),
            Some(Value::F32(v)) => Ok(Some(f64::from(*v))),
            Some(Value::F64(v)) => Ok(Some(*v)),
            Some(other) => Err(self.error(format!(
                "metadata key {key} should be a float, found {other:?}"
            ))),
        }
    }

    pub fn has_tensor(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    /// The tensor's shape in PyTorch order (rows first), without reading it.
    pub fn tensor_dims(&self, name: &str) -> Option<&[usize]> {
        self.content.tensor_infos.get(name).map(|t| t.shape.dims())
    }

    pub fn tensor(&mut self, name: &str) -> Result<QTensor, ModelFileError> {
        if !self.has_tensor(name) {
            return Err(self.error(format!("missing tensor {name}")));
        }
        self.content
            .tensor(&mut self.reader, name, &Device::Cpu)
            .map_err(|e| {
                let message = brief(&e);
                if message.contains("remaining in file") || message.contains("failed to fill") {
                    ModelFileError::new(
                        &self.path,
                        format!("truncated file: tensor {name} runs past the end ({message})"),
                    )
                } else {
                    ModelFileError::new(&self.path, format!("tensor {name}: {message}"))
                }
            })
    }

    /// The tensor's type, without reading it.
    pub fn tensor_dtype(&self, name: &str) -> Option<GgmlDType> {
        self.content.tensor_infos.get(name).map(|t| t.ggml_dtype)
    }

    /// The tensor's bytes as the file stores them (whole blocks of its type), read straight into
    /// the buffer that keeps them (in huge pages where it is large; see [`WeightBytes`]): unlike
    /// [`Self::tensor`], no second copy exists at any time.
    pub fn tensor_blocks(&mut self, name: &str) -> Result<WeightBytes, ModelFileError> {
        let Some(info) = self.content.tensor_infos.get(name) else {
            return Err(self.error(format!("missing tensor {name}")));
        };
        let elems = info.shape.elem_count();
        let block = info.ggml_dtype.block_size();
        if !elems.is_multiple_of(block) {
            return Err(self.error(format!(
                "tensor {name}: {elems} elements are not whole blocks of {block} ({:?})",
                info.ggml_dtype
            )));
        }
        let size = elems / block * info.ggml_dtype.type_size();
        let start = self.content.tensor_data_offset.saturating_add(info.offset);
        let path = self.path.clone();
        let io = |e: std::io::Error| {
            ModelFileError::new(&path, format!("tensor {name}: cannot read: {e}"))
        };
        let file_size = self.reader.seek(SeekFrom::End(0)).map_err(io)?;
        let remaining = file_size.saturating_sub(start);
        if size as u64 > remaining {
            return Err(self.error(format!(
                "truncated file: tensor {name} runs past the end ({size} bytes at offset \
                 {start}, {remaining} remaining in file)"
            )));
        }
        let mut bytes = WeightBytes::zeroed(size);
        self.reader.seek(SeekFrom::Start(start)).map_err(io)?;
        self.reader.read_exact(&mut bytes).map_err(io)?;
        Ok(bytes)
    }

    pub fn tensor_if_present(&mut self, name: &str) -> Result<Option<QTensor>, ModelFileError> {
        if self.has_tensor(name) {
            self.tensor(name).map(Some)
        } else {
            Ok(None)
        }
    }
}

/// candle's error without the backtrace it attaches when `RUST_BACKTRACE` is set.
pub fn brief(e: &candle_core::Error) -> String {
    let text = e.to_string();
    match text.split_once('\n') {
        Some((first, _)) => first.trim_end().to_string(),
        None => text,
    }
}

/// candle's header errors, said so that the user knows what is wrong with their file.
fn explain(path: &Path, message: &str) -> ModelFileError {
    let problem = if let Some(rest) = message.strip_prefix("unknown dtype for tensor ") {
        format!(
            "a tensor uses ggml type {rest}, which this build cannot read (it reads {SUPPORTED_TYPES}); \
             use a file quantized to one of those"
        )
    } else if message.contains("remaining")
        || message.contains("failed to fill whole buffer")
        || message.contains("UnexpectedEof")
    {
        format!("truncated file: the header ends early ({message})")
    } else if message.contains("unknown magic") || message.contains("version") {
        format!("unsupported GGUF header: {message}")
    } else {
        format!("not a readable GGUF file: {message}")
    };
    ModelFileError::new(path, problem)
}
