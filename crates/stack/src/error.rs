//! Config errors: the file, the key, and what is wrong with it.

use std::fmt;

/// What kind of mistake a config has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigErrorKind {
    /// The file could not be read.
    Io,
    /// Not valid TOML.
    Syntax,
    /// A required key is absent.
    MissingKey,
    /// A key that is not part of the format (often a typo).
    UnknownKey,
    /// A key has a value of the wrong type or out of range.
    BadValue,
    /// A `${env.NAME}` whose variable is not set and has no default.
    MissingEnv,
    /// A provider `type` this build does not know.
    UnknownProviderType,
    /// A reference to an id that is not declared (a model's provider, a store's embedding model).
    UnknownReference,
    /// Two entries with the same id.
    Duplicate,
}

/// A config that cannot be used, with where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, or `<built-in default>`.
    pub origin: String,
    /// The dotted key path, e.g. `models[2].provider`; `None` for whole-file problems.
    pub key: Option<String>,
    pub kind: ConfigErrorKind,
    pub problem: String,
}

impl ConfigError {
    pub(crate) fn new(
        origin: &str,
        key: impl Into<Option<String>>,
        kind: ConfigErrorKind,
        problem: impl Into<String>,
    ) -> Self {
        Self {
            origin: origin.to_string(),
            key: key.into(),
            kind,
            problem: problem.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.origin)?;
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        f.write_str(&self.problem)
    }
}

impl std::error::Error for ConfigError {}
