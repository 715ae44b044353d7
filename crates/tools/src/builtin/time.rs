//! `current_time`: the date and time now, in UTC or a named IANA time zone (jiff, with the time
//! zone database bundled so it works where the system has none).

use async_trait::async_trait;
use corral_core::{ToolError, ToolOutput};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::TypedTool;

pub const NAME: &str = "current_time";

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CurrentTimeArgs {
    /// An IANA time zone such as `Europe/Paris` or `America/New_York`; UTC when left out.
    #[serde(default)]
    pub timezone: Option<String>,
}

/// Tells the time.
#[derive(Debug, Clone, Copy, Default)]
pub struct CurrentTime;

#[async_trait]
impl TypedTool for CurrentTime {
    type Args = CurrentTimeArgs;

    fn name(&self) -> String {
        NAME.into()
    }

    fn description(&self) -> String {
        "Returns the current date, time and weekday, in UTC or in the given IANA time zone.".into()
    }

    async fn run(&self, args: CurrentTimeArgs) -> Result<ToolOutput, ToolError> {
        let now = jiff::Timestamp::now();
        let zone_name = args.timezone.as_deref().map(str::trim).unwrap_or("UTC");
        let zoned = at(now, zone_name)?;
        let mut output = ToolOutput::text(format!(
            "{} ({}, {})",
            zoned.strftime("%Y-%m-%d %H:%M:%S %:z"),
            zoned.strftime("%A"),
            zone_name
        ));
        output
            .metadata
            .insert("rfc3339".into(), zoned.timestamp().to_string().into());
        Ok(output)
    }
}

fn at(now: jiff::Timestamp, zone_name: &str) -> Result<jiff::ZonedDateTime, ToolError> {
    let zone = jiff::tz::TimeZone::get(zone_name).map_err(|_| ToolError::InvalidArguments {
        field: Some("timezone".into()),
        message: format!("`{zone_name}` is not an IANA time zone name (e.g. `Europe/Paris`)"),
    })?;
    Ok(now.to_zoned_datetime(zone))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_to_named_zones() {
        let now: jiff::Timestamp = "2026-07-01T12:00:00Z".parse().expect("timestamp");
        let paris = at(now, "Europe/Paris").expect("zone");
        assert_eq!(
            paris.strftime("%Y-%m-%d %H:%M %:z").to_string(),
            "2026-07-01 14:00 +02:00"
        );
        let utc = at(now, "UTC").expect("utc");
        assert_eq!(utc.strftime("%H:%M").to_string(), "12:00");
    }

    #[test]
    fn an_unknown_zone_names_the_field() {
        let now = jiff::Timestamp::now();
        match at(now, "Mars/Olympus_Mons") {
            Err(ToolError::InvalidArguments { field, message }) => {
                assert_eq!(field.as_deref(), Some("timezone"));
                assert!(message.contains("Mars/Olympus_Mons"), "{message}");
            }
            other => panic!("expected an error, got {other:?}"),
        }
    }
}
