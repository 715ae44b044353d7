//! Agents from config: `[agent]` or `[agents.<name>]` resolved to an [`Agent`] — its chat model,
//! retrieval over the named stores, the tools of its tool groups, and its shields.

use std::sync::Arc;

use corral_agents::{Agent, AgentError, SessionStore};
use corral_core::ToolContext;
use corral_tools::builtin::{KnowledgeSettings, Retriever};

use crate::config::AgentDefaults;
use crate::stack::Stack;

/// What a caller changes about a configured agent for one run (the CLI's flags).
#[derive(Debug, Clone, Default)]
pub struct AgentOverrides {
    /// A chat model id instead of the agent's.
    pub model: Option<String>,
    /// These stores instead of the agent's.
    pub vector_stores: Option<Vec<String>>,
    /// These tool groups instead of the agent's.
    pub tool_groups: Option<Vec<String>>,
    /// The most tokens per model call, instead of the agent's setting.
    pub max_tokens: Option<u32>,
}

impl Stack {
    /// The configured agent `name` (`None`: the `[agent]` table), with `overrides`, keeping its
    /// sessions in `sessions`.
    pub async fn agent(
        &self,
        name: Option<&str>,
        overrides: &AgentOverrides,
        sessions: Arc<dyn SessionStore>,
    ) -> Result<Agent, AgentError> {
        let setup = |what: String| AgentError::InvalidRequest(what);
        let config: &AgentDefaults = match name {
            None => &self.config().agent,
            Some(name) => self.config().agents.get(name).ok_or_else(|| {
                let known: Vec<&str> = self.config().agents.keys().map(String::as_str).collect();
                setup(format!(
                    "no agent named `{name}` in {}; {}",
                    self.origin(),
                    if known.is_empty() {
                        "it declares none under [agents.<name>]".to_string()
                    } else {
                        format!("declared: {}", known.join(", "))
                    }
                ))
            })?,
        };
        let model_id = overrides
            .model
            .clone()
            .or_else(|| config.model.clone())
            .or_else(|| self.first_chat_model())
            .ok_or_else(|| {
                setup(format!(
                    "no chat model: set `agent.model` in {} or pass --model",
                    self.origin()
                ))
            })?;
        let model = self.chat_model(&model_id).await?;
        let mut settings = config.settings.clone().unwrap_or_default();
        settings.max_infer_iters = config.max_infer_iters;
        if overrides.max_tokens.is_some() {
            settings.max_tokens = overrides.max_tokens;
        }
        let mut builder = Agent::builder(model).settings(settings).sessions(sessions);
        if let Some(instructions) = &config.instructions {
            builder = builder.instructions(instructions.clone());
        }
        let stores = overrides
            .vector_stores
            .clone()
            .unwrap_or_else(|| config.vector_stores.clone());
        if !stores.is_empty() {
            let mut searchable = Vec::with_capacity(stores.len());
            for id in &stores {
                searchable.push(
                    self.searchable_store(id)
                        .await
                        .map_err(|e| setup(format!("vector store `{id}`: {e}")))?,
                );
            }
            let retrieval = config.retrieval.clone().unwrap_or_default();
            let mut knowledge = KnowledgeSettings::new(stores);
            knowledge.mode = retrieval.mode;
            knowledge.top_k = retrieval.top_k;
            knowledge.max_tokens = retrieval.max_tokens;
            knowledge.min_score = retrieval.min_score;
            builder = builder.retriever(Retriever::new(searchable, knowledge).map_err(setup)?);
        }
        let groups = overrides
            .tool_groups
            .clone()
            .unwrap_or_else(|| config.tool_groups.clone());
        for group in &groups {
            let tools = self
                .tool_group(group)
                .await
                .map_err(|e| setup(format!("tool group `{group}`: {e}")))?;
            builder = builder.tools(tools);
        }
        for (list, place) in [
            (&config.input_shields, ShieldPlace::Input),
            (&config.output_shields, ShieldPlace::Output),
            (&config.content_shields, ShieldPlace::Content),
        ] {
            for id in list {
                let shield = self
                    .shield(id)
                    .await
                    .map_err(|e| setup(format!("shield `{id}`: {e}")))?;
                builder = match place {
                    ShieldPlace::Input => builder.input_shield(id.clone(), shield),
                    ShieldPlace::Output => builder.output_shield(id.clone(), shield),
                    ShieldPlace::Content => builder.content_shield(id.clone(), shield),
                };
            }
        }
        builder.build()
    }

    /// The first chat model the config declares, for an agent that names none.
    fn first_chat_model(&self) -> Option<String> {
        self.config()
            .models
            .iter()
            .find(|m| m.kind == crate::config::ModelKind::Chat)
            .map(|m| m.id.clone())
    }
}

enum ShieldPlace {
    Input,
    Output,
    Content,
}
