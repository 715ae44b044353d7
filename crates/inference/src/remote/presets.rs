//! Presets: what differs between OpenAI-compatible providers, as data. A new partner is one entry.
//!
//! Model names map the Hugging Face ids of the Llama models (`meta-llama/Llama-3.2-3B-Instruct`) to
//! each provider's own; any other name is passed through as it is. Sources for each entry: the
//! provider's API documentation and Llama Stack's remote provider for it. Providers whose
//! OpenAI-compatible endpoint needs a short-lived token rather than a static key (Vertex AI's OAuth
//! access token, watsonx's IAM token) take that token as `api_key`; refreshing it is up to the
//! deployment.

/// How the API key travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// `Authorization: Bearer <key>`; a key is required.
    Bearer,
    /// `Authorization: Bearer <key>` when a key is configured (self-hosted servers).
    BearerOptional,
    /// The key as the value of this header (Azure's `api-key`); a key is required.
    Header(&'static str),
}

impl Auth {
    pub fn requires_key(self) -> bool {
        !matches!(self, Self::BearerOptional)
    }
}

/// What the provider's API accepts, as far as its documentation says; per model it may be less.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// `image_url` content parts (the Llama 3.2 Vision models).
    pub vision: bool,
    pub tools: bool,
    /// `response_format: {"type": "json_schema", …}`.
    pub json_schema: bool,
}

const ALL: Capabilities = Capabilities {
    vision: true,
    tools: true,
    json_schema: true,
};

const NO_SCHEMA: Capabilities = Capabilities {
    vision: true,
    tools: true,
    json_schema: false,
};

#[derive(Debug)]
pub struct Preset {
    /// The provider type in `corral.toml`.
    pub name: &'static str,
    pub summary: &'static str,
    /// `None` when the URL depends on the account (the summary gives its shape).
    pub base_url: Option<&'static str>,
    pub auth: Auth,
    /// The conventional environment variable holding the key.
    pub api_key_env: Option<&'static str>,
    /// Query parameters on every request (Azure's `api-version`).
    pub query: &'static [(&'static str, &'static str)],
    /// Hugging Face model ids → the provider's names.
    pub models: &'static [(&'static str, &'static str)],
    pub embedding_batch_size: usize,
    pub capabilities: Capabilities,
}

const L1B: &str = "meta-llama/Llama-3.2-1B-Instruct";
const L3B: &str = "meta-llama/Llama-3.2-3B-Instruct";
const L11V: &str = "meta-llama/Llama-3.2-11B-Vision-Instruct";
const L90V: &str = "meta-llama/Llama-3.2-90B-Vision-Instruct";
const GUARD1B: &str = "meta-llama/Llama-Guard-3-1B";
const GUARD8B: &str = "meta-llama/Llama-Guard-3-8B";
const GUARD11V: &str = "meta-llama/Llama-Guard-3-11B-Vision";

const fn preset(
    name: &'static str,
    summary: &'static str,
    base_url: Option<&'static str>,
) -> Preset {
    Preset {
        name,
        summary,
        base_url,
        auth: Auth::Bearer,
        api_key_env: None,
        query: &[],
        models: &[],
        embedding_batch_size: 128,
        capabilities: ALL,
    }
}

