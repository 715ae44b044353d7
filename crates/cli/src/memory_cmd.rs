//! `corral ingest`, `corral search`, `corral stores` and `corral eval retrieval`: documents into
//! vector stores and back out.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use corral_core::{Filter, Fusion, SearchHit, SearchMode, SearchQuery, VectorStore};
use corral_memory::eval::{self, Dataset, Metrics};
use corral_memory::ingest::{Outcome, Progress};
use corral_memory::load::LoadError;
use corral_memory::{
    EmbeddedConfig, EmbeddedProvider, IngestOptions, IngestReport, Ingestor, TextDocument,
};
use corral_stack::{ConfigSource, Registry, Stack};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Files and directories (walked, honouring .gitignore, .ignore and .corralignore).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// The vector store (an id from the config); default: the agent's first, else the only one.
    #[arg(long)]
    store: Option<String>,
    /// Remove documents under these paths whose files are gone.
    #[arg(long)]
    prune: bool,
    /// Files loaded and chunked at the same time.
    #[arg(long, default_value_t = 2)]
    parallel: usize,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Mode {
    Hybrid,
    Vector,
    Keyword,
}

impl From<Mode> for SearchMode {
    fn from(mode: Mode) -> Self {
        match mode {
            Mode::Hybrid => SearchMode::Hybrid,
            Mode::Vector => SearchMode::Vector,
            Mode::Keyword => SearchMode::Keyword,
        }
    }
}

