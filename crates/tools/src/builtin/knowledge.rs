//! `knowledge_search`: finds passages in one or more vector stores and hands them to the model
//! numbered, with their sources, within a token budget — the same rendering an agent uses when it
//! puts retrieved context into the prompt itself, so answers cite `[n]` the same way either way.

use std::collections::HashMap;

use async_trait::async_trait;
use corral_core::{
    Citation, Filter, Fusion, SearchHit, SearchMode, SearchQuery, SearchableStore, ToolError,
    ToolOutput,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::TypedTool;

pub const NAME: &str = "knowledge_search";

/// How to search, from the tool group's params (or the agent's config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnowledgeSettings {
    /// Ids of the vector stores to search.
    pub vector_stores: Vec<String>,
    #[serde(default)]
    pub mode: ModeName,
    /// Passages to return, at most.
    #[serde(default = "default_top_k")]
    pub top_k: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_score: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Filter>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fusion: Option<Fusion>,
    /// The most context to return, in tokens (estimated at four characters per token).
    #[serde(default = "default_max_tokens")]
    pub max_tokens: usize,
}

fn default_top_k() -> usize {
    5
}
fn default_max_tokens() -> usize {
    2_000
}

impl KnowledgeSettings {
    pub fn new(vector_stores: Vec<String>) -> Self {
        Self {
            vector_stores,
            mode: ModeName::default(),
            top_k: default_top_k(),
            min_score: None,
            filter: None,
            fusion: None,
            max_tokens: default_max_tokens(),
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.vector_stores.is_empty() {
            return Err("`vector_stores` names no store to search".into());
        }
        if self.top_k == 0 || self.top_k > 100 {
            return Err(format!("`top_k` must be 1 to 100, not {}", self.top_k));
        }
        if self.max_tokens < 50 {
            return Err(format!(
                "`max_tokens` must be at least 50, not {}",
                self.max_tokens
            ));
        }
        Ok(())
    }
}

/// [`SearchMode`] as config spells it: `mode = "hybrid"`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModeName {
    Vector,
    Keyword,
    #[default]
    Hybrid,
}

impl From<ModeName> for SearchMode {
    fn from(mode: ModeName) -> Self {
        match mode {
            ModeName::Vector => SearchMode::Vector,
            ModeName::Keyword => SearchMode::Keyword,
            ModeName::Hybrid => SearchMode::Hybrid,
        }
    }
}

/// Passages found for a query, rendered for the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Retrieved {
    /// The numbered passages with their sources, as the model reads them.
    pub context: String,
    pub citations: Vec<Citation>,
    /// Passages found but left out because the token budget was spent.
    pub left_out: usize,
}

/// Searches a fixed set of stores with fixed settings.
#[derive(Debug, Clone)]
pub struct Retriever {
    stores: Vec<SearchableStore>,
    settings: KnowledgeSettings,
}

impl Retriever {
    pub fn new(stores: Vec<SearchableStore>, settings: KnowledgeSettings) -> Result<Self, String> {
        settings.validate()?;
        Ok(Self { stores, settings })
    }

    pub fn settings(&self) -> &KnowledgeSettings {
        &self.settings
    }

    /// Searches every store and renders the passages that fit the token budget.
    pub async fn retrieve(
        &self,
        query: &str,
        top_k: Option<usize>,
    ) -> Result<Retrieved, ToolError> {
        let hits = self.search(query, top_k).await?;
        Ok(render(&hits, self.settings.max_tokens))
    }

    /// Searches every store and merges the results, best first, each with its store's id. With
    /// several stores, ranks are fused (each store's scores have their own scale); the hit keeps
    /// the store's own score.
    pub async fn search(
        &self,
        query: &str,
        top_k: Option<usize>,
    ) -> Result<Vec<(String, SearchHit)>, ToolError> {
        let top_k = top_k.unwrap_or(self.settings.top_k).clamp(1, 100);
        let mode = SearchMode::from(self.settings.mode);
        let mut per_store = Vec::with_capacity(self.stores.len());
        for searchable in &self.stores {
            let embedding = match mode {
                SearchMode::Keyword => None,
                SearchMode::Vector | SearchMode::Hybrid => {
                    let mut vectors = searchable
                        .embedder
                        .embed(&[query.to_string()])
                        .await
                        .map_err(|e| {
                            ToolError::Failed(format!(
                                "could not embed the query for store `{}`: {e}",
                                searchable.id
                            ))
                        })?;
                    Some(vectors.pop().ok_or_else(|| {
                        ToolError::Failed(format!(
                            "the embedder of store `{}` returned no vector",
                            searchable.id
                        ))
                    })?)
                }
            };
            let hits = searchable
                .store
                .search(&SearchQuery {
                    text: query.to_string(),
                    embedding,
                    mode,
                    fusion: self.settings.fusion.unwrap_or_default(),
                    filter: self.settings.filter.clone(),
                    top_k,
                    min_score: self.settings.min_score,
                })
                .await
                .map_err(|e| {
                    ToolError::Failed(format!("searching store `{}` failed: {e}", searchable.id))
                })?;
            per_store.push((searchable.id.as_str(), hits));
        }
        Ok(merge(per_store, top_k))
    }
}