/// Every preset, `remote::openai-compat` (any base URL) first.
pub static PRESETS: &[Preset] = &[
    Preset {
        auth: Auth::BearerOptional,
        ..preset(
            "remote::openai-compat",
            "any OpenAI-compatible endpoint; `base_url` required, key optional",
            None,
        )
    },
    Preset {
        api_key_env: Some("OPENAI_API_KEY"),
        embedding_batch_size: 2048,
        ..preset(
            "remote::openai",
            "OpenAI",
            Some("https://api.openai.com/v1"),
        )
    },
    Preset {
        api_key_env: Some("TOGETHER_API_KEY"),
        models: &[
            (L3B, "meta-llama/Llama-3.2-3B-Instruct-Turbo"),
            (L11V, "meta-llama/Llama-3.2-11B-Vision-Instruct-Turbo"),
            (L90V, "meta-llama/Llama-3.2-90B-Vision-Instruct-Turbo"),
            (GUARD8B, "meta-llama/Llama-Guard-3-8B"),
            (GUARD11V, "meta-llama/Llama-Guard-3-11B-Vision-Turbo"),
        ],
        ..preset(
            "remote::together",
            "Together AI",
            Some("https://api.together.xyz/v1"),
        )
    },
    Preset {
        api_key_env: Some("FIREWORKS_API_KEY"),
        models: &[
            (L1B, "accounts/fireworks/models/llama-v3p2-1b-instruct"),
            (L3B, "accounts/fireworks/models/llama-v3p2-3b-instruct"),
            (
                L11V,
                "accounts/fireworks/models/llama-v3p2-11b-vision-instruct",
            ),
            (
                L90V,
                "accounts/fireworks/models/llama-v3p2-90b-vision-instruct",
            ),
            (GUARD8B, "accounts/fireworks/models/llama-guard-3-8b"),
            (
                GUARD11V,
                "accounts/fireworks/models/llama-guard-3-11b-vision",
            ),
        ],
        ..preset(
            "remote::fireworks",
            "Fireworks AI",
            Some("https://api.fireworks.ai/inference/v1"),
        )
    },
    Preset {
        api_key_env: Some("GROQ_API_KEY"),
        capabilities: NO_SCHEMA,
        ..preset(
            "remote::groq",
            "Groq (its Llama 3.2 models are retired; name current models directly)",
            Some("https://api.groq.com/openai/v1"),
        )
    },
    Preset {
        api_key_env: Some("DATABRICKS_TOKEN"),
        ..preset(
            "remote::databricks",
            "Databricks model serving; base_url https://<workspace-host>/serving-endpoints, model = endpoint name",
            None,
        )
    },
    Preset {
        api_key_env: Some("NVIDIA_API_KEY"),
        models: &[
            (L1B, "meta/llama-3.2-1b-instruct"),
            (L3B, "meta/llama-3.2-3b-instruct"),
            (L11V, "meta/llama-3.2-11b-vision-instruct"),
            (L90V, "meta/llama-3.2-90b-vision-instruct"),
        ],
        ..preset(
            "remote::nvidia",
            "NVIDIA API catalog (build.nvidia.com)",
            Some("https://integrate.api.nvidia.com/v1"),
        )
    },
    Preset {
        auth: Auth::BearerOptional,
        models: &[
            (L1B, "meta/llama-3.2-1b-instruct"),
            (L3B, "meta/llama-3.2-3b-instruct"),
            (L11V, "meta/llama-3.2-11b-vision-instruct"),
            (L90V, "meta/llama-3.2-90b-vision-instruct"),
        ],
        ..preset(
            "remote::nvidia-nim",
            "a self-hosted NVIDIA NIM container",
            Some("http://localhost:8000/v1"),
        )
    },
    Preset {
        auth: Auth::Header("api-key"),
        api_key_env: Some("AZURE_OPENAI_API_KEY"),
        query: &[("api-version", "2024-10-21")],
        ..preset(
            "remote::azure-openai",
            "Azure OpenAI; base_url https://<resource>.openai.azure.com/openai/deployments/<deployment>",
            None,
        )
    },
    Preset {
        auth: Auth::Header("api-key"),
        api_key_env: Some("AZURE_INFERENCE_CREDENTIAL"),
        query: &[("api-version", "2024-05-01-preview")],
        ..preset(
            "remote::azure-ai",
            "Azure AI Foundry model inference; base_url https://<resource>.services.ai.azure.com/models, model = deployment",
            None,
        )
    },
    Preset {
        models: &[(L90V, "meta/llama-3.2-90b-vision-instruct-maas")],
        ..preset(
            "remote::vertex-ai",
            "Google Vertex AI; base_url https://<location>-aiplatform.googleapis.com/v1/projects/<project>/locations/<location>/endpoints/openapi, api_key = an OAuth access token",
            None,
        )
    },
    Preset {
        models: &[
            (L1B, "meta-llama/llama-3-2-1b-instruct"),
            (L3B, "meta-llama/llama-3-2-3b-instruct"),
            (L11V, "meta-llama/llama-3-2-11b-vision-instruct"),
            (L90V, "meta-llama/llama-3-2-90b-vision-instruct"),
            (GUARD11V, "meta-llama/llama-guard-3-11b-vision"),
        ],
        ..preset(
            "remote::watsonx",
            "IBM watsonx.ai model gateway (beta); base_url https://<region>.ml.cloud.ibm.com/ml/gateway/v1, api_key = an IAM access token",
            None,
        )
    },
    Preset {
        ..preset(
            "remote::snowflake",
            "Snowflake Cortex; base_url https://<account>.snowflakecomputing.com/api/v2/cortex/v1, api_key = a programmatic access token",
            None,
        )
    },
    Preset {
        models: &[
            (L11V, "meta.llama-3.2-11b-vision-instruct"),
            (L90V, "meta.llama-3.2-90b-vision-instruct"),
        ],
        ..preset(
            "remote::oci",
            "Oracle OCI Generative AI; base_url https://inference.generativeai.<region>.oci.oraclecloud.com/openai/v1, api_key = a Generative AI API key",
            None,
        )
    },
    Preset {
        api_key_env: Some("CEREBRAS_API_KEY"),
        ..preset(
            "remote::cerebras",
            "Cerebras Inference",
            Some("https://api.cerebras.ai/v1"),
        )
    },
    Preset {
        api_key_env: Some("SAMBANOVA_API_KEY"),
        models: &[
            (L1B, "Meta-Llama-3.2-1B-Instruct"),
            (L3B, "Meta-Llama-3.2-3B-Instruct"),
            (L11V, "Llama-3.2-11B-Vision-Instruct"),
            (L90V, "Llama-3.2-90B-Vision-Instruct"),
            (GUARD8B, "Meta-Llama-Guard-3-8B"),
        ],
        ..preset(
            "remote::sambanova",
            "SambaNova Cloud",
            Some("https://api.sambanova.ai/v1"),
        )
    },
    Preset {
        api_key_env: Some("OPENROUTER_API_KEY"),
        models: &[(L11V, "meta-llama/llama-3.2-11b-vision-instruct")],
        ..preset(
            "remote::openrouter",
            "OpenRouter",
            Some("https://openrouter.ai/api/v1"),
        )
    },
    Preset {
        auth: Auth::BearerOptional,
        api_key_env: Some("VLLM_API_KEY"),
        ..preset(
            "remote::vllm",
            "a vLLM server (model = the served Hugging Face id)",
            Some("http://localhost:8000/v1"),
        )
    },
    Preset {
        auth: Auth::BearerOptional,
        api_key_env: Some("HF_API_TOKEN"),
        ..preset(
            "remote::tgi",
            "Hugging Face text-generation-inference (Messages API)",
            Some("http://localhost:3000/v1"),
        )
    },
    Preset {
        auth: Auth::BearerOptional,
        api_key_env: Some("OLLAMA_API_KEY"),
        models: &[
            (L1B, "llama3.2:1b"),
            (L3B, "llama3.2:3b"),
            (L11V, "llama3.2-vision:11b"),
            (L90V, "llama3.2-vision:90b"),
            (GUARD1B, "llama-guard3:1b"),
            (GUARD8B, "llama-guard3:8b"),
            ("sentence-transformers/all-MiniLM-L6-v2", "all-minilm:l6-v2"),
        ],
        ..preset(
            "remote::ollama",
            "Ollama's OpenAI-compatible API",
            Some("http://localhost:11434/v1"),
        )
    },
    Preset {
        auth: Auth::BearerOptional,
        ..preset(
            "remote::llama-cpp",
            "llama.cpp's llama-server",
            Some("http://127.0.0.1:8080/v1"),
        )
    },
    Preset {
        auth: Auth::BearerOptional,
        ..preset(
            "remote::lmstudio",
            "LM Studio's local server",
            Some("http://localhost:1234/v1"),
        )
    },
];