#[derive(Debug, Args)]
pub struct SearchArgs {
    /// What to look for.
    query: String,
    /// The vector store (an id from the config); default: the agent's first, else the only one.
    #[arg(long)]
    store: Option<String>,
    #[arg(long, value_enum, default_value = "hybrid")]
    mode: Mode,
    #[arg(long, default_value_t = 5)]
    top_k: usize,
    /// Keep chunks whose field matches: `key=value`, `key>=n`, `key<=n` (fields: source,
    /// document_id, page, format, title and any metadata). Repeat to require all.
    #[arg(long, value_name = "CONDITION")]
    filter: Vec<String>,
    /// Drop hits scoring below this.
    #[arg(long)]
    min_score: Option<f32>,
    /// Hybrid search mixing normalised scores with this weight on vectors, instead of rank fusion.
    #[arg(long, value_name = "WEIGHT")]
    vector_weight: Option<f32>,
    /// Print the hits as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct StoresArgs {
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
pub enum EvalCommand {
    /// Measure retrieval on a BEIR-layout dataset: nDCG@10, recall@10/100 and MRR per search mode.
    Retrieval(EvalArgs),
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// corpus.jsonl: one `{"_id", "title", "text"}` per line.
    #[arg(long)]
    corpus: PathBuf,
    /// queries.jsonl: one `{"_id", "text"}` per line.
    #[arg(long)]
    queries: PathBuf,
    /// qrels.tsv: `query-id  corpus-id  score`.
    #[arg(long)]
    qrels: PathBuf,
    /// The embedding model (an id from the config); default: the default store's.
    #[arg(long)]
    embedding_model: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn stack(config: Option<PathBuf>) -> anyhow::Result<Stack> {
    Ok(Stack::load(
        &ConfigSource::discover(config),
        &Registry::builtin(),
    )?)
}

/// The store a command works on: `--store`, else the agent's first, else the only one.
pub(crate) fn store_id(stack: &Stack, chosen: Option<String>) -> anyhow::Result<String> {
    if let Some(id) = chosen {
        return Ok(id);
    }
    let config = stack.config();
    if let Some(first) = config.agent.vector_stores.first() {
        return Ok(first.clone());
    }
    match config.vector_stores.as_slice() {
        [only] => Ok(only.id.clone()),
        [] => bail!(
            "{} declares no vector store; add a [[vector_stores]] entry",
            stack.origin()
        ),
        many => bail!(
            "{} declares several vector stores ({}); choose one with --store",
            stack.origin(),
            many.iter()
                .map(|s| s.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Draws a bar over documents with chunk and embedding counts.
struct IngestBar {
    bar: ProgressBar,
    started: Instant,
    embedded: std::sync::atomic::AtomicUsize,
}

impl IngestBar {
    fn new() -> Self {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{bar:30}] {pos}/{len} documents · {msg} · {elapsed}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        Self {
            bar,
            started: Instant::now(),
            embedded: std::sync::atomic::AtomicUsize::new(0),
        }
    }
}

impl Progress for IngestBar {
    fn start(&self, documents: usize) {
        self.bar.set_length(documents as u64);
        self.bar
            .enable_steady_tick(std::time::Duration::from_millis(200));
    }

    fn document(&self, _source: &str, result: Result<Outcome, &LoadError>) {
        self.bar.inc(1);
        if let Err(e) = result {
            self.bar.println(format!("warning: {e}"));
        }
    }

    fn embedded(&self, chunks: usize) {
        use std::sync::atomic::Ordering;
        let total = self.embedded.fetch_add(chunks, Ordering::Relaxed) + chunks;
        let rate = total as f64 / self.started.elapsed().as_secs_f64().max(1e-3);
        self.bar
            .set_message(format!("{total} chunks embedded, {rate:.1}/s"));
    }
}

pub async fn ingest(args: IngestArgs, config: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let stack = stack(config)?;
    let id = store_id(&stack, args.store)?;
    let report = ingest_into(&stack, &id, &args.paths, args.prune, args.parallel).await?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report_json(&report))?)?;
    } else {
        print_report(&id, &report)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Ingests `paths` into the store `id` with a progress bar on stderr.
pub(crate) async fn ingest_into(
    stack: &Stack,
    id: &str,
    paths: &[PathBuf],
    prune: bool,
    parallel: usize,
) -> anyhow::Result<IngestReport> {
    let Some(entry) = stack
        .config()
        .vector_stores
        .iter()
        .find(|s| s.id == id)
        .cloned()
    else {
        bail!("unknown vector store `{id}`");
    };
    let store = stack.vector_store(id).await?;
    let embedder = stack.embedder(&entry.embedding_model).await?;
    let options = IngestOptions {
        chunking: entry.chunking.unwrap_or_default(),
        parallel_files: parallel.max(1),
        prune,
        ..IngestOptions::default()
    };
    let ingestor = Ingestor::new(store, embedder, options)?;
    let bar = IngestBar::new();
    let report = ingestor.ingest_paths(paths, &bar).await;
    bar.bar.finish_and_clear();
    Ok(report?)
}

fn report_json(report: &IngestReport) -> serde_json::Value {
    let t = &report.timings;
    serde_json::json!({
        "added": report.added,
        "replaced": report.replaced,
        "unchanged": report.unchanged,
        "pruned": report.pruned,
        "chunks": report.chunks,
        "pages": report.pages,
        "unreadable_pages": report.unreadable_pages,
        "failed": report.failed.iter().map(|e| serde_json::json!({
            "path": e.path.display().to_string(),
            "problem": e.problem.to_string(),
        })).collect::<Vec<_>>(),
        "skipped": report.skipped.iter().map(|s| serde_json::json!({
            "path": s.path.display().to_string(),
            "reason": s.reason.to_string(),
        })).collect::<Vec<_>>(),
        "chunking": report.chunking,
        "seconds": {
            "load": t.load.as_secs_f64(),
            "chunk": t.chunk.as_secs_f64(),
            "embed": t.embed.as_secs_f64(),
            "store": t.store.as_secs_f64(),
            "total": t.total.as_secs_f64(),
        },
    })
}

fn print_report(store: &str, report: &IngestReport) -> std::io::Result<()> {
    let t = &report.timings;
    outln!(
        "store `{store}`: {} added, {} replaced, {} unchanged, {} pruned; {} chunks from {} PDF pages in {:.1} s",
        report.added,
        report.replaced,
        report.unchanged,
        report.pruned.len(),
        report.chunks,
        report.pages,
        t.total.as_secs_f64()
    )?;
    let secs = t.total.as_secs_f64().max(1e-9);
    let stages = (t.load + t.chunk + t.embed + t.store)
        .as_secs_f64()
        .max(1e-9);
    let not_embedding = (t.load + t.chunk + t.store).as_secs_f64();
    outln!(
        "{:.1} pages/s, {:.1} chunks/s; time in load {:.2} s, chunk {:.2} s, embed {:.2} s, store {:.2} s ({:.0}% not embedding)",
        report.pages as f64 / secs,
        report.chunks as f64 / secs,
        t.load.as_secs_f64(),
        t.chunk.as_secs_f64(),
        t.embed.as_secs_f64(),
        t.store.as_secs_f64(),
        100.0 * not_embedding / stages
    )?;
    if !report.unreadable_pages.is_empty() {
        outln!(
            "pages left out ({}), the rest of their documents stored:",
            report.unreadable_pages.len()
        )?;
        for page in &report.unreadable_pages {
            outln!("  {page}")?;
        }
    }
    for source in &report.pruned {
        outln!("pruned: {}", shown(source))?;
    }
    if !report.failed.is_empty() {
        outln!(
            "failed ({}), kept as they were in the store:",
            report.failed.len()
        )?;
        for e in &report.failed {
            outln!("  {}: {}", shown(&e.path.to_string_lossy()), e.problem)?;
        }
    }
    if !report.skipped.is_empty() {
        outln!("skipped ({}):", report.skipped.len())?;
        for s in &report.skipped {
            outln!("  {}: {}", shown(&s.path.to_string_lossy()), s.reason)?;
        }
    }
    Ok(())
}

/// A source path relative to the working directory when it lies under it.
pub(crate) fn shown(source: &str) -> String {
    let path = Path::new(source);
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok().map(Path::to_path_buf))
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| source.to_string())
}

/// `key=value`, `key>=n`, `key<=n`; a value that reads as JSON (a number, `true`) is that.
fn parse_filter(condition: &str) -> anyhow::Result<Filter> {
    let number = |key: &str, value: &str| -> anyhow::Result<f64> {
        value.trim().parse::<f64>().with_context(|| {
            format!("--filter {condition:?}: `{key}` needs a number, not {value:?}")
        })
    };
    if let Some((key, value)) = condition.split_once(">=") {
        let key = key.trim().to_string();
        let gte = Some(number(&key, value)?);
        return Ok(Filter::Range {
            key,
            gte,
            lte: None,
        });
    }
    if let Some((key, value)) = condition.split_once("<=") {
        let key = key.trim().to_string();
        let lte = Some(number(&key, value)?);
        return Ok(Filter::Range {
            key,
            gte: None,
            lte,
        });
    }
    let Some((key, value)) = condition.split_once('=') else {
        bail!("--filter {condition:?}: write key=value, key>=n or key<=n");
    };
    let key = key.trim();
    if key.is_empty() {
        bail!("--filter {condition:?}: the key is empty");
    }
    let value = serde_json::from_str::<serde_json::Value>(value)
        .ok()
        .filter(|v| !v.is_object() && !v.is_array())
        .unwrap_or_else(|| value.into());
    Ok(Filter::eq(key, value))
}

pub async fn search(args: SearchArgs, config: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let mut filters = args
        .filter
        .iter()
        .map(|f| parse_filter(f))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let filter = match filters.len() {
        0 => None,
        1 => filters.pop(),
        _ => Some(Filter::And { filters }),
    };
    let stack = stack(config)?;
    let id = store_id(&stack, args.store)?;
    let store = stack.vector_store(&id).await?;
    let mode = SearchMode::from(args.mode);
    let embedding = match mode {
        SearchMode::Keyword => None,
        _ => {
            let Some(entry) = stack.config().vector_stores.iter().find(|s| s.id == id) else {
                bail!("unknown vector store `{id}`");
            };
            let embedder = stack.embedder(&entry.embedding_model).await?;
            let mut vectors = embedder.embed(std::slice::from_ref(&args.query)).await?;
            vectors.pop()
        }
    };
    let fusion = match args.vector_weight {
        Some(vector_weight) => Fusion::Weighted { vector_weight },
        None => Fusion::default(),
    };
    let hits = store
        .search(&SearchQuery {
            text: args.query.clone(),
            embedding,
            mode,
            fusion,
            filter,
            top_k: args.top_k,
            min_score: args.min_score,
        })
        .await?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&hits)?)?;
    } else if hits.is_empty() {
        outln!("no hits in store `{id}`")?;
    } else {
        print_hits(&hits)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn print_hits(hits: &[SearchHit]) -> std::io::Result<()> {
    for (i, hit) in hits.iter().enumerate() {
        let c = &hit.chunk;
        let pages = match c.pages {
            Some(p) if p.start == p.end => format!(", page {}", p.start),
            Some(p) => format!(", pages {}–{}", p.start, p.end),
            None => String::new(),
        };
        outln!(
            "{}. {}{pages}  (score {:.4})",
            i + 1,
            shown(&c.source),
            hit.score
        )?;
        if !c.heading_path.is_empty() {
            outln!("   § {}", c.heading_path.join(" › "))?;
        }
        let text: String = c.text.split_whitespace().collect::<Vec<_>>().join(" ");
        let snippet: String = text.chars().take(240).collect();
        let more = if text.chars().count() > 240 {
            "…"
        } else {
            ""
        };
        outln!("   {snippet}{more}")?;
    }
    Ok(())
}

pub async fn stores(args: StoresArgs, config: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let stack = stack(config)?;
    let mut rows = Vec::new();
    for entry in &stack.config().vector_stores {
        let counts = match stack.vector_store(&entry.id).await {
            Ok(store) => store.documents().await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        rows.push((entry.clone(), counts));
    }
    if args.json {
        let json: Vec<serde_json::Value> = rows
            .iter()
            .map(|(entry, counts)| match counts {
                Ok(docs) => serde_json::json!({
                    "id": entry.id,
                    "provider": entry.provider,
                    "embedding_model": entry.embedding_model,
                    "documents": docs.len(),
                    "chunks": docs.iter().map(|d| d.chunks).sum::<usize>(),
                }),
                Err(e) => serde_json::json!({
                    "id": entry.id,
                    "provider": entry.provider,
                    "embedding_model": entry.embedding_model,
                    "error": e,
                }),
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&json)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        outln!("{} declares no vector stores", stack.origin())?;
    }
    for (entry, counts) in &rows {
        let what = match counts {
            Ok(docs) => format!(
                "{} documents, {} chunks",
                docs.len(),
                docs.iter().map(|d| d.chunks).sum::<usize>()
            ),
            Err(e) => format!("cannot open: {e}"),
        };
        outln!(
            "{}  (provider {}, embedded with {})  {what}",
            entry.id,
            entry.provider,
            entry.embedding_model
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn eval(command: EvalCommand, config: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let EvalCommand::Retrieval(args) = command;
    let dataset = Dataset::read(&args.corpus, &args.queries, &args.qrels)?;
    let stack = stack(config)?;
    let model = match args.embedding_model {
        Some(model) => model,
        None => {
            let id = store_id(&stack, None)?;
            stack
                .config()
                .vector_stores
                .iter()
                .find(|s| s.id == id)
                .map(|s| s.embedding_model.clone())
                .with_context(|| format!("unknown vector store `{id}`"))?
        }
    };
    let embedder = stack.embedder(&model).await?;
    let dir = tempfile::tempdir().context("a temporary directory for the evaluation store")?;
    let provider = EmbeddedProvider::new(EmbeddedConfig {
        path: Some(dir.path().to_path_buf()),
    });
    let store: Arc<dyn VectorStore> = provider.open("eval", embedder.dimension())?;
    let documents: Vec<TextDocument> = dataset
        .corpus
        .iter()
        .map(|d| TextDocument {
            id: d.id.clone(),
            source: d.id.clone(),
            title: (!d.title.is_empty()).then(|| d.title.clone()),
            text: if d.title.is_empty() {
                d.text.clone()
            } else {
                format!("{}\n\n{}", d.title, d.text)
            },
            metadata: Default::default(),
        })
        .collect();
    let ingestor = Ingestor::new(
        Arc::clone(&store),
        Arc::clone(&embedder),
        IngestOptions::default(),
    )?;
    let bar = IngestBar::new();
    let report = ingestor.ingest_texts(documents, &bar).await;
    bar.bar.finish_and_clear();
    let report = report?;
    if !report.failed.is_empty() {
        tracing::warn!("{} corpus documents had no text", report.failed.len());
    }

    let queries: Vec<_> = dataset.evaluated_queries().cloned().collect();
    let texts: Vec<String> = queries.iter().map(|q| q.text.clone()).collect();
    let mut embeddings = Vec::with_capacity(texts.len());
    for batch in texts.chunks(32) {
        embeddings.extend(embedder.embed(batch).await?);
    }
    let mut results: Vec<(&str, Metrics)> = Vec::new();
    for (name, mode) in [
        ("vector", SearchMode::Vector),
        ("keyword", SearchMode::Keyword),
        ("hybrid", SearchMode::Hybrid),
    ] {
        let mut run: HashMap<String, Vec<String>> = HashMap::new();
        for (query, embedding) in queries.iter().zip(&embeddings) {
            let hits = store
                .search(&SearchQuery {
                    text: query.text.clone(),
                    embedding: Some(embedding.clone()),
                    mode,
                    fusion: Fusion::default(),
                    filter: None,
                    // Chunks, several per document: enough for 100 distinct documents mostly.
                    top_k: eval::RUN_DEPTH * 2,
                    min_score: None,
                })
                .await?;
            let mut ranked: Vec<String> = Vec::new();
            for hit in hits {
                if !ranked.contains(&hit.chunk.document_id) {
                    ranked.push(hit.chunk.document_id);
                }
            }
            run.insert(query.id.clone(), ranked);
        }
        results.push((name, eval::evaluate(&dataset.qrels, &run)));
    }
    if args.json {
        let json: serde_json::Map<String, serde_json::Value> = results
            .iter()
            .map(|(name, m)| {
                (
                    name.to_string(),
                    serde_json::json!({
                        "ndcg@10": m.ndcg_at_10,
                        "recall@10": m.recall_at_10,
                        "recall@100": m.recall_at_100,
                        "mrr@100": m.mrr,
                        "queries": m.queries,
                    }),
                )
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&json)?)?;
    } else {
        outln!(
            "{} documents ({} chunks), {} queries with judgements; embedder `{model}`",
            dataset.corpus.len(),
            report.chunks,
            queries.len()
        )?;
        outln!("mode      nDCG@10  recall@10  recall@100  MRR@100")?;
        for (name, m) in &results {
            outln!(
                "{name:<8}  {:>7.4}  {:>9.4}  {:>10.4}  {:>7.4}",
                m.ndcg_at_10,
                m.recall_at_10,
                m.recall_at_100,
                m.mrr
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse() {
        assert_eq!(
            parse_filter("lang=de").expect("eq"),
            Filter::eq("lang", "de")
        );
        assert_eq!(parse_filter("page=3").expect("eq"), Filter::eq("page", 3));
        assert_eq!(
            parse_filter("page>=3").expect("range"),
            Filter::Range {
                key: "page".into(),
                gte: Some(3.0),
                lte: None
            }
        );
        assert_eq!(
            parse_filter("year <= 2020").expect("range"),
            Filter::Range {
                key: "year".into(),
                gte: None,
                lte: Some(2020.0)
            }
        );
        assert!(parse_filter("page>=three").is_err());
        assert!(parse_filter("no-operator").is_err());
        assert!(parse_filter("=x").is_err());
    }
}
