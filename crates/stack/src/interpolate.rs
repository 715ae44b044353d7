//! `${env.NAME}` and `${env.NAME:=default}` in config strings.
//!
//! Every string value in the file (not keys) is expanded before typed parsing. `${env.NAME:=default}`
//! takes the default when NAME is unset or empty, as in the shell. `$${` writes a literal `${`.
//! Values stay strings: numeric and boolean settings accept a string holding the value, so
//! `port = "${env.PORT:=8321}"` works.

use toml::Value;

/// A way to read environment variables: the process environment, or a map in tests.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl<F: Fn(&str) -> Option<String>> Env for F {
    fn var(&self, name: &str) -> Option<String> {
        self(name)
    }
}

/// Why a string could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpandError {
    /// `${env.NAME}` with NAME unset and no default.
    Missing(String),
    /// Not of the form `${env.NAME}` or `${env.NAME:=default}`.
    Malformed(String),
}

/// Expands every string in `value`, reporting the key path of the first string that fails.
pub fn interpolate(value: &mut Value, env: &dyn Env) -> Result<(), (String, ExpandError)> {
    walk(value, String::new(), env)
}

fn walk(value: &mut Value, path: String, env: &dyn Env) -> Result<(), (String, ExpandError)> {
    match value {
        Value::String(s) if s.contains('$') => {
            *s = expand(s, env).map_err(|e| (path, e))?;
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                walk(item, format!("{path}[{i}]"), env)?;
            }
        }
        Value::Table(table) => {
            for (key, item) in table.iter_mut() {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                walk(item, child, env)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Expands the placeholders in one string.
pub fn expand(input: &str, env: &dyn Env) -> Result<String, ExpandError> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            let end = after.find('}').ok_or_else(|| {
                // Only the start: the rest of the string may be a secret.
                let start: String = tail.chars().take(24).collect();
                ExpandError::Malformed(format!("`{start}…` has no closing `}}`"))
            })?;
            out.push_str(&resolve(&after[..end], env)?);
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn resolve(placeholder: &str, env: &dyn Env) -> Result<String, ExpandError> {
    // The message shows the placeholder only up to `:=`: a default can be a literal secret.
    let shown = placeholder.split(":=").next().unwrap_or_default();
    let malformed = || {
        ExpandError::Malformed(format!(
            "`${{{shown}…}}` is not of the form ${{env.NAME}} or ${{env.NAME:=default}}"
        ))
    };
    let spec = placeholder.strip_prefix("env.").ok_or_else(malformed)?;
    let (name, default) = match spec.split_once(":=") {
        Some((name, default)) => (name, Some(default)),
        None => (spec, None),
    };
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(malformed());
    }
    match (env.var(name), default) {
        (Some(value), Some(default)) if value.is_empty() => Ok(default.to_string()),
        (Some(value), _) => Ok(value),
        (None, Some(default)) => Ok(default.to_string()),
        (None, None) => Err(ExpandError::Missing(name.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "API_KEY" => Some("sk-123".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_set_variables_and_defaults() {
        assert_eq!(expand("${env.API_KEY}", &env).as_deref(), Ok("sk-123"));
        assert_eq!(
            expand("Bearer ${env.API_KEY}!", &env).as_deref(),
            Ok("Bearer sk-123!")
        );
        assert_eq!(expand("${env.UNSET:=8321}", &env).as_deref(), Ok("8321"));
        assert_eq!(expand("${env.API_KEY:=x}", &env).as_deref(), Ok("sk-123"));
        assert_eq!(
            expand("${env.EMPTY:=fallback}", &env).as_deref(),
            Ok("fallback")
        );
        assert_eq!(expand("${env.EMPTY}", &env).as_deref(), Ok(""));
        assert_eq!(expand("${env.UNSET:=}", &env).as_deref(), Ok(""));
        assert_eq!(
            expand("${env.UNSET:=~/models}/${env.API_KEY}", &env).as_deref(),
            Ok("~/models/sk-123")
        );
    }

    #[test]
    fn leaves_plain_dollars_and_escapes_alone() {
        assert_eq!(expand("costs $5", &env).as_deref(), Ok("costs $5"));
        assert_eq!(
            expand("$${env.API_KEY}", &env).as_deref(),
            Ok("${env.API_KEY}")
        );
        assert_eq!(expand("trailing $", &env).as_deref(), Ok("trailing $"));
    }

    #[test]
    fn missing_variables_and_malformed_placeholders_are_errors() {
        assert_eq!(
            expand("${env.UNSET}", &env),
            Err(ExpandError::Missing("UNSET".into()))
        );
        assert!(matches!(
            expand("${env.API_KEY", &env),
            Err(ExpandError::Malformed(_))
        ));
        assert!(matches!(
            expand("${API_KEY}", &env),
            Err(ExpandError::Malformed(_))
        ));
        assert!(matches!(
            expand("${env.}", &env),
            Err(ExpandError::Malformed(_))
        ));
        assert!(matches!(
            expand("${env.A B}", &env),
            Err(ExpandError::Malformed(_))
        ));
    }

    #[test]
    fn reports_the_key_path_of_the_failing_string() {
        let mut value: Value = toml::from_str(
            r#"
            [[providers.inference]]
            id = "together"
            config = { api_key = "${env.API_KEY}", base_url = "${env.BASE_URL}" }
            "#,
        )
        .expect("valid toml");
        let (path, error) = interpolate(&mut value, &env).expect_err("BASE_URL is unset");
        assert_eq!(path, "providers.inference[0].config.base_url");
        assert_eq!(error, ExpandError::Missing("BASE_URL".into()));
    }
}
