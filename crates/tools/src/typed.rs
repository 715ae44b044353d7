//! Typed tools: a Rust function or struct whose arguments type derives `Deserialize` and
//! `JsonSchema` becomes a [`Tool`]. The schema the model sees is generated from that type, and every
//! call is checked against it before the code runs.

use std::future::Future;
use std::marker::PhantomData;

use async_trait::async_trait;
use corral_core::{Tool, ToolError, ToolOutput, ToolSpec};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;

use crate::schema::ArgumentSchema;

/// A tool written as a struct: say what its arguments are and what it does with them; wrap it in
/// [`Typed`] to use it as a [`Tool`].
///
/// ```
/// use corral_tools::{TypedTool, Typed};
/// use corral_core::{ToolError, ToolOutput};
///
/// #[derive(serde::Deserialize, schemars::JsonSchema)]
/// struct Args {
///     /// The text to shout.
///     text: String,
/// }
///
/// struct Shout;
///
/// #[async_trait::async_trait]
/// impl TypedTool for Shout {
///     type Args = Args;
///     fn name(&self) -> String { "shout".into() }
///     fn description(&self) -> String { "Upper-cases text".into() }
///     async fn run(&self, args: Args) -> Result<ToolOutput, ToolError> {
///         Ok(ToolOutput::text(args.text.to_uppercase()))
///     }
/// }
///
/// let tool = Typed::new(Shout).expect("valid schema");
/// ```
#[async_trait]
pub trait TypedTool: Send + Sync + 'static {
    type Args: DeserializeOwned + JsonSchema + Send;

    fn name(&self) -> String;
    fn description(&self) -> String;
    async fn run(&self, args: Self::Args) -> Result<ToolOutput, ToolError>;
}

/// A [`TypedTool`] as a [`Tool`].
pub struct Typed<T: TypedTool> {
    inner: T,
    spec: ToolSpec,
    schema: ArgumentSchema,
}

impl<T: TypedTool> std::fmt::Debug for Typed<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Typed")
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

impl<T: TypedTool> Typed<T> {
    pub fn new(inner: T) -> Result<Self, ToolError> {
        let spec = ToolSpec::for_arguments::<T::Args>(inner.name(), inner.description());
        let schema = ArgumentSchema::compile(&spec.name, &spec.parameters)?;
        Ok(Self {
            inner,
            spec,
            schema,
        })
    }

    pub fn inner(&self) -> &T {
        &self.inner
    }
}

#[async_trait]
impl<T: TypedTool> Tool for Typed<T> {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    async fn call(&self, arguments: serde_json::Value) -> Result<ToolOutput, ToolError> {
        let args = parse_arguments::<T::Args>(&self.schema, arguments)?;
        self.inner.run(args).await
    }
}

/// A tool written as an async function or closure of its typed arguments.
///
/// ```
/// use corral_tools::tool_fn;
/// use corral_core::ToolOutput;
///
/// #[derive(serde::Deserialize, schemars::JsonSchema)]
/// struct Add { a: f64, b: f64 }
///
/// let add = tool_fn("add", "Adds two numbers", |args: Add| async move {
///     Ok(ToolOutput::text((args.a + args.b).to_string()))
/// })
/// .expect("valid schema");
/// ```
pub fn tool_fn<A, F, Fut>(
    name: impl Into<String>,
    description: impl Into<String>,
    function: F,
) -> Result<FnTool<A, F>, ToolError>
where
    A: DeserializeOwned + JsonSchema + Send + 'static,
    F: Fn(A) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<ToolOutput, ToolError>> + Send + 'static,
{
    let spec = ToolSpec::for_arguments::<A>(name, description);
    let schema = ArgumentSchema::compile(&spec.name, &spec.parameters)?;
    Ok(FnTool {
        spec,
        schema,
        function,
        _args: PhantomData,
    })
}

