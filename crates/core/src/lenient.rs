//! Numbers and booleans in provider configs that may also be written as strings, so that
//! `${env.NAME}` (which always yields a string) can supply them: `port = "${env.PORT:=8321}"`.
//!
//! Use with `#[serde(deserialize_with = "corral_core::lenient::value")]`, or `lenient::option` on an
//! `Option` field with `#[serde(default)]`.

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};

struct Lenient<T>(PhantomData<T>);

impl<T: FromStr> Lenient<T>
where
    T::Err: fmt::Display,
{
    fn parse<E: de::Error>(text: &str) -> Result<T, E> {
        text.trim().parse().map_err(|e| {
            E::custom(format!(
                "invalid value `{text}` for {}: {e}",
                std::any::type_name::<T>()
            ))
        })
    }
}

impl<T: FromStr> Visitor<'_> for Lenient<T>
where
    T::Err: fmt::Display,
{
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a {}, or a string holding one",
            std::any::type_name::<T>()
        )
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        Self::parse(v)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        Self::parse(&v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        Self::parse(&v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        Self::parse(&v.to_string())
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<T, E> {
        Self::parse(&v.to_string())
    }
}

pub fn value<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: fmt::Display,
{
    deserializer.deserialize_any(Lenient(PhantomData))
}

pub fn option<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: fmt::Display,
{
    value(deserializer).map(Some)
}

/// A number of seconds from a config file as a [`std::time::Duration`]: positive, finite, and
/// small enough to represent (a huge value is an error, not a panic).
pub fn seconds(value: f64) -> Result<std::time::Duration, String> {
    if !(value.is_finite() && value > 0.0) {
        return Err(format!("must be a positive number of seconds, not {value}"));
    }
    std::time::Duration::try_from_secs_f64(value)
        .map_err(|_| format!("{value} seconds is more than a duration can hold"))
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct Settings {
        #[serde(deserialize_with = "super::value")]
        port: u16,
        #[serde(default, deserialize_with = "super::option")]
        ratio: Option<f64>,
    }

    #[test]
    fn numbers_come_as_numbers_or_as_strings_holding_them() {
        let s: Settings = serde_json::from_str(r#"{"port": "8321", "ratio": 0.5}"#).expect("valid");
        assert_eq!((s.port, s.ratio), (8321, Some(0.5)));
        let s: Settings = serde_json::from_str(r#"{"port": 80}"#).expect("valid");
        assert_eq!((s.port, s.ratio), (80, None));
        let e = serde_json::from_str::<Settings>(r#"{"port": "eighty"}"#)
            .err()
            .expect("invalid");
        assert!(
            e.to_string().contains("invalid value `eighty` for u16"),
            "{e}"
        );
        assert!(serde_json::from_str::<Settings>(r#"{"port": 70000}"#).is_err());
    }

    #[test]
    fn seconds_must_be_positive_finite_and_representable() {
        assert_eq!(
            super::seconds(1.5),
            Ok(std::time::Duration::from_millis(1500))
        );
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e20] {
            assert!(super::seconds(bad).is_err(), "{bad}");
        }
    }
}