/// One list per store, best first → one list, best first.
fn merge(per_store: Vec<(&str, Vec<SearchHit>)>, top_k: usize) -> Vec<(String, SearchHit)> {
    if per_store.len() == 1 {
        let (store, hits) = per_store.into_iter().next().unwrap_or_default();
        return hits
            .into_iter()
            .take(top_k)
            .map(|hit| (store.to_string(), hit))
            .collect();
    }
    let mut fused: HashMap<(String, String), (f32, String, SearchHit)> = HashMap::new();
    for (store, hits) in per_store {
        for (rank, hit) in hits.into_iter().enumerate() {
            let rrf = 1.0 / (60.0 + rank as f32 + 1.0);
            fused
                .entry((store.to_string(), hit.chunk.id.clone()))
                .and_modify(|entry| entry.0 += rrf)
                .or_insert((rrf, store.to_string(), hit));
        }
    }
    let mut all: Vec<(f32, String, SearchHit)> = fused.into_values().collect();
    all.sort_by(|a, b| {
        b.0.total_cmp(&a.0)
            .then_with(|| a.2.chunk.id.cmp(&b.2.chunk.id))
    });
    all.into_iter()
        .take(top_k)
        .map(|(_, store, hit)| (store, hit))
        .collect()
}

/// About four characters per token: the usual estimate for English under BPE vocabularies. Token
/// budgets here are for a chat model's context, whose tokenizer is not known where they apply (the
/// retrieved context, an agent's history).
pub fn estimated_tokens(text: &str) -> usize {
    text.chars().count().div_ceil(4)
}