/// See [`tool_fn`].
pub struct FnTool<A, F> {
    spec: ToolSpec,
    schema: ArgumentSchema,
    function: F,
    _args: PhantomData<fn(A)>,
}

impl<A, F> std::fmt::Debug for FnTool<A, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnTool")
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl<A, F, Fut> Tool for FnTool<A, F>
where
    A: DeserializeOwned + JsonSchema + Send + 'static,
    F: Fn(A) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<ToolOutput, ToolError>> + Send + 'static,
{
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    async fn call(&self, arguments: serde_json::Value) -> Result<ToolOutput, ToolError> {
        let args = parse_arguments::<A>(&self.schema, arguments)?;
        (self.function)(args).await
    }
}

/// Validates against the schema, then deserializes; the second step only fails where the schema
/// says less than the type (e.g. an enum the schema generator widened), and then names the field.
pub fn parse_arguments<A: DeserializeOwned>(
    schema: &ArgumentSchema,
    arguments: serde_json::Value,
) -> Result<A, ToolError> {
    // Models often send `null` or nothing for a tool without parameters.
    let arguments = if arguments.is_null() {
        serde_json::Value::Object(serde_json::Map::new())
    } else {
        arguments
    };
    schema.check(&arguments)?;
    serde_path_to_error::deserialize(arguments).map_err(|e| {
        let path = e.path().to_string();
        ToolError::InvalidArguments {
            field: (path != ".").then_some(path),
            message: e.into_inner().to_string(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Deserialize, JsonSchema)]
    struct Forecast {
        /// The city to look up.
        city: String,
        /// Days ahead, 1 to 14.
        #[schemars(range(min = 1, max = 14))]
        days: Option<u8>,
    }

    struct Weather;

    #[async_trait]
    impl TypedTool for Weather {
        type Args = Forecast;
        fn name(&self) -> String {
            "weather".into()
        }
        fn description(&self) -> String {
            "Forecast for a city".into()
        }
        async fn run(&self, args: Forecast) -> Result<ToolOutput, ToolError> {
            Ok(ToolOutput::text(format!(
                "{}: sunny for {} days",
                args.city,
                args.days.unwrap_or(1)
            )))
        }
    }

    #[tokio::test]
    async fn a_struct_tool_runs_with_typed_arguments() {
        let tool = Typed::new(Weather).expect("tool");
        assert_eq!(tool.spec().name, "weather");
        assert_eq!(
            tool.spec().parameters["properties"]["days"]["maximum"],
            json!(14)
        );
        let out = tool
            .call(json!({"city": "Oslo", "days": 3}))
            .await
            .expect("runs");
        assert_eq!(out.content, "Oslo: sunny for 3 days");
    }

    #[tokio::test]
    async fn a_bad_call_is_refused_before_the_tool_runs() {
        let ran = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = ran.clone();
        let tool = tool_fn("weather", "Forecast", move |_: Forecast| {
            seen.store(true, std::sync::atomic::Ordering::SeqCst);
            async { Ok(ToolOutput::text("ok")) }
        })
        .expect("tool");
        for (arguments, field) in [
            (json!({"days": 2}), "city"),
            (json!({"city": "Oslo", "days": 99}), "days"),
            (json!({"city": ["Oslo"]}), "city"),
        ] {
            match tool.call(arguments.clone()).await {
                Err(ToolError::InvalidArguments { field: Some(f), .. }) => {
                    assert_eq!(f, field, "{arguments}")
                }
                other => panic!("expected an argument error for {arguments}, got {other:?}"),
            }
        }
        assert!(!ran.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[tokio::test]
    async fn a_tool_without_parameters_accepts_null() {
        #[derive(Deserialize, JsonSchema)]
        struct Nothing {}
        let tool = tool_fn("ping", "Replies pong", |_: Nothing| async {
            Ok(ToolOutput::text("pong"))
        })
        .expect("tool");
        assert_eq!(
            tool.call(serde_json::Value::Null)
                .await
                .expect("runs")
                .content,
            "pong"
        );
    }
}