/// The query parameters for a provider: the preset's, with `api-version` replaced (or added) when
/// the config names one.
pub(crate) fn query(preset: &Preset, api_version: Option<&str>) -> Vec<(String, String)> {
    let mut query: Vec<(String, String)> = preset
        .query
        .iter()
        .filter(|(key, _)| api_version.is_none() || *key != "api-version")
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if let Some(version) = api_version {
        query.push(("api-version".into(), version.into()));
    }
    query
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preset_names_are_unique_and_urls_well_formed() {
        let mut names: Vec<&str> = PRESETS.iter().map(|p| p.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), PRESETS.len());
        for preset in PRESETS {
            assert!(preset.name.starts_with("remote::"), "{}", preset.name);
            if let Some(url) = preset.base_url {
                assert!(url.starts_with("http") && !url.ends_with('/'), "{url}");
            }
            assert!(preset.embedding_batch_size > 0);
        }
    }

    #[test]
    fn api_version_from_config_replaces_the_presets() {
        let azure = PRESETS
            .iter()
            .find(|p| p.name == "remote::azure-openai")
            .expect("azure");
        assert_eq!(
            query(azure, None),
            [("api-version".to_string(), "2024-10-21".to_string())]
        );
        assert_eq!(
            query(azure, Some("2025-01-01")),
            [("api-version".to_string(), "2025-01-01".to_string())]
        );
        let vllm = PRESETS
            .iter()
            .find(|p| p.name == "remote::vllm")
            .expect("vllm");
        assert!(query(vllm, None).is_empty());
    }
}