/// Numbered passages with their labels, as many as fit in `max_tokens`. The first passage is
/// always given, cut to the budget if it alone is too long.
pub fn render(hits: &[(String, SearchHit)], max_tokens: usize) -> Retrieved {
    let mut context = String::new();
    let mut citations = Vec::new();
    let mut used = 0;
    for (store, hit) in hits {
        let index = citations.len() + 1;
        let citation = Citation {
            index,
            store: store.clone(),
            source: hit.chunk.source.clone(),
            pages: hit.chunk.pages,
            heading_path: hit.chunk.heading_path.clone(),
            document_id: hit.chunk.document_id.clone(),
            chunk_id: hit.chunk.id.clone(),
            score: hit.score,
        };
        let mut block = format!(
            "[{index}] {}\n{}\n",
            citation.label(),
            hit.chunk.text.trim()
        );
        let cost = estimated_tokens(&block);
        if used + cost > max_tokens {
            if !citations.is_empty() {
                break;
            }
            let keep_chars = max_tokens.saturating_mul(4);
            if let Some((cut, _)) = block.char_indices().nth(keep_chars) {
                block.truncate(cut);
                block.push_str("…\n");
            }
        }
        used += cost;
        if !context.is_empty() {
            context.push('\n');
        }
        context.push_str(&block);
        citations.push(citation);
    }
    Retrieved {
        context,
        left_out: hits.len() - citations.len(),
        citations,
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KnowledgeSearchArgs {
    /// What to look for, in words likely to appear in the documents.
    pub query: String,
    /// How many passages to return (default from config).
    #[schemars(range(min = 1, max = 20))]
    #[serde(default)]
    pub top_k: Option<u32>,
}

/// The tool over a [`Retriever`].
#[derive(Debug, Clone)]
pub struct KnowledgeSearch {
    retriever: Retriever,
}

impl KnowledgeSearch {
    pub fn new(retriever: Retriever) -> Self {
        Self { retriever }
    }
}

#[async_trait]
impl TypedTool for KnowledgeSearch {
    type Args = KnowledgeSearchArgs;

    fn name(&self) -> String {
        NAME.into()
    }

    fn description(&self) -> String {
        "Searches the user's documents and returns numbered passages with their sources. Cite a \
         passage in the answer by its number, like [1]."
            .into()
    }

    async fn run(&self, args: KnowledgeSearchArgs) -> Result<ToolOutput, ToolError> {
        let query = args.query.trim();
        if query.is_empty() {
            return Err(ToolError::InvalidArguments {
                field: Some("query".into()),
                message: "the query is empty".into(),
            });
        }
        let retrieved = self
            .retriever
            .retrieve(query, args.top_k.map(|k| k as usize))
            .await?;
        let content = if retrieved.citations.is_empty() {
            format!(
                "No passages matching `{query}` were found in {}.",
                self.retriever.settings.vector_stores.join(", ")
            )
        } else {
            retrieved.context.clone()
        };
        let mut output = ToolOutput::text(content);
        output.metadata.insert(
            "citations".into(),
            serde_json::to_value(&retrieved.citations).unwrap_or_default(),
        );
        Ok(output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_core::{Chunk, PageRange};

    fn hit(id: &str, source: &str, page: u32, text: &str, score: f32) -> SearchHit {
        SearchHit {
            chunk: Chunk {
                id: id.into(),
                document_id: format!("doc-{source}"),
                text: text.into(),
                source: source.into(),
                pages: Some(PageRange {
                    start: page,
                    end: page,
                }),
                heading_path: vec!["Setup".into()],
                byte_range: None,
                content_hash: None,
                document_hash: None,
                metadata: Default::default(),
            },
            score,
        }
    }

    #[test]
    fn passages_are_numbered_with_their_sources() {
        let hits = vec![
            (
                "docs".to_string(),
                hit("a", "guide.pdf", 3, "Install it.", 0.9),
            ),
            ("docs".to_string(), hit("b", "faq.md", 1, "Ask us.", 0.5)),
        ];
        let retrieved = render(&hits, 1_000);
        assert_eq!(
            retrieved.context,
            "[1] guide.pdf, p. 3 › Setup\nInstall it.\n\n[2] faq.md, p. 1 › Setup\nAsk us.\n"
        );
        assert_eq!(retrieved.citations[1].index, 2);
        assert_eq!(retrieved.citations[1].source, "faq.md");
        assert_eq!(retrieved.left_out, 0);
    }

    #[test]
    fn the_budget_limits_the_passages_but_never_gives_none() {
        let long = "word ".repeat(400);
        let hits = vec![
            ("docs".to_string(), hit("a", "a.txt", 1, &long, 0.9)),
            ("docs".to_string(), hit("b", "b.txt", 1, "short", 0.5)),
        ];
        let retrieved = render(&hits, 100);
        assert_eq!(retrieved.citations.len(), 1);
        assert_eq!(retrieved.left_out, 1);
        assert!(retrieved.context.chars().count() <= 100 * 4 + 2);
        assert!(retrieved.context.ends_with("…\n"));
    }

    #[test]
    fn several_stores_are_merged_by_rank() {
        let merged = merge(
            vec![
                (
                    "a",
                    vec![hit("a1", "x", 1, "x", 30.0), hit("a2", "x", 1, "x", 20.0)],
                ),
                (
                    "b",
                    vec![hit("b1", "y", 1, "y", 0.9), hit("b2", "y", 1, "y", 0.8)],
                ),
            ],
            3,
        );
        let ids: Vec<&str> = merged.iter().map(|(_, h)| h.chunk.id.as_str()).collect();
        assert_eq!(ids, ["a1", "b1", "a2"]);
        assert_eq!(merged[1].0, "b");
    }

    #[test]
    fn settings_are_checked() {
        assert!(KnowledgeSettings::new(vec![]).validate().is_err());
        let mut settings = KnowledgeSettings::new(vec!["docs".into()]);
        settings.top_k = 0;
        assert!(settings.validate().is_err());
        let parsed: KnowledgeSettings = serde_json::from_value(
            serde_json::json!({"vector_stores": ["docs"], "mode": "keyword"}),
        )
        .expect("parses");
        assert_eq!(parsed.mode, ModeName::Keyword);
        assert_eq!(parsed.top_k, 5);
    }
}
